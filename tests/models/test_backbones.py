import pytest
import torch
from torch import nn

from cmdrec.config import ModelConfig, from_dict
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_model, resolve_sections
from cmdrec.models.registry import COMPONENTS

# where each Hugging Face config keeps the feed-forward width and activation
FEED_FORWARD_FIELDS = {
    "gpt2": ("n_inner", "activation_function"),
    "bert": ("intermediate_size", "hidden_act"),
    "llama": ("intermediate_size", "hidden_act"),
    "mixtral": ("intermediate_size", "hidden_act"),
    "xlnet": ("d_inner", "ff_activation"),
}


def small(backbone, **fields):
    """A resolved config of a small model; ffn_* fields go to its layers."""
    layers = {"n_layers": 1, "n_heads": 2, **{k: fields.pop(k) for k in ("ffn_dim", "ffn_activation") if k in fields}}
    masking = "mlm" if backbone == "bert" else "clm"
    base = {"backbone": backbone, "masking": masking, "d_model": 16, "max_length": 8, "layers": layers}
    return resolve_sections(from_dict(ModelConfig, {**base, **fields}))


@pytest.mark.parametrize("backbone", sorted(FEED_FORWARD_FIELDS))
def test_feed_forward_width_and_activation_reach_every_transformer(backbone):
    width_field, activation_field = FEED_FORWARD_FIELDS[backbone]
    default = COMPONENTS[backbone].build(small(backbone)).model.config
    assert getattr(default, width_field) == (2 if backbone == "mixtral" else 4) * 16  # unchanged unless asked
    encoder = COMPONENTS[backbone].build(small(backbone, ffn_dim=12, ffn_activation="relu"))
    assert (getattr(encoder.model.config, width_field), getattr(encoder.model.config, activation_field)) == (12, "relu")
    assert 12 in {
        n for p in encoder.parameters() for n in p.shape
    }  # the layers were built at that width, not just configured
    hidden, _ = encoder(torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool))
    assert hidden.shape == (2, 5, 16) and torch.isfinite(hidden).all()


def test_feed_forward_settings_on_a_backbone_without_one_are_refused(tiny_data):
    with pytest.raises(InputError, match="'gru' has no feed-forward"):
        build_model(small("gru", ffn_dim=12), load_schema(tiny_data))
    with pytest.raises(InputError, match="ffn_dim must be positive"):
        small("gpt2", ffn_dim=0)


def test_sqrt_d_input_scaling_replaces_the_layernorm(tiny_data):
    schema = load_schema(tiny_data)
    model = build_model(small("gpt2", input_scaling="sqrt_d"), schema)
    assert not any(isinstance(m, nn.LayerNorm) for m in model.inputs.modules())
    items = torch.tensor([[3, 4, 5]])
    expected = model.inputs.item_embedding(items) * 16**0.5
    assert torch.allclose(model.inputs({"command": items}), expected)
    assert isinstance(build_model(small("gpt2"), schema).inputs.norm, nn.LayerNorm)


def test_sasrec_block_is_causal_and_keeps_its_reference_feed_forward():
    encoder = COMPONENTS["sasrec"].build(small("sasrec")).eval()
    assert {tuple(layer.weight.shape) for layer in encoder.blocks[0].ffn if isinstance(layer, nn.Linear)} == {(16, 16)}
    assert isinstance(encoder.blocks[0].ffn[1], nn.ReLU)
    embeddings = torch.randn(2, 6, 16)
    hidden, _ = encoder(embeddings, torch.ones(2, 6, dtype=torch.bool))
    changed = embeddings.clone()
    changed[:, 4:] = torch.randn(2, 2, 16)
    later_changed, _ = encoder(changed, torch.ones(2, 6, dtype=torch.bool))
    assert torch.allclose(hidden[:, :4], later_changed[:, :4], atol=1e-6)  # no position sees a later one
    assert not torch.allclose(hidden[:, 4:], later_changed[:, 4:])
    wider = COMPONENTS["sasrec"].build(small("sasrec", ffn_dim=12, ffn_activation="gelu"))
    assert wider.blocks[0].ffn[0].out_features == 12 and isinstance(wider.blocks[0].ffn[1], nn.GELU)

"""The backbone contract, checked over every registered backbone: (embeddings (B, T, D), padding
mask (B, T)) -> (hidden (B, T, D), auxiliary outputs); what the registry says of causality holds;
padding never changes real positions; clm is refused where the backbone is bidirectional."""

import pytest
import torch

from cmdrec.config import ModelConfig
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.backbones import Backbone
from cmdrec.models.build import build_model
from cmdrec.models.registry import COMPONENTS, backbones, component

MASKINGS = [(c.name, m) for c in backbones() for m in ("clm", "mlm") if m == "mlm" or c.is_causal("clm")]


def tiny_decoder():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    return LlamaModel(
        LlamaConfig(
            vocab_size=8,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=16,
        )
    )


def encoder(name, masking):
    torch.manual_seed(0)
    config = ModelConfig(backbone=name, masking=masking, d_model=16, n_layers=1, n_heads=2, max_length=8,
                         dropout=0.0, pretrained="in-memory" if name == "pretrained" else None)  # fmt: skip
    spec = component(name)
    module = spec.build(config, tiny_decoder()) if spec.pretrained_weights else spec.build(config)
    return module.eval()


@pytest.mark.parametrize("name,masking", MASKINGS)
def test_every_backbone_keeps_the_contract(name, masking):
    module = encoder(name, masking)
    assert isinstance(module, Backbone)
    assert module.causal == component(name).is_causal(masking)  # the registry says what the module does
    embeddings = torch.randn(2, 6, 16)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    with torch.no_grad():
        hidden, auxiliary = module(embeddings, mask)
        assert hidden.shape == (2, 6, 16) and isinstance(auxiliary, dict)
        # padding: a row's real positions do not depend on what stands in its padded ones
        noisy = embeddings.clone()
        noisy[1, 4:] = torch.randn(2, 16)
        assert torch.allclose(module(noisy, mask)[0][1, :4], hidden[1, :4], atol=1e-5)
        if module.causal:  # position t does not change when later events change
            later = embeddings.clone()
            later[0, 3:] = torch.randn(3, 16)
            assert torch.allclose(module(later, mask)[0][0, :3], hidden[0, :3], atol=1e-5)


@pytest.mark.parametrize("name", [c.name for c in backbones() if not c.is_causal("clm")])
def test_clm_is_refused_for_a_bidirectional_backbone(tiny_data, name):
    with pytest.raises(InputError, match="bidirectional"):
        build_model(ModelConfig(backbone=name, masking="clm", d_model=16, n_heads=2), load_schema(tiny_data))


def test_every_registered_component_is_listed_in_an_unknown_name_error():
    with pytest.raises(InputError) as error:
        component("no-such-backbone")
    assert all(name in str(error.value) for name in COMPONENTS)

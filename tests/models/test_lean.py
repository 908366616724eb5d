"""The lean inference forward of the Llama and Mixtral decoders equals the library's."""

import pytest
import torch

from cmdrec.config import ModelConfig, from_dict
from cmdrec.models.backbones import lean
from cmdrec.models.build import resolve_sections
from cmdrec.models.registry import component


def backbone(name: str, **experts):
    layers = {"n_layers": 2, "n_heads": 4}
    fields = {"backbone": name, "masking": "clm", "d_model": 32, "max_length": 12, "layers": layers}
    if experts:
        fields["experts"] = experts
    torch.manual_seed(0)
    module = component(name).build(resolve_sections(from_dict(ModelConfig, fields)))
    for parameter in module.parameters():  # away from the initial values, so every weight matters
        parameter.data.normal_(0, 0.2)
    return module.eval()


def library_forward(module, embeddings, padding_mask):
    """The Hugging Face path, which the backbone takes when the lean one does not apply."""
    output = module.model(
        inputs_embeds=embeddings,
        attention_mask=padding_mask.long(),
        use_cache=False,
        **({"output_router_logits": True} if hasattr(module.model.config, "num_local_experts") else {}),
    )
    return output.last_hidden_state, list(getattr(output, "router_logits", None) or [])


def right_padded(batch: int, length: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    return torch.arange(length)[None, :] < lengths[:, None]


CASES = [("llama", {}), ("mixtral", {"n_experts": 4, "experts_per_token": 2})]


@pytest.mark.parametrize("name, experts", CASES)
@pytest.mark.parametrize("batch", [1, 3, 40])  # 40 x 12 tokens: the experts run sparse, 1 and 3: dense
def test_the_lean_forward_equals_the_library_at_every_event(name, experts, batch):
    module = backbone(name, **experts)
    mask = right_padded(batch, 12, seed=batch)
    embeddings = torch.randn(batch, 12, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert lean.applies(module.model, embeddings, mask)
        hidden, auxiliary = module(embeddings, mask)
        expected, router_logits = library_forward(module, embeddings, mask)
    torch.testing.assert_close(hidden[mask], expected[mask], rtol=1e-5, atol=1e-5)
    assert len(auxiliary.get("router_logits", [])) == len(router_logits)
    for got, want in zip(auxiliary.get("router_logits", []), router_logits, strict=True):
        # at events only, as the load-balancing loss reads them: padding's hidden states differ by design
        at_events = mask.reshape(-1)
        torch.testing.assert_close(got[at_events], want[at_events], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, experts", CASES)
def test_the_library_runs_where_the_lean_forward_would_differ(name, experts):
    module = backbone(name, **experts)
    embeddings = torch.randn(2, 12, 32)
    left_padded = torch.ones(2, 12, dtype=torch.bool)
    left_padded[1, :4] = False
    with torch.inference_mode():
        assert not lean.applies(module.model, embeddings, left_padded)  # a pad before events: needs the mask
        assert lean.applies(module.model, embeddings, torch.ones(2, 12, dtype=torch.bool))
    assert not lean.applies(module.model, embeddings, torch.ones(2, 12, dtype=torch.bool))  # gradients wanted
    module.train()
    with torch.inference_mode():
        assert not lean.applies(module.model, embeddings, torch.ones(2, 12, dtype=torch.bool))
    module.eval()
    with torch.inference_mode():
        # the hooks the library leaves behind to capture outputs do not matter
        library_forward(module, embeddings, left_padded)
        assert lean.applies(module.model, embeddings, torch.ones(2, 12, dtype=torch.bool))

"""The backbone contract, checked over every registered backbone: (embeddings (B, T, D), padding
mask (B, T)) -> (hidden (B, T, D), auxiliary outputs); what the registry says of causality holds;
padding never changes real positions; clm is refused where the backbone is bidirectional."""

import pytest
import torch

from cmdrec.config import ModelConfig
from cmdrec.data.sequences import load_schema
from cmdrec.errors import InputError
from cmdrec.models.build import build_model
from cmdrec.models.contract import ContractError, check_backbone
from cmdrec.models.registry import COMPONENTS, Component, backbones, component

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


@pytest.mark.parametrize("name,masking", MASKINGS)
def test_every_backbone_keeps_the_contract(name, masking):
    check_backbone(
        name, masking, tiny_decoder(), pretrained="in-memory" if component(name).pretrained_weights else None
    )


class Anticausal(torch.nn.Module):
    """Claims causality but mixes in the last event: the check must catch it."""

    causal = True

    def __init__(self, config):
        super().__init__()

    def forward(self, embeddings, padding_mask):
        return embeddings + embeddings[:, -1:], {}


def test_the_contract_check_catches_a_backbone_that_breaks_it(monkeypatch):
    monkeypatch.setitem(COMPONENTS, "anticausal", Component("anticausal", Anticausal, feed_forward=False))
    with pytest.raises(ContractError, match="padded positions"):
        check_backbone("anticausal")


@pytest.mark.parametrize("name", [c.name for c in backbones() if not c.is_causal("clm")])
def test_clm_is_refused_for_a_bidirectional_backbone(tiny_data, name):
    with pytest.raises(InputError, match="bidirectional"):
        build_model(ModelConfig(backbone=name, masking="clm", d_model=16), load_schema(tiny_data))


def test_every_registered_component_is_listed_in_an_unknown_name_error():
    with pytest.raises(InputError) as error:
        component("no-such-backbone")
    assert all(name in str(error.value) for name in COMPONENTS)

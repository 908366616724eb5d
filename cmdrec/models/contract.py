"""The backbone contract as a check anyone can run on a backbone of their own (the test suite runs it
on every registered one): `(embeddings (B, T, D), padding mask (B, T)) -> (hidden (B, T, D), auxiliary
outputs)`; the registry's word on causality holds; padding never changes real positions; a causal
backbone's position t does not change when later events change."""

from __future__ import annotations

import dataclasses

import torch

from cmdrec.config import LayersConfig, ModelConfig, from_dict
from cmdrec.models.backbones import Backbone
from cmdrec.models.build import resolve_sections
from cmdrec.models.registry import component

D_MODEL, LENGTH = 16, 6


class ContractError(AssertionError):
    pass


def check_backbone(name: str, masking: str = "clm", decoder: torch.nn.Module | None = None, **fields) -> None:
    """Raise ContractError saying what `name` breaks; `decoder` stands in for a pretrained one, and
    `fields` set model config values of the small model it checks."""
    spec = component(name)
    small = {"backbone": name, "masking": masking, "d_model": D_MODEL, "max_length": 8, "dropout": 0.0}
    config = resolve_sections(from_dict(ModelConfig, {**small, **fields}))
    if config.layers is not None and "layers" not in fields:
        config = dataclasses.replace(config, layers=LayersConfig(n_layers=1, n_heads=2))
    torch.manual_seed(0)
    module = (spec.build(config, decoder) if spec.pretrained_weights else spec.build(config)).eval()
    if not isinstance(module, Backbone):
        raise ContractError(f"{name}: not a Backbone (a module with a `causal` attribute, called with two tensors)")
    if module.causal != spec.is_causal(masking):
        raise ContractError(f"{name}: the module says causal={module.causal}, the registry {spec.is_causal(masking)}")
    embeddings = torch.randn(2, LENGTH, D_MODEL)
    extra = {column: torch.randn(2, LENGTH) for column in spec.extra_inputs}  # as the batch's columns arrive
    mask = torch.tensor([[True] * LENGTH, [True] * 4 + [False] * (LENGTH - 4)])

    def changed(row: int, start: int):
        """The inputs with everything from position `start` of `row` on drawn anew."""
        inputs = {"embeddings": embeddings.clone(), **{k: v.clone() for k, v in extra.items()}}
        for tensor in inputs.values():
            tensor[row, start:] = torch.randn_like(tensor[row, start:])
        return module(inputs.pop("embeddings"), mask, **inputs)[0]

    with torch.no_grad():
        hidden, auxiliary = module(embeddings, mask, **extra)
        if hidden.shape != (2, LENGTH, D_MODEL) or not isinstance(auxiliary, dict):
            raise ContractError(f"{name}: returned {tuple(hidden.shape)} and {type(auxiliary).__name__}, "
                                f"expected {(2, LENGTH, D_MODEL)} and a dict")  # fmt: skip
        if not torch.allclose(changed(1, 4)[1, :4], hidden[1, :4], atol=1e-5):
            raise ContractError(f"{name}: what stands in padded positions changes the real positions' outputs")
        if module.causal and not torch.allclose(changed(0, 3)[0, :3], hidden[0, :3], atol=1e-5):
            raise ContractError(f"{name}: says it is causal, but position t changes when later events change")

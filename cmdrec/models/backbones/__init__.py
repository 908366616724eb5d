"""Sequence encoders. Each is a module that keeps the `Backbone` protocol below; what it can do
beyond that (causal or not, wraps pretrained weights, ...) is recorded in `cmdrec.models.registry`,
and a contract test holds every registered one to both."""

from typing import Protocol, runtime_checkable

import torch

from cmdrec.config import ModelConfig


@runtime_checkable
class Backbone(Protocol):
    causal: bool  # whether position t sees only positions <= t

    def __call__(
        self, embeddings: torch.Tensor, padding_mask: torch.Tensor, **extra_inputs: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(fused embeddings (B, T, D), padding mask (B, T), True at events, and the (B, T) batch columns
        the registry's `extra_inputs` names) -> (hidden states (B, T, D), auxiliary outputs such as router
        logits)."""
        ...


def feed_forward(config: ModelConfig, default_width: int, default_activation: str) -> tuple[int, str]:
    """A layer's feed-forward width and activation: the config's where set, else the backbone's own."""
    return config.layers.ffn_dim or default_width, config.layers.ffn_activation or default_activation

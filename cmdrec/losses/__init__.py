"""Pure losses: (logits, targets[, mask]) -> scalar, registered by name for configs (`loss.name`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cmdrec.errors import InputError


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets)


def focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al., 2017): cross-entropy scaled by (1 - p_target)^gamma, so confidently
    right predictions (frequent, easy commands) weigh less; gamma 0 is plain cross-entropy."""
    log_probs = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    weight = (1.0 - log_probs.exp()).clamp(min=0.0) ** gamma
    return -(weight * log_probs).mean()


def load_balancing(
    router_logits: list[torch.Tensor], top_k: int, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Switch/Mixtral auxiliary loss: n_experts * sum_i f_i * P_i over layers, where f_i is the share
    of routing slots that go to expert i and P_i its mean router probability, counted over real
    (unpadded) tokens only. Its minimum, 1 per layer, is perfectly balanced routing."""
    losses = []
    for logits in router_logits:  # (tokens, n_experts) per layer
        probabilities = torch.softmax(logits.float(), dim=-1)
        chosen = (
            F.one_hot(probabilities.topk(top_k, dim=-1).indices, logits.shape[-1]).sum(1).float()
        )  # (tokens, n_experts)
        if token_mask is not None:
            keep = token_mask.reshape(-1)
            probabilities, chosen = probabilities[keep], chosen[keep]
        share = chosen.mean(0) / top_k
        losses.append(logits.shape[-1] * (share * probabilities.mean(0)).sum())
    return torch.stack(losses).mean()


# name -> (logits (N, C), targets (N,), the run's LossConfig) -> scalar
CLASSIFICATION_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]] = {
    "cross_entropy": lambda logits, targets, config: cross_entropy(logits, targets),
    "focal": lambda logits, targets, config: focal(logits, targets, config.focal_gamma),
}


def register_loss(name: str, loss: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> Callable:
    """Make `loss.name: NAME` train with `loss(logits, targets, loss_config)`; the name must be new."""
    if name in CLASSIFICATION_LOSSES:
        raise InputError(f"a loss named {name!r} is registered already")
    CLASSIFICATION_LOSSES[name] = loss
    return loss


def classification_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
    if name not in CLASSIFICATION_LOSSES:
        raise InputError(f"loss.name: unknown {name!r}; known: {sorted(CLASSIFICATION_LOSSES)}")
    return CLASSIFICATION_LOSSES[name]

"""Pure losses: (logits, targets[, mask]) -> scalar, registered by name for configs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
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


CLASSIFICATION_LOSSES = {"cross_entropy": cross_entropy, "focal": focal}

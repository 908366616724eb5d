"""Pure losses: (logits, targets) -> scalar. Registered by name for configs."""

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets)


LOSSES = {"cross_entropy": cross_entropy}

"""Dropout whose masks come from random bytes (`training.fast_dropout`).

On a CPU, torch's dropout draws a Bernoulli sample per element, and for the small models cmdrec
trains that sampling is the largest single cost of a step, several times that of drawing one random
byte per element. Here an element is dropped
when its random byte is below round(p x 256), so the rate is rounded to a multiple of 1/256 (0.3 is
77/256 = 0.3008) and the kept values are scaled by 256 / (256 - round(p x 256)), which keeps every
expectation as with torch's dropout. The bytes come from torch's default generator: seeded, and
saved in checkpoints like every other random draw. Dropout inside fused attention kernels
(`attention_dropout` of the Hugging Face backbones, `nn.MultiheadAttention`'s) is not replaced.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)
LEVELS = 256


class _ByteMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, drop_below: int) -> torch.Tensor:
        keep = torch.empty(inputs.shape, dtype=torch.uint8, device=inputs.device).random_() >= drop_below
        ctx.save_for_backward(keep)
        ctx.scale = LEVELS / (LEVELS - drop_below)
        return inputs * keep * ctx.scale

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return gradient * keep * ctx.scale, None


class ByteMaskDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.drop_below = round(p * LEVELS)
        if p > 0 and self.drop_below == 0:
            log.warning("dropout %g rounds to 0/%d with training.fast_dropout: no dropout there", p, LEVELS)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_below == 0:
            return inputs
        if self.drop_below >= LEVELS:
            return inputs * 0  # every element dropped, the graph kept
        return _ByteMask.apply(inputs, self.drop_below)

    def extra_repr(self) -> str:
        return f"p={self.p}, effective p={self.drop_below}/{LEVELS}"


def use_byte_mask_dropout(model: nn.Module) -> int:
    """Replace every `nn.Dropout` in `model` by a `ByteMaskDropout` of the same rate; returns how many."""
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, ByteMaskDropout(child.p))
                replaced += 1
    return replaced

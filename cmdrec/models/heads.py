"""Prediction heads over the full vocabulary of a column."""

from __future__ import annotations

import torch
from torch import nn

from cmdrec.schema import FIRST_VALUE_ID


class ClassificationHead(nn.Module):
    """Scores every id of a column; reserved ids (padding, OOV) are never predicted.

    With `tied_embedding`, the output weights are the input embedding's rows (SASRec). Without
    `learned_bias` the scores are plain dot products, as in SASRec; the bias is then a constant."""

    def __init__(self, d_model: int, n_classes: int, tied_embedding: nn.Embedding | None = None, learned_bias: bool = True):
        super().__init__()
        self.n_classes = n_classes
        self.tied_embedding = tied_embedding
        self.weight = None if tied_embedding is not None else nn.Parameter(torch.randn(n_classes, d_model) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_classes)) if learned_bias else None
        if not learned_bias:
            self.register_buffer("zero_bias", torch.zeros(n_classes), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.tied_embedding.weight[: self.n_classes] if self.tied_embedding is not None else self.weight
        bias = self.bias if self.bias is not None else self.zero_bias
        # reserved ids are masked through the bias: one fused addmm, no copy of the (N, V) logits
        bias = bias.index_fill(0, torch.arange(FIRST_VALUE_ID, device=hidden.device), torch.finfo(hidden.dtype).min)
        return torch.addmm(bias, hidden, weight.t())


class TextScoringHead(nn.Module):
    """Scores commands only through their projected text embeddings: no per-command parameter,
    so a command added to the catalogue after training (with only a description) is ranked like
    any other. (A per-command bias or weight would be pushed down for every command training
    never saw as a target.)"""

    def __init__(self, d_model: int, text_table: torch.Tensor):
        super().__init__()
        self.register_buffer("text_table", text_table, persistent=False)
        self.projection = nn.Sequential(nn.Linear(text_table.shape[1], d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.projection(self.text_table).t()
        return logits.index_fill(-1, torch.arange(FIRST_VALUE_ID, device=logits.device), torch.finfo(logits.dtype).min)

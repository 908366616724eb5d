"""Prediction heads over the full vocabulary of a column."""

from __future__ import annotations

import torch
from torch import nn

from cmdrec.batch import Batch
from cmdrec.schema import FIRST_VALUE_ID


class ClassificationHead(nn.Module):
    """Scores every id of a column; reserved ids (padding, OOV) are never predicted.

    With `tied_embedding`, the output weights are the input embedding's rows (SASRec). Without
    `learned_bias` the scores are plain dot products, as in SASRec; the bias is then a constant."""

    def __init__(
        self, d_model: int, n_classes: int, tied_embedding: nn.Embedding | None = None, learned_bias: bool = True
    ):
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


class HistoryCopy(nn.Module):
    """RepeatNet's repeat mode (Ren et al., AAAI 2019): a learned gate mixes the next-command
    distribution with a pointer over the commands already in the window, since commands repeat. The
    pointer reaches only positions up to the predicted one, so it needs `clm`. Returns log-probabilities, which rank and
    train (softmax cross-entropy, focal loss) exactly as logits do."""

    def __init__(self, d_model: int):
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(d_model, 1)

    def forward(
        self, hidden: torch.Tensor, selected: torch.Tensor, item_logits: torch.Tensor, batch: Batch
    ) -> torch.Tensor:
        """`selected` is hidden[batch.loss_mask], the states the heads scored."""
        rows, cols = batch.loss_mask.nonzero(as_tuple=True)  # the order of `selected`
        # (B, T, T) scores, then one row per predicted position: cheaper than gathering (N, T, d) keys
        scores = (self.query(hidden) @ hidden.transpose(1, 2))[rows, cols].float() / hidden.shape[-1] ** 0.5
        items, visible = batch.predicted_histories()
        visible &= items >= FIRST_VALUE_ID  # never point at padding or out-of-vocabulary ids
        # a window with nothing to point at gets no copy mass; the loss renormalises what is left
        pointer = scores.masked_fill(~visible, float("-inf")).softmax(-1).nan_to_num(0.0)
        copied = torch.zeros(item_logits.shape, dtype=torch.float32, device=hidden.device).scatter_add_(
            1, items, pointer
        )
        repeat = torch.sigmoid(self.gate(selected).float())
        probabilities = (1 - repeat) * item_logits.float().softmax(-1) + repeat * copied
        log_probabilities = probabilities.clamp_min(torch.finfo(torch.float32).tiny).log()
        return log_probabilities.index_fill(
            -1, torch.arange(FIRST_VALUE_ID, device=hidden.device), torch.finfo(torch.float32).min
        )

"""The recommender: input block -> backbone -> heads, scored only where the batch asks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cmdrec.batch import Batch


@dataclass
class ModelOutput:
    logits: dict[str, torch.Tensor]  # (N, n_classes) per head, N = batch.loss_mask.sum()
    auxiliary: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. router logits


class SequenceRecommender(nn.Module):
    def __init__(
        self,
        inputs: nn.Module,
        backbone: nn.Module,
        heads: nn.ModuleDict,
        history_copy: nn.Module | None = None,
        backbone_inputs: tuple[str, ...] = (),
    ):
        super().__init__()
        self.inputs = inputs
        self.backbone = backbone
        self.backbone_inputs = backbone_inputs  # batch columns the backbone reads beside the fused embeddings
        self.heads = heads
        self.history_copy = history_copy  # cmdrec.models.heads.HistoryCopy, on the next-command head

    def forward(self, batch: Batch) -> ModelOutput:
        extra = {name: batch.features[name] for name in self.backbone_inputs}
        hidden, auxiliary = self.backbone(self.inputs(batch.features), batch.padding_mask, **extra)
        selected = hidden[batch.loss_mask]
        logits = {name: head(selected) for name, head in self.heads.items()}
        if self.history_copy is not None:
            logits[batch.item_column] = self.history_copy(hidden, selected, logits[batch.item_column], batch)
        return ModelOutput(logits=logits, auxiliary=auxiliary)

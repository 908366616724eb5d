"""The input block: one embedding per categorical column, a projection of the continuous ones,
summed into one vector per event. Every categorical table has one extra row, the mask id used by
`mlm` masking (id = cardinality). No dropout here: every backbone applies its own to its inputs,
and a second one would stack with it."""

from __future__ import annotations

import torch
from torch import nn

from cmdrec.schema import PAD_ID, Schema, Tag


def mask_ids(schema: Schema, columns: list[str]) -> dict[str, int]:
    return {name: schema[name].cardinality for name in columns if schema[name].has(Tag.CATEGORICAL)}


class InputBlock(nn.Module):
    def __init__(self, schema: Schema, columns: list[str], d_model: int):
        super().__init__()
        self.item_column = schema.item_id.name
        self.categorical = [c for c in columns if schema[c].has(Tag.CATEGORICAL)]
        self.continuous = [c for c in columns if schema[c].has(Tag.CONTINUOUS)]
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(schema[name].cardinality + 1, d_model, padding_idx=PAD_ID) for name in self.categorical}
        )
        self.continuous_projection = nn.Linear(len(self.continuous), d_model) if self.continuous else None
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.embeddings[self.item_column].weight, std=0.02)

    @property
    def item_embedding(self) -> nn.Embedding:
        return self.embeddings[self.item_column]

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        fused = sum(self.embeddings[name](features[name]) for name in self.categorical)
        if self.continuous_projection is not None:
            fused = fused + self.continuous_projection(torch.stack([features[n] for n in self.continuous], dim=-1))
        return self.norm(fused)

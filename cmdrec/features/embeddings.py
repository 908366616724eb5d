"""The input block: one vector per input feature and event (an embedding per categorical column,
a projection per continuous column, and the command's frozen text embedding projected to the model
width), fused into one vector per event by a named strategy, then brought to the backbone's input scale:
a LayerNorm by default, or SASRec's multiplication by sqrt(d_model).

Every categorical table has one extra row, the mask id used by `mlm` masking (id = cardinality).
No dropout here: every backbone applies its own to its inputs, and a second one would stack."""

from __future__ import annotations

import torch
from torch import nn

from cmdrec.errors import InputError
from cmdrec.features.fusion import FUSIONS
from cmdrec.schema import PAD_ID, Schema, Tag


def mask_ids(schema: Schema, columns: list[str]) -> dict[str, int]:
    return {name: schema[name].cardinality for name in columns if schema[name].has(Tag.CATEGORICAL)}


class InputBlock(nn.Module):
    def __init__(
        self,
        schema: Schema,
        columns: list[str],
        d_model: int,
        fusion: str = "sum",
        n_heads: int = 1,
        text_table: torch.Tensor | None = None,
        scaling: str = "layernorm",
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise InputError(f"model.fusion: unknown {fusion!r}; known: {sorted(FUSIONS)}")
        if scaling not in ("layernorm", "sqrt_d"):
            raise InputError(f"model.input_scaling: unknown {scaling!r}; known: ['layernorm', 'sqrt_d']")
        self.item_column = schema.item_id.name
        self.categorical = [c for c in columns if schema[c].has(Tag.CATEGORICAL)]
        self.continuous = [c for c in columns if schema[c].has(Tag.CONTINUOUS)]
        unusable = [c for c in columns if c not in self.categorical + self.continuous]
        if unusable:
            raise InputError(f"model.input_features: {unusable} are neither categorical nor continuous in the schema")
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(schema[name].cardinality + 1, d_model, padding_idx=PAD_ID) for name in self.categorical}
        )
        # one projection per continuous column keeps each a feature of its own for fusion
        self.projections = nn.ModuleDict({name: nn.Linear(1, d_model) for name in self.continuous})
        # the text table is data, not a parameter: frozen, and loaded with the dataset rather than checkpointed
        self.register_buffer("text_table", text_table, persistent=False)
        self.text_projection = nn.Linear(text_table.shape[1], d_model) if text_table is not None else None
        n_features = len(self.categorical) + len(self.continuous) + (text_table is not None)
        self.fusion = FUSIONS[fusion](n_features, d_model, n_heads)
        self.norm = nn.LayerNorm(d_model) if scaling == "layernorm" else None
        self.scale = d_model**0.5
        nn.init.normal_(self.embeddings[self.item_column].weight, std=0.02)

    @property
    def item_embedding(self) -> nn.Embedding:
        return self.embeddings[self.item_column]

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = [self.embeddings[name](features[name]) for name in self.categorical]
        vectors += [self.projections[name](features[name].unsqueeze(-1)) for name in self.continuous]
        if self.text_table is not None:
            items = features[self.item_column]
            known = items < len(self.text_table)  # mlm's mask id has no text
            index = torch.where(known, items, 0)
            # project whichever has fewer rows: the whole table (small catalogues) or the batch's events
            if len(self.text_table) <= index.numel():
                vectors.append(self.text_projection(self.text_table)[index])
            else:
                vectors.append(self.text_projection(self.text_table[index]))
        fused = self.fusion(torch.stack(vectors, dim=2))
        return self.norm(fused) if self.norm is not None else fused * self.scale

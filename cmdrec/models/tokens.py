"""Scoring commands with a model whose vocabulary holds workflow tokens (cmdrec.data.tokens): the
score of a command is the log of the summed probability of every token that starts with it (the
command itself and each composite beginning with it), so a softmax over the command scores is the
model's distribution of the next command."""

from __future__ import annotations

import torch

from cmdrec.data.tokens import first_command_ids
from cmdrec.schema import FIRST_VALUE_ID, Schema


def first_commands(schema: Schema) -> torch.Tensor | None:
    """The first command of each token id, or None when the data has no workflow tokens."""
    first = first_command_ids(schema)
    return None if first is None else torch.from_numpy(first)


def command_logits(logits: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
    """(N, tokens) logits -> (N, commands) scores; unchanged without workflow tokens."""
    if first is None:
        return logits
    first = first.to(logits.device)
    n_commands = int(first.max()) + 1
    logits = logits.float()
    top = logits.max(dim=1, keepdim=True).values
    mass = torch.zeros(len(logits), n_commands, device=logits.device).index_add_(1, first, (logits - top).exp())
    mass[:, :FIRST_VALUE_ID] = 0  # padding and out-of-vocabulary: never a suggestion, whatever merged with them
    return mass.log() + top


def token_text_table(text_table: torch.Tensor, schema: Schema) -> torch.Tensor:
    """A composite token's text embedding: the mean of its commands' (one row per command in)."""
    parts = schema.item_id.properties.get("workflow_tokens")
    if not parts or len(text_table) == schema.item_id.cardinality:
        return text_table
    return torch.cat([text_table, torch.stack([text_table[list(p)].mean(0) for p in parts])])

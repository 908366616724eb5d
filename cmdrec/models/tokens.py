"""Scoring commands with a model whose vocabulary holds workflow tokens (cmdrec.data.tokens): the
score of a command is the log of the summed probability of every token that starts with it (the
command itself and each composite beginning with it), so a softmax over the command scores is the
model's distribution of the next command.

A history's tokens end where the history ends, so its last token may be a run the training data
almost always continued inside a longer token (`B` where training saw `B > C` as one token): read
at the last position alone, the model then has to predict from a split it rarely saw. The next
command is therefore also read one position earlier (`score_next_commands`): with p the token
distribution before the last token t and q the command distribution after it,
P(next = C) is proportional to the summed p of every token that extends t with C, plus p(t) q(C).
What that does on the VS logs is measured in docs/benchmarks/pipeline_stages.md."""

from __future__ import annotations

from dataclasses import replace

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


def score_next_commands(model, batch, first: torch.Tensor | None, extensions):
    """The next-command scores at each row's one scored position, the model's output, and which of the
    output's rows those positions are (None: all; extra rows are the positions read before them).
    `extensions`: cmdrec.data.tokens.token_extensions of the data."""
    item = batch.item_column
    if first is None:
        output = model(batch)
        return output.logits[item], output, None
    rows, positions = batch.loss_mask.nonzero(as_tuple=True)
    if len(rows.unique()) != len(rows):
        raise ValueError("workflow tokens are scored at one position per sequence (evaluation positions=last)")
    earlier = positions >= 1
    wider = batch.loss_mask.clone()
    wider[rows[earlier], positions[earlier] - 1] = True
    output = model(replace(batch, loss_mask=wider))
    scored = batch.loss_mask[wider]  # the output's rows follow wider's positions in row-major order
    logits = output.logits[item].float()
    scores = command_logits(logits[scored], first)
    if extensions is not None and earlier.any():
        last_tokens = batch.features[item][rows[earlier], positions[earlier]]
        scores[earlier] = _backed_off(scores[earlier], logits[~scored], last_tokens, extensions)
    return scores, output, scored


def _backed_off(scores: torch.Tensor, previous: torch.Tensor, last_tokens: torch.Tensor, extensions) -> torch.Tensor:
    prefix, longer, following = (torch.as_tensor(t, device=scores.device) for t in extensions)
    # in double precision: a product of two small probabilities must not underflow to a score of -inf
    after = torch.softmax(scores.double(), dim=1)  # q: the next command after the last token
    before = torch.softmax(previous.double(), dim=1)  # p: the token in the last token's place
    extending = (prefix[None, :] == last_tokens[:, None]) * before[:, longer]
    total = torch.zeros_like(after).index_add_(1, following, extending)
    total += before.gather(1, last_tokens[:, None]) * after
    total[:, :FIRST_VALUE_ID] = 0
    return total.log().to(scores.dtype)


def token_text_table(text_table: torch.Tensor, schema: Schema) -> torch.Tensor:
    """A composite token's text embedding: the mean of its commands' (one row per command in)."""
    parts = schema.item_id.properties.get("workflow_tokens")
    if not parts or len(text_table) == schema.item_id.cardinality:
        return text_table
    return torch.cat([text_table, torch.stack([text_table[list(p)].mean(0) for p in parts])])

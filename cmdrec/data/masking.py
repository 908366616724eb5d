"""Masking as pure functions: Batch in, Batch with explicit `targets` and `loss_mask` out.

`clm` (next command, causal): the input is the sequence without its last event and the target at
position t is event t+1. Training predicts every position; evaluation the last one (or all).
Both build the same input, so the target's own embedding never reaches the input at evaluation,
whatever the backbone (the leak of Transformers4Rec issue #765), and training, evaluation and
inference agree.

`mlm` (BERT4Rec): training replaces random events (every feature of them) by a mask id and
predicts them; evaluation masks the last event and predicts it.

`next_event` is inference: no target is known, and each masking reads the model's output where
its evaluation would, so a live prediction equals the evaluation of the same history.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from cmdrec.batch import Batch
from cmdrec.schema import OOV_ID, PAD_ID

MASKINGS = ("clm", "mlm")


def clm(batch: Batch, target_columns: list[str], positions: str = "all") -> Batch:
    """Shift by one: inputs are events 0..n-2, targets events 1..n-1. `positions`: "all" or "last"."""
    lengths = batch.padding_mask.sum(1)
    inputs_mask = batch.padding_mask.clone()
    inputs_mask[torch.arange(len(lengths)), lengths - 1] = False  # drop each sequence's last event
    features = {name: _blank(values[:, :-1], inputs_mask[:, :-1]) for name, values in batch.features.items()}
    targets = {name: batch.features[name][:, 1:] for name in target_columns}
    inputs_mask = inputs_mask[:, :-1]
    if positions == "last":
        loss_mask = torch.zeros_like(inputs_mask)
        loss_mask[torch.arange(len(lengths)), lengths - 2] = True
    else:
        loss_mask = inputs_mask.clone()
    loss_mask &= _predictable(targets[batch.item_column])
    return replace(batch, features=features, padding_mask=inputs_mask, targets=targets, loss_mask=loss_mask)


def mlm(
    batch: Batch,
    target_columns: list[str],
    mask_ids: dict[str, int],
    probability: float = 0.2,
    generator: torch.Generator | None = None,
    training: bool = True,
) -> Batch:
    """Mask events; `mask_ids` gives each categorical column its mask id (continuous columns get 0)."""
    padding = batch.padding_mask
    lengths = padding.sum(1)
    if training:
        masked = (torch.rand(padding.shape, generator=generator) < probability) & padding
        # every sequence predicts at least one event: its last one when the draw masked none
        none = ~masked.any(1)
        masked[none.nonzero().squeeze(1), lengths[none] - 1] = True
    else:
        masked = torch.zeros_like(padding)
        masked[torch.arange(len(lengths)), lengths - 1] = True
    features = {}
    for name, values in batch.features.items():
        replacement = torch.full_like(values, mask_ids[name]) if name in mask_ids else torch.zeros_like(values)
        features[name] = torch.where(masked, replacement, values)
    targets = {name: batch.features[name] for name in target_columns}
    loss_mask = masked & _predictable(targets[batch.item_column])
    return replace(batch, features=features, targets=targets, loss_mask=loss_mask)


def next_event(batch: Batch, masking: str, mask_ids: dict[str, int] | None = None) -> Batch:
    """Score the event that follows each sequence: `clm` reads the output at the last event, `mlm`
    appends a masked event (every feature of it) and reads the output there."""
    lengths = batch.padding_mask.sum(1)
    rows = torch.arange(len(lengths))
    if masking == "clm":
        loss_mask = torch.zeros_like(batch.padding_mask)
        loss_mask[rows, lengths - 1] = True
        return replace(batch, targets={}, loss_mask=loss_mask)
    if masking == "mlm":
        padding_mask = torch.nn.functional.pad(batch.padding_mask, (0, 1))
        padding_mask[rows, lengths] = True
        features = {}
        for name, values in batch.features.items():
            features[name] = torch.nn.functional.pad(values, (0, 1))
            features[name][rows, lengths] = (mask_ids or {}).get(name, 0)
        loss_mask = torch.zeros_like(padding_mask)
        loss_mask[rows, lengths] = True
        return replace(batch, features=features, padding_mask=padding_mask, targets={}, loss_mask=loss_mask)
    raise ValueError(f"unknown masking {masking!r}; known: {MASKINGS}")


def _blank(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, values, torch.zeros_like(values))


def _predictable(items: torch.Tensor) -> torch.Tensor:
    """Padding and out-of-vocabulary targets are never predicted (they are counted by evaluation)."""
    return (items != PAD_ID) & (items != OOV_ID)


def mask_batch(
    batch: Batch,
    masking: str,
    target_columns: list[str],
    *,
    training: bool,
    positions: str = "last",
    mask_ids: dict[str, int] | None = None,
    probability: float = 0.2,
    generator: torch.Generator | None = None,
) -> Batch:
    """Dispatch by masking name. Evaluation predicts `positions` ("last" or "all"; mlm predicts the last)."""
    if masking == "clm":
        return clm(batch, target_columns, positions="all" if training else positions)
    if masking == "mlm":
        return mlm(batch, target_columns, mask_ids or {}, probability, generator, training=training)
    raise ValueError(f"unknown masking {masking!r}; known: {MASKINGS}")

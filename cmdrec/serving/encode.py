"""The feature workflow applied to live histories without building a dataframe per request.

It computes what `Workflow.transform` followed by `SequenceData.from_frame` computes for a batch
of single-session histories (tested equal), from lookup tables built once: command -> id, command
-> catalogue value ids, attribute value -> id, and the normalisation statistics. A request then
costs dictionary lookups and one small tensor per column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from cmdrec.batch import Batch
from cmdrec.data.derived import feature
from cmdrec.data.readers import COMMAND, NO_CATEGORY
from cmdrec.data.sequences import command_attribute
from cmdrec.data.workflow import Workflow, event_attributes
from cmdrec.schema import FIRST_VALUE_ID, OOV_ID, PAD_ID, Schema, Tag


class HistoryEncoder:
    def __init__(self, workflow: Workflow, schema: Schema, columns: list[str], data_dir: str | Path, window: int):
        self.columns, self.window = columns, window  # window: events the model reads before the one it predicts
        self.item = schema.item_id.name
        self.tokens = workflow.tokens  # workflow tokens the model reads instead of single commands
        self.command_ids = _ids(workflow, COMMAND)
        self.attributes = event_attributes(workflow)
        self.attribute_ids = {c: _ids(workflow, c) for c in self.attributes if c in columns}
        catalogue = workflow.catalogue
        self.per_command: dict[str, dict[str, int]] = {}  # catalogue columns, by command name
        self.looked_up: dict[str, np.ndarray] = {}  # per-command tables (LLM labels), by command id
        self.continuous = {}
        self.derived = {}
        for name in columns:
            spec = schema[name]
            if name == self.item or name in self.attribute_ids:
                continue
            if spec.properties.get("key") == self.item:
                self.looked_up[name] = command_attribute(data_dir, spec)
            elif spec.has(Tag.CONTINUOUS):
                fitted = workflow.normalize[name]
                self.continuous[name] = (fitted.mean, fitted.std)
                self.derived[name] = feature(name).values
            else:
                ids = _ids(workflow, name)
                values = dict(zip(catalogue[COMMAND].to_list(), catalogue[name].to_list(), strict=True))
                self.per_command[name] = {
                    c: ids.get(NO_CATEGORY if v is None else v, OOV_ID) for c, v in values.items()
                }
                self.per_command[name][None] = ids.get(NO_CATEGORY, OOV_ID)  # commands outside the catalogue

    def encode(
        self,
        histories: Sequence[Sequence[str]],
        timestamps: Sequence[Sequence[datetime]] | None,
        attributes: Sequence[Mapping[str, str | None]] | None,
    ) -> Batch:
        """One right-padded batch of each history's last `window` events (histories are non-empty)."""
        rows = []
        for index, history in enumerate(histories):
            times = None if timestamps is None else timestamps[index]
            given = {} if attributes is None else attributes[index]
            rows.append(self._encode_one(history, times, given))
        width = max(len(row[self.item]) for row in rows)
        features = {}
        for name in self.columns:
            continuous = name in self.continuous
            array = np.zeros((len(rows), width), dtype=np.float32 if continuous else np.int64)
            if not continuous:
                array.fill(PAD_ID)
            for r, row in enumerate(rows):
                array[r, : len(row[name])] = row[name]
            features[name] = torch.from_numpy(array)
        lengths = torch.tensor([len(row[self.item]) for row in rows])
        padding_mask = torch.arange(width)[None, :] < lengths[:, None]
        return Batch(features=features, padding_mask=padding_mask, item_column=self.item)

    def _encode_one(self, history, times, given) -> dict[str, list]:
        if self.tokens is not None:
            return self._encode_tokens(history, times, given)
        start = max(len(history) - self.window, 0)
        ids = [self.command_ids.get(c, OOV_ID) for c in history[start:]]
        return self._features(history, times, given, start, list(range(start, len(history))), ids)

    def _encode_tokens(self, history, times, given) -> dict[str, list]:
        """The whole history as workflow tokens (as evaluation tokenizes it), then its last `window`
        tokens, each with the features of its first event."""
        ids = [self.command_ids.get(c, OOV_ID) for c in history]
        token_ids, starts = self.tokens.spans([ids])[0]
        token_ids, starts = token_ids[-self.window :], starts[-self.window :]
        return self._features(history, times, given, starts[0], starts, token_ids)

    def _features(self, history, times, given, start: int, events: list[int], items: list[int]) -> dict[str, list]:
        """The row of the events at `events` (all at or after `start`), read by the model as `items`."""
        commands = [history[i] for i in events]
        first = [self.command_ids.get(c, OOV_ID) for c in commands]
        row = {self.item: items}
        for name, table in self.per_command.items():
            row[name] = [table.get(c, table[None]) for c in commands]
        for name, table in self.looked_up.items():
            row[name] = table[first].tolist()
        for name, table in self.attribute_ids.items():
            value = given.get(name)
            row[name] = [OOV_ID if value is None else table.get(value, OOV_ID)] * len(events)
        for name, (mean, std) in self.continuous.items():
            raw = self.derived[name](times, start, len(history))
            row[name] = [(raw[i - start] - mean) / std for i in events]
        return row


def _ids(workflow: Workflow, column: str) -> dict[str, int]:
    return {value: index for index, value in enumerate(workflow.categorify[column].values, FIRST_VALUE_ID)}

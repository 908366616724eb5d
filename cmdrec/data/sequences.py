"""Preprocessed Parquet sequences -> fixed-length windows -> `Batch`es.

Sessions in command logs are long (VS logs: median ~73 events after cleaning, mean ~240), so
training cuts every session into windows of at most `window` events that overlap by one
event: each transition (event t -> event t+1) is a training target in exactly one window and
none is wasted. Evaluation uses the most recent window of each session. Windows are padded on
the right and each batch is trimmed to its own longest window.

The order of training batches is a pure function of (seed, epoch), so a resumed run can skip to
the batch it stopped at and see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from cmdrec.batch import Batch
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.files import read_table_parts, table_parts
from cmdrec.data.sessions import SESSION
from cmdrec.data.tokens import first_command_ids, token_extensions
from cmdrec.errors import InputError
from cmdrec.schema import PAD_ID, ColumnSpec, Schema, Tag


def window_bounds(lengths: np.ndarray, window: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session index, start, end) of each window. `mode`: "train" (all windows) or "eval" (the last)."""
    if mode == "eval":
        ends = lengths.astype(np.int64)
        return np.arange(len(lengths)), np.maximum(ends - window, 0), ends
    sessions, starts, ends = [], [], []
    stride = window - 1  # consecutive windows share one event, so every transition is used once
    for index, length in enumerate(lengths.tolist()):
        end = length
        while end >= 2:
            sessions.append(index)
            starts.append(max(end - window, 0))
            ends.append(end)
            end -= stride
    return np.asarray(sessions, dtype=np.int64), np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


@dataclass
class SequenceData:
    """One split's windows as padded arrays, ready to be sliced into batches."""

    arrays: dict[str, np.ndarray]  # (n_windows, window) per column
    lengths: np.ndarray  # (n_windows,)
    item_column: str
    # with `earlier_items`: every item id of the split flat (plus a trailing PAD), and each window's
    # session start and window start in it, so a batch can list the events before its windows
    flat_items: np.ndarray | None = None
    session_starts: np.ndarray | None = None
    window_starts: np.ndarray | None = None
    first_commands: np.ndarray | None = None  # item id -> its first command, when items are workflow tokens
    token_extensions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see data.tokens.token_extensions

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def load(
        cls,
        data_dir: str | Path,
        split: str,
        columns: list[str],
        window: int,
        mode: str,
        earlier_items: bool = False,
    ) -> SequenceData:
        """`earlier_items`: batches also carry the items before each window (`Batch.earlier_items`),
        so evaluation can exclude everything a user has seen, however long the session."""
        data_dir = Path(data_dir)
        schema = load_schema(data_dir)
        parts = table_parts(data_dir, split)
        if not parts:
            raise InputError(f"no {split} split at {data_dir / split}.parquet; run preprocessing first")
        stored = [
            name for name in _wanted(schema, columns) if schema[name].properties.get("key") != schema.item_id.name
        ]
        frame = read_table_parts(data_dir, split, columns=[SESSION, "length", *dict.fromkeys(stored)])
        if len(parts) > 1:  # shards of a log processed in partitions: in session order, as one file is
            frame = frame.sort(SESSION, maintain_order=True)  # a session's chunks stay in order
        frame = frame.drop(SESSION)
        return cls.from_frame(frame, schema, columns, window, mode, earlier_items, data_dir)

    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        schema: Schema,
        columns: list[str],
        window: int,
        mode: str,
        earlier_items: bool = False,
        data_dir: str | Path | None = None,
    ) -> SequenceData:
        """Windows of sequences already in memory (one row per session with list columns, as the
        workflow writes them); `data_dir` is needed only for columns looked up per command."""
        item = schema.item_id.name
        wanted = _wanted(schema, columns)
        per_command = [name for name in wanted if schema[name].properties.get("key") == item]
        lengths = frame["length"].to_numpy().astype(np.int64)
        session, starts, ends = window_bounds(lengths, window, mode)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        # flat position of each window cell; cells past a window's end point at a padding slot
        cell = np.arange(window)[None, :]
        window_lengths = ends - starts
        flat_index = offsets[session][:, None] + starts[:, None] + cell
        valid = cell < window_lengths[:, None]
        arrays = {}
        for name in wanted:
            if name in per_command:
                continue
            values = frame[name].explode().to_numpy()
            if name == item:
                item_values = values
            pad = (
                np.zeros(1, dtype=values.dtype)
                if schema[name].has(Tag.CONTINUOUS)
                else np.full(1, PAD_ID, dtype=values.dtype)
            )
            padded = np.concatenate([values, pad])
            arrays[name] = padded[np.where(valid, flat_index, len(values))]
        first = first_command_ids(schema)
        commands = arrays[item] if first is None else first[arrays[item]]  # a token has its first command's
        for name in per_command:  # attributes of the command (e.g. LLM labels): looked up, not stored per event
            arrays[name] = command_attribute(data_dir, schema[name])[commands]
        extensions = token_extensions(schema)
        if not earlier_items:
            return cls(arrays, window_lengths, item, first_commands=first, token_extensions=extensions)
        flat_items = np.concatenate([item_values, np.full(1, PAD_ID, dtype=item_values.dtype)])
        return cls(
            arrays, window_lengths, item, flat_items, offsets[session], offsets[session] + starts, first, extensions
        )

    def batch(self, indices: np.ndarray) -> Batch:
        lengths = self.lengths[indices]
        width = int(lengths.max())
        features = {}
        for name, array in self.arrays.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array[indices, :width]))
            features[name] = tensor.float() if tensor.is_floating_point() else tensor.long()
        padding_mask = torch.arange(width)[None, :] < torch.from_numpy(lengths)[:, None]
        return Batch(
            features=features,
            padding_mask=padding_mask,
            item_column=self.item_column,
            earlier_items=self._earlier_items(indices),
        )

    def _earlier_items(self, indices: np.ndarray) -> torch.Tensor | None:
        if self.flat_items is None:
            return None
        begins, ends = self.session_starts[indices], self.window_starts[indices]
        width = int((ends - begins).max())
        cell = np.arange(width)[None, :]
        index = np.where(cell < (ends - begins)[:, None], begins[:, None] + cell, len(self.flat_items) - 1)
        return torch.from_numpy(self.flat_items[index]).long()


def _wanted(schema: Schema, columns: list[str]) -> list[str]:
    wanted = list(dict.fromkeys([schema.item_id.name, *columns]))
    for name in wanted:
        schema[name]  # raises naming the known columns
    return wanted


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def iterate_batches(data: SequenceData, batch_size: int, order: np.ndarray | None = None, start_batch: int = 0):
    """Yield (batch index, Batch); `order` None keeps the data order (evaluation)."""
    order = np.arange(len(data)) if order is None else order
    for number, begin in enumerate(range(0, len(order), batch_size)):
        if number >= start_batch:
            yield number, data.batch(order[begin : begin + batch_size])


def batches_per_epoch(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size


def command_attribute(data_dir: str | Path, spec: ColumnSpec) -> np.ndarray:
    """A per-command column as an array indexed by command id (its spec names the table)."""
    path = Path(data_dir) / spec.properties["table"]
    if not path.is_file():
        raise InputError(f"column {spec.name!r} is looked up in {path}, which does not exist; run `cmdrec embed` again")
    table = pl.read_parquet(path, columns=[spec.properties["key"], spec.name]).sort(spec.properties["key"])
    return table[spec.name].to_numpy()


def load_schema(data_dir: str | Path) -> Schema:
    return PreparedDataset(data_dir).schema()

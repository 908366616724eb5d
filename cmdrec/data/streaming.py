"""A training split read one shard at a time (`training.streaming: true`), so a split larger than
memory trains: the data in memory is one shard's windows.

Its order is its own, deterministic from (seed, epoch): the shards in a seeded order, the windows
of each shard in a seeded order, batches never spanning two shards. It differs from the in-memory
order (which shuffles all windows at once), so streaming is asked for, never the default. A resumed
epoch skips the shards before its batch without reading them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from cmdrec.data.files import table_parts
from cmdrec.data.sequences import SequenceData, _wanted, load_schema, window_bounds
from cmdrec.data.sessions import SESSION
from cmdrec.errors import InputError


class StreamingSequences:
    def __init__(self, data_dir: str | Path, split: str, columns: list[str], window: int):
        self.data_dir = Path(data_dir)
        self.parts = table_parts(self.data_dir, split)
        if not self.parts:
            raise InputError(f"no {split} split at {self.data_dir / split}.parquet; run preprocessing first")
        self.schema = load_schema(self.data_dir)
        self.columns, self.window = columns, window
        self.item_column = self.schema.item_id.name
        # windows per shard, from the length column alone
        self.windows = [
            len(window_bounds(pl.read_parquet(p, columns=["length"])["length"].to_numpy(), window, "train")[0])
            for p in self.parts
        ]

    def __len__(self) -> int:
        return sum(self.windows)

    def batches_per_epoch(self, batch_size: int) -> int:
        return sum(-(-n // batch_size) for n in self.windows)

    def epoch(
        self, batch_size: int, seed: int, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[int, SequenceData, np.ndarray]]:
        """(batch number, the shard's windows, this batch's window indices) for every batch from `start_batch`."""
        number = 0
        for shard in np.random.default_rng([seed, epoch]).permutation(len(self.parts)):
            count = -(-self.windows[shard] // batch_size)
            if number + count <= start_batch:  # wholly before the resume point: not read
                number += count
                continue
            data = self._load(int(shard))
            order = np.random.default_rng([seed, epoch, int(shard)]).permutation(len(data))
            for begin in range(0, len(order), batch_size):
                if number >= start_batch:
                    yield number, data, order[begin : begin + batch_size]
                number += 1

    def _load(self, shard: int) -> SequenceData:
        stored = [
            name
            for name in _wanted(self.schema, self.columns)
            if self.schema[name].properties.get("key") != self.schema.item_id.name
        ]
        frame = pl.read_parquet(self.parts[shard], columns=[SESSION, "length", *dict.fromkeys(stored)])
        return SequenceData.from_frame(
            frame.drop(SESSION), self.schema, self.columns, self.window, "train", data_dir=self.data_dir
        )

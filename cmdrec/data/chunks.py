"""Random-length chunks of training sessions (`features.chunking: {min: 10, max: 100}`): each train
session is cut into consecutive pieces of seeded random length in [min, max] (the last piece is
what remains, kept when it has at least two events), so the model sees sessions starting at many
points rather than only at their beginning. A chunk longer than the model's context is windowed
as any sequence is. Valid and test are never cut: evaluation sees whole sessions."""

from __future__ import annotations

import numpy as np
import polars as pl

from cmdrec.config import ChunkingConfig
from cmdrec.data.sessions import SESSION
from cmdrec.data.workflow import LENGTH

CHUNK = "chunk"


def chunk_sequences(sequences: pl.DataFrame, chunking: ChunkingConfig, seed: int) -> tuple[pl.DataFrame, dict]:
    if sequences.height == 0:
        return sequences.with_columns(pl.lit(0, dtype=pl.Int32).alias(CHUNK)), {"sessions": 0, "chunks": 0}
    lists = [c for c, dtype in sequences.schema.items() if isinstance(dtype, pl.List)]
    pieces = []  # per session: the chunk number of each event
    for session, length in sequences.select(SESSION, LENGTH).iter_rows():
        rng = np.random.default_rng([seed, int(session)])  # the session's own stream: independent of the others
        numbers, position, chunk = [], 0, 0
        while position < length:
            size = int(rng.integers(chunking.min, chunking.max + 1))
            numbers += [chunk] * min(size, length - position)
            position, chunk = position + size, chunk + 1
        pieces.append(numbers)
    exploded = sequences.with_columns(pl.Series(CHUNK, pieces, dtype=pl.List(pl.Int32))).explode([*lists, CHUNK])
    keep = [c for c in sequences.columns if c not in (*lists, LENGTH)]
    chunked = (
        exploded.group_by(SESSION, CHUNK, maintain_order=True)
        .agg(*[pl.col(c).first() for c in keep if c != SESSION], *[pl.col(c) for c in lists])
        .with_columns(pl.col(lists[0]).list.len().cast(pl.Int32).alias(LENGTH))
        .filter(pl.col(LENGTH) >= 2)
        .select(*sequences.columns, CHUNK)
    )
    return chunked, {"sessions": sequences.height, "chunks": chunked.height}

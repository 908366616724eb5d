"""On-disk embedding cache, keyed by provider, model and text: only texts not yet embedded by
that provider and model are sent to it; a change of model is a different key, so nothing stale
is ever served."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import polars as pl

from cmdrec.io import write_parquet_atomic


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, directory: str | Path, provider: str, model: str):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{provider}__{model}")
        self.path = Path(directory) / f"{slug}.parquet"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.is_file():
            frame = pl.read_parquet(self.path)
            self.vectors = {
                key: np.asarray(vector, dtype=np.float32)
                for key, vector in zip(frame["key"], frame["vector"].to_list(), strict=False)
            }

    def missing(self, texts: list[str]) -> list[str]:
        return list(dict.fromkeys(t for t in texts if text_key(t) not in self.vectors))

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        for text, vector in zip(texts, vectors, strict=False):
            self.vectors[text_key(text)] = np.asarray(vector, dtype=np.float32)
        keys = list(self.vectors)
        write_parquet_atomic(pl.DataFrame({"key": keys, "vector": [self.vectors[k].tolist() for k in keys]}), self.path)

    def lookup(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[text_key(t)] for t in texts])

"""Embed every command of a preprocessed dataset: one row per command id, written beside the
sequences as `text_embeddings.safetensors` (reserved ids get zero vectors)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import save_file

from cmdrec.config import TextConfig
from cmdrec.errors import InputError
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.text.cache import EmbeddingCache
from cmdrec.text.providers import build_provider

log = logging.getLogger(__name__)
ITEMS_FILE = "items.parquet"
TEXT_EMBEDDINGS = "text_embeddings.safetensors"


def command_texts(items: pl.DataFrame, augmented: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The text of each command: its catalogue description (or name), plus the LLM's answers when given."""
    texts = []
    for row in items.iter_rows(named=True):
        text = row.get("description") or row["name"]
        if augmented and row["name"] in augmented:
            answer = augmented[row["name"]]
            text = f"{row['name']}: {answer['summary']} Action: {answer['classification']}. Target: {answer['target']}. {text}"
        texts.append(text)
    return texts


def embed_commands(data_dir: str | Path, config: TextConfig, provider=None) -> dict:
    data_dir = Path(data_dir)
    path = data_dir / ITEMS_FILE
    if not path.is_file():
        raise InputError(f"no {ITEMS_FILE} in {data_dir}; run preprocessing first")
    items = pl.read_parquet(path)
    commands = items.slice(FIRST_VALUE_ID)
    augmented = None
    if config.augment:
        from cmdrec.text.augment import DescriptionAugmenter

        augmenter = DescriptionAugmenter(config.llm_model, config.llm_base_url, config.cache_dir, config.application)
        augmented = {row["name"]: augmenter.describe(row["name"], row.get("category_name"), row.get("description"))
                     for row in commands.iter_rows(named=True)}
        log.info("LLM descriptions: %d new request(s), %d from cache", augmenter.calls, len(augmented) - augmenter.calls)
    texts = command_texts(commands, augmented)
    provider = provider or build_provider(config.provider, model=config.model, base_url=config.base_url, batch_size=config.batch_size)
    cache = EmbeddingCache(config.cache_dir, provider.name, provider.model_id)
    missing = cache.missing(texts)
    if missing:
        cache.add(missing, provider.embed(missing))
    vectors = cache.lookup(texts)
    table = np.zeros((len(items), vectors.shape[1]), dtype=np.float32)
    table[FIRST_VALUE_ID:] = vectors
    save_file({"embeddings": torch.from_numpy(table)}, str(data_dir / TEXT_EMBEDDINGS),
              metadata={"provider": provider.name, "model": provider.model_id, "augmented": str(bool(augmented))})
    return {"commands": len(texts), "embedded_now": len(missing), "from_cache": len(set(texts)) - len(missing),
            "dimension": int(vectors.shape[1]), "provider": provider.name, "model": provider.model_id,
            "path": str(data_dir / TEXT_EMBEDDINGS)}

"""Embed every command of a preprocessed dataset: one row per command id, written beside the
sequences as `text_embeddings.safetensors` (reserved ids get zero vectors)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.torch import save_file

from cmdrec.config import TextConfig
from cmdrec.data.dataset import COMMAND_LABELS, PreparedDataset
from cmdrec.errors import InputError
from cmdrec.schema import FIRST_VALUE_ID, OOV_ID, PAD_ID, ColumnSpec, Tag
from cmdrec.text.cache import EmbeddingCache
from cmdrec.text.providers import build_provider

log = logging.getLogger(__name__)
LABEL_FIELDS = ("classification", "target")  # the LLM answers that become labels (the summary is text)


def command_texts(items: pl.DataFrame, augmented: dict[str, dict[str, str]] | None = None) -> list[str]:
    """The text of each command: its catalogue description (or name), plus the LLM's answers when given."""
    texts = []
    for row in items.iter_rows(named=True):
        text = row.get("description") or row["name"]
        if augmented and row["name"] in augmented:
            answer = augmented[row["name"]]
            text = (
                f"{row['name']}: {answer['summary']} Action: {answer['classification']}. Target: "
                f"{answer['target']}. {text}"
            )
        texts.append(text)
    return texts


def embed_commands(data_dir: str | Path, config: TextConfig, provider=None) -> dict:
    data_dir = Path(data_dir)
    dataset = PreparedDataset(data_dir)
    items = dataset.items()
    commands = items.slice(FIRST_VALUE_ID)
    # the cache sits with the data unless placed elsewhere, never in whatever directory this runs from
    cache_dir = Path(config.cache_dir) if config.cache_dir else data_dir.parent / "cache" / "text"
    if config.documents and not config.augment:
        raise InputError("text.documents grounds the LLM's descriptions: set text.augment=true as well")
    provider = provider or build_provider(
        config.provider,
        model=config.model,
        base_url=config.base_url,
        batch_size=config.batch_size,
        timeout_seconds=config.timeout_seconds,
        max_retry_seconds=config.max_retry_seconds,
    )
    augmented, retrieval = None, None
    if config.augment:
        from cmdrec.text.augment import DescriptionAugmenter

        augmenter = DescriptionAugmenter(
            config.llm_model,
            config.llm_base_url,
            cache_dir,
            config.application,
            timeout_seconds=config.timeout_seconds,
            max_retry_seconds=config.max_retry_seconds,
        )
        rows = list(commands.iter_rows(named=True))
        documentation = [None] * len(rows)
        if config.documents:
            from cmdrec.text.documents import DocumentIndex

            index = DocumentIndex(config.documents, provider, cache_dir)
            queries = [f"{row['name']}: {row.get('description') or ''}" for row in rows]
            documentation = index.search(queries, config.documents_top_k)
            retrieval = {"chunks": len(index.chunks), "index": str(index.index_path), "rebuilt": index.rebuilt}
        augmented = {
            row["name"]: augmenter.describe(row["name"], row.get("category_name"), row.get("description"), chunks)
            for row, chunks in zip(rows, documentation, strict=True)
        }
        log.info(
            "LLM descriptions: %d new request(s), %d from cache", augmenter.calls, len(augmented) - augmenter.calls
        )
    texts = command_texts(commands, augmented)
    label_columns = write_command_labels(dataset, items, augmented)
    cache = EmbeddingCache(cache_dir, provider.name, provider.model_id)
    missing = cache.missing(texts)
    if missing:
        cache.add(missing, provider.embed(missing))
    vectors = cache.lookup(texts)
    table = np.zeros((len(items), vectors.shape[1]), dtype=np.float32)
    table[FIRST_VALUE_ID:] = vectors
    save_file(
        {"embeddings": torch.from_numpy(table)},
        str(dataset.text_embeddings_path),
        metadata={"provider": provider.name, "model": provider.model_id, "augmented": str(bool(augmented))},
    )
    return {
        "commands": len(texts),
        "distinct_texts": len(set(texts)),
        "described": int(commands["description"].is_not_null().sum()) if "description" in commands.columns else 0,
        "cache_dir": str(cache_dir),
        "embedded_now": len(missing),
        "from_cache": len(set(texts)) - len(missing),
        "dimension": int(vectors.shape[1]),
        "provider": provider.name,
        "model": provider.model_id,
        "path": str(dataset.text_embeddings_path),
        "label_columns": label_columns,
        "documents": retrieval,
    }


def write_command_labels(
    dataset: PreparedDataset, items: pl.DataFrame, augmented: dict[str, dict[str, str]] | None
) -> dict[str, int]:
    """The LLM's one-word classification and target of each command as categorical label columns
    (`llm_classification`, `llm_target`, usable in `model.aux_tasks` or as inputs): written to
    `command_labels.parquet` and declared in schema.json as looked up by command id. Without
    augmentation any such columns from an earlier run are removed, so they never go stale.
    Returns each column's number of distinct values."""
    if not augmented:
        dataset.write_lookup_columns(COMMAND_LABELS, (), None)
        return {}
    item = dataset.schema().item_id.name
    names = items["name"].to_list()
    table, specs, sizes = {item: list(range(len(names)))}, [], {}
    for field in LABEL_FIELDS:
        column = f"llm_{field}"
        values = [augmented[name][field].strip().lower() for name in names[FIRST_VALUE_ID:]]
        counts = Counter(values)
        vocabulary = sorted(counts, key=lambda v: (-counts[v], v))
        ids = {value: FIRST_VALUE_ID + index for index, value in enumerate(vocabulary)}
        table[column] = [PAD_ID, OOV_ID, *(ids[v] for v in values)]
        specs.append(
            ColumnSpec(
                column,
                (Tag.CATEGORICAL, Tag.LIST, Tag.LABEL),
                "int64",
                FIRST_VALUE_ID + len(vocabulary),
                {"table": COMMAND_LABELS, "key": item, "pad_id": PAD_ID, "oov_id": OOV_ID, "values": vocabulary},
            )
        )
        sizes[column] = len(vocabulary)
    dataset.write_lookup_columns(COMMAND_LABELS, specs, pl.DataFrame(table, schema={name: pl.Int64 for name in table}))
    return sizes

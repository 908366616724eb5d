"""The files of a processed and of a preprocessed (prepared) data directory, named in one place.

`PreparedDataset` is the one writer of a prepared directory's `schema.json`, items table and workflow:
preprocessing writes them through it, and the text pipeline adds its embedding table and LLM label
columns through it. Readers (the trainer, bundles, the predictor, reports) ask it for paths, so no
file name is spelled twice."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cmdrec.data.readers import COMMAND
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic, write_parquet_atomic
from cmdrec.schema import OOV_ID, ColumnSpec, Schema

if TYPE_CHECKING:
    from cmdrec.data.workflow import Workflow

# a processed directory (`cmdrec process`)
EVENTS_FILE = "events.parquet"  # or an `events/` folder of shards
CATALOGUE_FILE = "catalogue.parquet"
PROCESSING_REPORT = "processing_report.json"
SCRATCH_DIR = ".scratch"  # partitions between the passes of a log processed in parts

# a prepared directory (`cmdrec preprocess`, `cmdrec embed`)
SCHEMA_FILE = "schema.json"
ITEMS_FILE = "items.parquet"
WORKFLOW_DIR = "workflow"
WORKFLOW_FILE = "workflow.json"  # inside WORKFLOW_DIR, beside the catalogue the workflow was fitted with
WORKFLOW_CATALOGUE = "catalogue.parquet"
TOKENIZER_FILE = "workflow_tokens.json"  # inside WORKFLOW_DIR: the learned merges (features.workflows)
PROCESSING_FILE = "processing.json"  # the cleaning the sessions went through, for serving to repeat
PREPROCESS_REPORT = "preprocess_report.json"
TEXT_EMBEDDINGS = "text_embeddings.safetensors"
COMMAND_LABELS = "command_labels.parquet"
# what a bundle copies of a prepared directory (the splits stay behind)
SERVED_FILES = (SCHEMA_FILE, ITEMS_FILE, WORKFLOW_DIR, TEXT_EMBEDDINGS, COMMAND_LABELS, PROCESSING_FILE)


class PreparedDataset:
    """A preprocessed data directory, or a bundle's copy of the parts a model is served with."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    schema_path = property(lambda self: self.path / SCHEMA_FILE)
    items_path = property(lambda self: self.path / ITEMS_FILE)
    workflow_dir = property(lambda self: self.path / WORKFLOW_DIR)
    processing_path = property(lambda self: self.path / PROCESSING_FILE)
    report_path = property(lambda self: self.path / PREPROCESS_REPORT)
    text_embeddings_path = property(lambda self: self.path / TEXT_EMBEDDINGS)
    command_labels_path = property(lambda self: self.path / COMMAND_LABELS)

    def exists(self) -> bool:
        return self.schema_path.is_file()

    def schema(self) -> Schema:
        if not self.schema_path.is_file():
            raise InputError(f"no {SCHEMA_FILE} in {self.path}; run preprocessing first")
        return Schema.from_json(self.schema_path)

    def items(self) -> pl.DataFrame:
        """One row per command id, in id order."""
        if not self.items_path.is_file():
            raise InputError(f"no {ITEMS_FILE} in {self.path}; run preprocessing first")
        return pl.read_parquet(self.items_path).sort(COMMAND)

    def workflow(self) -> Workflow:
        from cmdrec.data.workflow import Workflow  # the workflow reads its file names from here

        return Workflow.load(self.workflow_dir)

    # ------------------------------------------------------------ writing

    def write_prepared(self, workflow: Workflow, processing: dict, report: dict) -> None:
        """What preprocessing fitted: the workflow, the schema it outputs, the items table, the
        cleaning record and the report. The splits are written beside them by the caller."""
        workflow.save(self.workflow_dir)
        workflow.output_schema().to_json(self.schema_path)
        write_json_atomic(self.processing_path, processing)
        write_parquet_atomic(workflow.items(), self.items_path)
        write_json_atomic(self.report_path, report)

    def write_lookup_columns(self, table_file: str, columns: Iterable[ColumnSpec], table: pl.DataFrame | None) -> None:
        """Replace the schema's columns looked up in `table_file` (the text pipeline's LLM labels) by
        `columns`, with `table` written as that file; `table=None` removes both."""
        schema = self.schema()
        kept = tuple(c for c in schema.columns if c.properties.get("table") != table_file)
        columns = tuple(columns)
        if table is None:
            (self.path / table_file).unlink(missing_ok=True)
        else:
            write_parquet_atomic(table, self.path / table_file)
        if columns or len(kept) != len(schema.columns):
            Schema((*kept, *columns)).to_json(self.schema_path)

    # ------------------------------------------------------------ the vocabulary

    def vocabulary(self) -> pl.DataFrame:
        """id, command, category, train count, then the catalogue's commands without an id of their
        own (too rare in train, or never seen), which map to the out-of-vocabulary id."""
        if not self.items_path.is_file():
            raise InputError(f"no {ITEMS_FILE} in {self.path}: give a preprocessed data directory or a bundle")
        items = self.items()
        category = pl.col("category_name") if "category_name" in items.columns else pl.lit(None, dtype=pl.Utf8)
        table = items.select(
            pl.col(COMMAND).alias("id"),
            pl.col("name").alias("command"),
            category.alias("category"),
            pl.col("train_count"),
            pl.lit(None, dtype=pl.Utf8).alias("maps_to"),
        )
        catalogue_path = self.workflow_dir / WORKFLOW_CATALOGUE
        if not catalogue_path.is_file():
            return table
        catalogue = pl.read_parquet(catalogue_path)
        unlisted = catalogue.filter(~pl.col(COMMAND).is_in(items["name"].implode()))
        if not unlisted.height:
            return table
        unlisted = unlisted.select(
            pl.lit(OOV_ID, dtype=pl.Int64).alias("id"),
            pl.col(COMMAND).alias("command"),
            pl.col("category") if "category" in unlisted.columns else pl.lit(None, dtype=pl.Utf8),
            pl.lit(None, dtype=pl.Int64).alias("train_count"),
            pl.lit("<oov>").alias("maps_to"),
        )
        return pl.concat([table, unlisted.sort("command")])

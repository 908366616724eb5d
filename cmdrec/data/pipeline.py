"""The two data jobs users run: `process` (raw log -> cleaned sessions) and `preprocess`
(sessions -> split -> fitted feature workflow -> model-ready sequences with a schema)."""

from __future__ import annotations

import json
import logging
import operator
import shutil
import time
from functools import partial, reduce
from pathlib import Path

import polars as pl

from cmdrec.config import DataConfig, ProcessingConfig, from_dict, to_dict
from cmdrec.data.chunks import chunk_sequences
from cmdrec.data.dataset import (
    CATALOGUE_FILE,
    EVENTS_FILE,
    PROCESSING_REPORT,
    SCRATCH_DIR,
    PreparedDataset,
)
from cmdrec.data.files import LoadReport, table_parts
from cmdrec.data.partitioned import (
    LocalEngine,
    combine_transform_reports,
    combined_statistics,
    make_engine,
    partition_count,
    process_partitioned,
    shard_keys,
    shard_statistics,
    shard_transform,
)
from cmdrec.data.presets import noise_commands
from cmdrec.data.readers import COMMAND, bare_catalogue, read_catalogue
from cmdrec.data.splits import SPLITS, assign_splits, split_sessions_table
from cmdrec.data.splits import split_report as split_report_of
from cmdrec.data.tokens import WorkflowTokens, describe, tokenize_sequences
from cmdrec.data.undo import resolve_rules
from cmdrec.data.workflow import Workflow
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)


def process_logs(config: DataConfig) -> dict:
    """Read the raw log, clean it into sessions and write them with a report of every step."""
    started = time.perf_counter()
    catalogue_read = LoadReport()

    def catalogue_for(commands: pl.Series) -> pl.DataFrame:
        if config.catalogue.path:
            return read_catalogue(config.catalogue, catalogue_read)
        return bare_catalogue(commands)

    partitions = partition_count(config)
    out = Path(config.processed_dir)
    scratch = out / SCRATCH_DIR
    engine = make_engine(config) if partitions > 1 else LocalEngine()
    try:
        processed, write_sessions = process_partitioned(config, catalogue_for, partitions, engine, scratch)
        log.info("read %d events from %d file(s)", processed.load_report.rows_read, processed.load_report.files)
        if all(r.after is None for r in processed.results):
            raise InputError("no sessions are left after processing; see the step counts above")
        shards = write_sessions(out)
    finally:
        engine.close()
        shutil.rmtree(scratch, ignore_errors=True)
    write_parquet_atomic(processed.catalogue, out / CATALOGUE_FILE)
    catalogue_report = processed.catalogue_report | {"values_stripped": catalogue_read.stripped}
    report = {
        "dataset": config.name,
        "config": to_dict(config),
        "read": processed.load_report.to_dict(),
        "catalogue": catalogue_report,
        "steps": processed.steps,
        "before": combined_statistics(processed.results, "before"),
        "after": combined_statistics(processed.results, "after"),
        "partitions": {"count": partitions, "engine": engine.name, "files": [p.name for p in shards]},
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(out / PROCESSING_REPORT, report)
    return report


def processing_record(processed_dir: Path) -> dict:
    """The processing settings the sessions were cleaned with (from the process step's report)."""
    report_path = processed_dir / PROCESSING_REPORT
    if not report_path.is_file():
        return {"processing": None, "noise_commands": None}
    settings = json.loads(report_path.read_text())["config"]["processing"]
    processing = from_dict(ProcessingConfig, settings)
    catalogue_path = processed_dir / CATALOGUE_FILE
    rules = resolve_rules(processing.undo, pl.read_parquet(catalogue_path) if catalogue_path.is_file() else None)
    return {
        "processing": settings,
        "noise_commands": list(noise_commands(processing.noise_preset, processing.noise_commands)),
        "undo": None if rules is None else rules.to_dict(),
    }


def preprocess(config: DataConfig) -> dict:
    """Split processed sessions, fit the workflow on train, and write sequences for every split.

    Sessions in one file are preprocessed in memory; sessions in shards (a log processed in
    partitions) shard by shard, the split assignment and the fitted workflow reduced over shards."""
    started = time.perf_counter()
    source = Path(config.processed_dir)
    shards = table_parts(source, "events")
    if not shards:
        raise InputError(f"no processed sessions at {source / EVENTS_FILE}; run the process step first")
    if len(shards) > 1 and config.features.workflows is not None:
        raise InputError(
            "features.workflows learns its merges from every training session at once: preprocess a log processed "
            "in one partition (processing.partitions=1) to use it"
        )
    catalogue = pl.read_parquet(source / CATALOGUE_FILE)
    out = Path(config.preprocessed_dir)
    for name in SPLITS:  # one layout at a time
        (out / f"{name}.parquet").unlink(missing_ok=True)
        shutil.rmtree(out / name, ignore_errors=True)
    if len(shards) == 1:
        workflow, split_report, transform_reports = _preprocess_in_memory(shards[0], catalogue, config, out)
    else:
        workflow, split_report, transform_reports = _preprocess_shards(shards, catalogue, config, out)
    report = {
        "dataset": config.name,
        "split": split_report,
        "vocabulary": {name: fitted.cardinality for name, fitted in workflow.categorify.items()},
        "continuous": list(workflow.normalize),
        "transform": transform_reports,
        "shards": len(shards),
        "seconds": round(time.perf_counter() - started, 3),
    }
    PreparedDataset(out).write_prepared(workflow, processing_record(source), report)
    return report


def _preprocess_in_memory(path: Path, catalogue: pl.DataFrame, config: DataConfig, out: Path):
    sessions = pl.read_parquet(path)
    parts, split_report = split_sessions_table(sessions, config.split)
    if config.features.holdout_commands:
        held_out = pl.col("command").is_in(list(config.features.holdout_commands))
        split_report["holdout_events_removed_from_train"] = parts["train"].filter(held_out).height
        parts["train"] = parts["train"].filter(~held_out)
    workflow = Workflow.fit(parts["train"], catalogue, config.features)
    transform_reports = {}
    for name in SPLITS:
        if parts[name].height == 0:
            log.warning("split %s is empty", name)
        sequences, transform_reports[name] = workflow.transform(parts[name])
        if name == "train" and config.features.chunking is not None:
            sequences, transform_reports[name]["chunking"] = chunk_sequences(
                sequences, config.features.chunking, config.split.seed
            )
        if config.features.workflows is not None:
            sequences, transform_reports[name]["workflows"] = _workflow_tokens(workflow, sequences, name, config)
        write_parquet_atomic(sequences, out / f"{name}.parquet")
    return workflow, split_report, transform_reports


def _workflow_tokens(workflow: Workflow, sequences: pl.DataFrame, split: str, config: DataConfig):
    """Learn the workflow tokens on the training sequences (the first split transformed), then tokenize."""
    commands = workflow.categorify[COMMAND]
    if workflow.tokens is None:
        workflow.tokens = WorkflowTokens.fit(
            sequences[COMMAND].to_list(), commands.cardinality, config.features.workflows
        )
    list_columns = [*workflow.categorify, *workflow.normalize]
    tokenized, report = tokenize_sequences(
        sequences, workflow.tokens, COMMAND, list_columns, "train" if split == "train" else "eval"
    )
    if split == "train":
        report["learned"] = len(workflow.tokens.composites)
        report["first_learned"] = describe(workflow.tokens, ["<pad>", "<oov>", *commands.values])
    return tokenized, report


def _preprocess_shards(shards: list[Path], catalogue: pl.DataFrame, config: DataConfig, out: Path):
    engine = make_engine(config)
    paths = [str(p) for p in shards]
    try:
        assignment, balance = None, {}
        if config.split.method != "leave_one_out":
            keys = engine.map(partial(shard_keys, config=config.split), paths, "collect split keys")
            assignment, balance = assign_splits(keys, config.split)
        fitted = engine.map(
            partial(shard_statistics, assignment=assignment, catalogue=catalogue, config=config),
            paths,
            "fit the feature workflow",
        )
        counts = [c for c, _ in fitted]
        split_report = split_report_of(counts, config.split.method) | balance
        if config.features.holdout_commands:
            split_report["holdout_events_removed_from_train"] = sum(
                c["holdout_events_removed_from_train"] for c in counts
            )
        workflow = Workflow.from_statistics(reduce(operator.add, [s for _, s in fitted]), catalogue, config.features)
        reports = engine.map(
            partial(shard_transform, assignment=assignment, workflow=workflow, config=config, out_dir=str(out)),
            paths,
            "transform shards",
        )
    finally:
        engine.close()
    transform_reports = combine_transform_reports(reports)
    for name in SPLITS:
        if transform_reports[name]["events"] == 0:
            log.warning("split %s is empty", name)
    return workflow, split_report, transform_reports

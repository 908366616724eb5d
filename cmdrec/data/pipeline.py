"""The two data jobs users run: `process` (raw log -> cleaned sessions) and `preprocess`
(sessions -> split -> fitted feature workflow -> model-ready sequences with a schema)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import polars as pl

from cmdrec.config import DataConfig, ProcessingConfig, from_dict, to_dict
from cmdrec.data.files import LoadReport
from cmdrec.data.presets import noise_commands
from cmdrec.data.readers import bare_catalogue, join_catalogue, read_catalogue, read_events
from cmdrec.data.sessions import process_events, session_statistics, split_sessions
from cmdrec.data.splits import SPLITS, split_sessions_table
from cmdrec.data.workflow import Workflow
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic, write_parquet_atomic

log = logging.getLogger(__name__)

EVENTS_FILE = "events.parquet"
CATALOGUE_FILE = "catalogue.parquet"
PROCESSING_REPORT = "processing_report.json"
PREPROCESS_REPORT = "preprocess_report.json"
SCHEMA_FILE = "schema.json"
ITEMS_FILE = "items.parquet"
WORKFLOW_DIR = "workflow"
PROCESSING_FILE = "processing.json"  # the cleaning the sessions went through, for serving to repeat


def process_logs(config: DataConfig) -> dict:
    """Read the raw log, clean it into sessions and write them with a report of every step."""
    started = time.perf_counter()
    events, load_report = read_events(config.source)
    log.info("read %d events from %d file(s)", events.height, load_report.files)
    catalogue_read = LoadReport()
    catalogue = read_catalogue(config.catalogue, catalogue_read) if config.catalogue.path else bare_catalogue(events)
    events, catalogue_report = join_catalogue(events, catalogue, config.catalogue)
    catalogue_report["values_stripped"] = catalogue_read.stripped

    before = session_statistics(split_sessions(events, config.processing.session_gap_minutes))
    sessions, steps = process_events(events, config.processing)
    if sessions.height == 0:
        raise InputError("no sessions are left after processing; see the step counts above")
    after = session_statistics(sessions)

    out = Path(config.processed_dir)
    write_parquet_atomic(sessions, out / EVENTS_FILE)
    write_parquet_atomic(catalogue, out / CATALOGUE_FILE)
    report = {
        "dataset": config.name,
        "config": to_dict(config),
        "read": load_report.to_dict(),
        "catalogue": catalogue_report,
        "steps": steps,
        "before": before,
        "after": after,
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
    return {
        "processing": settings,
        "noise_commands": list(noise_commands(processing.noise_preset, processing.noise_commands)),
    }


def preprocess(config: DataConfig) -> dict:
    """Split processed sessions, fit the workflow on train, and write sequences for every split."""
    started = time.perf_counter()
    source = Path(config.processed_dir)
    if not (source / EVENTS_FILE).is_file():
        raise InputError(f"no processed sessions at {source / EVENTS_FILE}; run the process step first")
    sessions = pl.read_parquet(source / EVENTS_FILE)
    catalogue = pl.read_parquet(source / CATALOGUE_FILE)

    parts, split_report = split_sessions_table(sessions, config.split)
    if config.features.holdout_commands:
        held_out = pl.col("command").is_in(list(config.features.holdout_commands))
        split_report["holdout_events_removed_from_train"] = parts["train"].filter(held_out).height
        parts["train"] = parts["train"].filter(~held_out)
    workflow = Workflow.fit(parts["train"], catalogue, config.features)
    out = Path(config.preprocessed_dir)
    workflow.save(out / WORKFLOW_DIR)
    transform_reports = {}
    for name in SPLITS:
        if parts[name].height == 0:
            log.warning("split %s is empty", name)
        sequences, transform_reports[name] = workflow.transform(parts[name])
        write_parquet_atomic(sequences, out / f"{name}.parquet")
    workflow.output_schema().to_json(out / SCHEMA_FILE)
    write_json_atomic(out / PROCESSING_FILE, processing_record(source))
    write_parquet_atomic(workflow.items(), out / ITEMS_FILE)
    report = {
        "dataset": config.name,
        "split": split_report,
        "vocabulary": {name: fitted.cardinality for name, fitted in workflow.categorify.items()},
        "continuous": list(workflow.normalize),
        "transform": transform_reports,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json_atomic(out / PREPROCESS_REPORT, report)
    return report

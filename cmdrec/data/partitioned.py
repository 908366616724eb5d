"""Logs larger than memory: the process and preprocess jobs over partitions of users.

The scatter pass reads each source file once and appends its events to P partitions on disk by a
hash of the user. Every cleaning step and every split but `time`'s ordering is per user, so each
partition then goes through the same in-memory steps as a small log; what is global (session
numbering, the catalogue report, step counts and statistics, the split assignment, the fitted
vocabulary and normalisation) is a reduction of small per-partition results: per-user session
counts, value counts, moments, session keys. Peak memory is one partition and the largest input
file, not the log. With one partition nothing is scattered: the log is processed in memory.

The passes are functions of one file or one partition, mapped by an engine: here one at a time
(polars already uses every core within a partition), or as Dask tasks on a cluster.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
from tqdm.auto import tqdm

from cmdrec.config import DataConfig, SourceConfig, SplitConfig
from cmdrec.data.chunks import chunk_sequences
from cmdrec.data.dataset import EVENTS_FILE
from cmdrec.data.files import ROW, LoadReport, resolve_paths
from cmdrec.data.readers import (
    ORDER,
    USER,
    attach_catalogue,
    catalogue_report,
    concat_events,
    read_events,
    read_source_file,
)
from cmdrec.data.sessions import (
    SESSION,
    combine_statistics,
    combine_step_reports,
    partial_statistics,
    process_events,
    split_sessions,
)
from cmdrec.data.splits import SPLITS, apply_split, part_counts, split_keys
from cmdrec.data.undo import resolve_rules
from cmdrec.data.workflow import FitStatistics, Workflow
from cmdrec.errors import InputError
from cmdrec.io import write_parquet_atomic
from cmdrec.plugins import load_plugins

EVENTS_DIR = "events"
FILE = "_file"
SCATTER_DIR = "scatter"
LOCAL_DIR = "local"
SCRATCH_COMPRESSION = "lz4"  # files read once and deleted: writing fast beats writing small

# bytes an event takes in memory while a partition is cleaned (the frame, its sorted copy, joins),
# per byte of input file: measured on the VS CSV.gz logs and on synthetic Parquet shards
# (benchmarks/data_scale.py), rounded up
MEMORY_PER_INPUT_BYTE = {".gz": 80.0, ".parquet": 50.0}
MEMORY_PER_TEXT_BYTE = 8.0


# ---------------------------------------------------------------- engines


class LocalEngine:
    """One task at a time in this process."""

    name = "polars"

    def map(self, function: Callable, items: list, label: str) -> list:
        return [function(item) for item in progress(items, label)]

    def close(self) -> None:
        pass


class DaskEngine:
    """Tasks on a Dask cluster: an existing one (`scheduler_address`) or a local one. Workers must
    see the same paths as this process (a shared file system) for inputs, scratch and outputs."""

    name = "dask"

    def __init__(self, scheduler_address: str | None, workers: int):
        try:
            from distributed import Client, LocalCluster
        except ImportError as error:
            raise InputError("processing.engine 'dask' needs the dask extra: pip install 'cmdrec[dask]'") from error
        if scheduler_address:
            self.cluster = None
            self.client = Client(scheduler_address)
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            self.client = Client(self.cluster)
        self.client.run(load_plugins)  # workers import the same plugins (CMDREC_PLUGINS, entry points)

    def map(self, function: Callable, items: list, label: str) -> list:
        from distributed import as_completed

        futures = self.client.map(function, items, pure=False)
        for _ in progress(as_completed(futures), label, total=len(futures)):
            pass
        return self.client.gather(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_engine(config: DataConfig):
    processing = config.processing
    if processing.engine == "dask":
        return DaskEngine(processing.dask_scheduler_address, processing.dask_workers)
    return LocalEngine()


def progress(items: Iterable, label: str, total: int | None = None):
    # a bar on a terminal; nothing in a log file
    return tqdm(items, desc=label, total=total, disable=None, leave=False, unit="part")


# ---------------------------------------------------------------- how many partitions


def partition_count(config: DataConfig) -> int:
    """`processing.partitions`, or enough partitions for the ones cleaned at once (one; one per Dask
    worker of a local cluster) to fit in `processing.memory_budget_gb`."""
    processing = config.processing
    if processing.partitions is not None:
        return processing.partitions
    needed = sum(_memory_estimate(path) for path in resolve_paths(config.source.path))
    at_once = processing.dask_workers if processing.engine == "dask" and not processing.dask_scheduler_address else 1
    return max(1, math.ceil(needed * at_once / (processing.memory_budget_gb * 2**30)))


def _memory_estimate(path: Path) -> float:
    size = path.stat().st_size
    for suffix, factor in MEMORY_PER_INPUT_BYTE.items():
        if path.name.endswith(suffix):
            return size * factor
    return size * MEMORY_PER_TEXT_BYTE


# ---------------------------------------------------------------- process


@dataclass
class PartitionResult:
    """What one partition reports to the reduction."""

    before: dict  # partial statistics of the sessions as split
    after: dict | None  # of the cleaned sessions (None: nothing left)
    steps: list[dict]
    users: pl.DataFrame  # user -> sessions as split, local id of the first


def process_frame(
    events: pl.DataFrame, catalogue: pl.DataFrame, config: DataConfig
) -> tuple[pl.DataFrame, PartitionResult]:
    """Clean one partition's events (or a whole log held in memory); session ids are local."""
    split = split_sessions(attach_catalogue(events, catalogue), config.processing.session_gap_minutes)
    undo = resolve_rules(config.processing.undo, catalogue)
    sessions, steps = process_events(events, config.processing, split=split, undo=undo)
    users = split.group_by(USER).agg(
        pl.col(SESSION).n_unique().alias("sessions"), pl.col(SESSION).min().alias("first_session")
    )
    after = partial_statistics(sessions) if sessions.height else None
    return sessions, PartitionResult(partial_statistics(split), after, steps, users)


def scatter_file(
    job: tuple[int, str], source: SourceConfig, scratch: str, partitions: int
) -> tuple[int, int, LoadReport]:
    """Read one source file and append its events to every partition's folder: (file, events, report)."""
    index, path = job
    report = LoadReport()
    frame = read_source_file(Path(path), source, report).with_columns(pl.lit(index, dtype=pl.Int64).alias(FILE))
    bucket = (pl.col(USER).hash(seed=0) % partitions).alias("_bucket")
    for (number,), part in frame.with_columns(bucket).group_by("_bucket"):
        out = Path(scratch) / SCATTER_DIR / f"p{number:05d}" / f"f{index:06d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        part.drop("_bucket").write_parquet(out, compression=SCRATCH_COMPRESSION)
    return index, frame.height, report


def process_partition(
    number: int, offsets: dict[int, int], catalogue: pl.DataFrame, config: DataConfig, scratch: str
) -> PartitionResult | None:
    folder = Path(scratch) / SCATTER_DIR / f"p{number:05d}"
    files = sorted(folder.glob("f*.parquet")) if folder.is_dir() else []
    if not files:
        return None  # no user hashed here
    events = concat_events([pl.read_parquet(f) for f in files])
    # the event's place in the whole input, as reading every file in turn numbers it
    offset = pl.col(FILE).replace_strict(offsets, return_dtype=pl.Int64)
    events = events.with_columns((pl.col(ROW) + offset).alias(ORDER)).drop(ROW, FILE)
    sessions, result = process_frame(events, catalogue, config)
    sessions.write_parquet(_local_path(scratch, number), mkdir=True, compression=SCRATCH_COMPRESSION)
    return result


def number_sessions(number: int, first_ids: pl.DataFrame, scratch: str, out_dir: str) -> int:
    """Give one partition's sessions the ids the whole log, numbered in user order, gives them."""
    sessions = pl.read_parquet(_local_path(scratch, number))
    if sessions.height:
        # the frame is in user order: one shift per run of a user's events, looked up for the few runs
        new_user = (pl.col(USER) != pl.col(USER).shift(1)).fill_null(True)
        runs = sessions.filter(new_user).select(USER).join(first_ids, on=USER, how="left", maintain_order="left")
        shift = (runs["global_first"] - runs["first_session"]).rename("_shift")
        run = sessions.select(new_user.cum_sum().cast(pl.Int64) - 1).to_series()
        sessions = sessions.with_columns(pl.col(SESSION) + shift.gather(run))
        write_parquet_atomic(sessions, Path(out_dir) / f"part-{number:05d}.parquet")
    return sessions.height


def _local_path(scratch: str, number: int) -> Path:
    return Path(scratch) / LOCAL_DIR / f"p{number:05d}.parquet"


def global_first_ids(results: list[PartitionResult]) -> pl.DataFrame:
    """Per user: the local id of its first session and the id it gets when all users are numbered in order."""
    users = pl.concat([r.users for r in results]).sort(USER)
    return users.with_columns(
        (pl.col("sessions").cum_sum() - pl.col("sessions") + 1).cast(pl.Int64).alias("global_first")
    ).select(USER, "first_session", "global_first")


@dataclass
class Processed:
    load_report: LoadReport
    catalogue: pl.DataFrame
    catalogue_report: dict
    results: list[PartitionResult]
    steps: list[dict]


def process_partitioned(
    config: DataConfig, catalogue_for: Callable[[pl.Series], pl.DataFrame], partitions: int, engine, scratch: Path
) -> tuple[Processed, Callable[[Path], list[Path]]]:
    """Read and clean the log in `partitions` partitions; returns the reduction and a function that
    writes the sessions (to `events.parquet` for one partition, else `events/part-*.parquet`)."""
    if partitions == 1:
        events, load_report = read_events(config.source)
        counts = events["command"].value_counts()
        catalogue = catalogue_for(counts["command"])
        report = catalogue_report(counts, catalogue, config.catalogue)
        sessions, result = process_frame(events, catalogue, config)
        processed = Processed(load_report, catalogue, report, [result], result.steps)

        def write_one(out: Path) -> list[Path]:
            shutil.rmtree(out / EVENTS_DIR, ignore_errors=True)  # one layout at a time
            write_parquet_atomic(sessions, out / EVENTS_FILE)
            return [out / EVENTS_FILE]

        return processed, write_one

    shutil.rmtree(scratch, ignore_errors=True)
    paths = [str(p) for p in resolve_paths(config.source.path)]
    scattered = engine.map(
        partial(scatter_file, source=config.source, scratch=str(scratch), partitions=partitions),
        list(enumerate(paths)),
        "read and partition files",
    )
    load_report, offsets, running = LoadReport(), {}, 0
    for index, height, report in sorted(scattered, key=lambda item: item[0]):
        offsets[index] = running
        running += height
        load_report.merge(report)
    counts = (
        pl.scan_parquet(str(scratch / SCATTER_DIR / "p*" / "f*.parquet"))
        .group_by("command")
        .agg(pl.len().cast(pl.UInt32).alias("count"))
        .collect()
    )
    catalogue = catalogue_for(counts["command"])
    report = catalogue_report(counts, catalogue, config.catalogue)
    results = engine.map(
        partial(process_partition, offsets=offsets, catalogue=catalogue, config=config, scratch=str(scratch)),
        list(range(partitions)),
        "clean partitions",
    )
    numbers = [n for n, r in enumerate(results) if r is not None]
    results = [r for r in results if r is not None]
    processed = Processed(load_report, catalogue, report, results, combine_step_reports([r.steps for r in results]))

    def write_shards(out: Path) -> list[Path]:
        shards = out / EVENTS_DIR
        shutil.rmtree(shards, ignore_errors=True)
        (out / EVENTS_FILE).unlink(missing_ok=True)  # one layout at a time
        first_ids = global_first_ids(results)
        engine.map(
            partial(number_sessions, first_ids=first_ids, scratch=str(scratch), out_dir=str(shards)),
            numbers,
            "number sessions",
        )
        return sorted(shards.glob("part-*.parquet"))

    return processed, write_shards


def combined_statistics(results: list[PartitionResult], which: str) -> dict:
    partials = [getattr(r, which) for r in results if getattr(r, which) is not None]
    return combine_statistics(partials)


# ---------------------------------------------------------------- preprocess


def shard_keys(shard: str, config: SplitConfig) -> pl.DataFrame:
    return split_keys(pl.read_parquet(shard), config)


def shard_statistics(shard: str, assignment, catalogue: pl.DataFrame, config: DataConfig) -> tuple[dict, FitStatistics]:
    """The split counts of one shard (before held-out commands leave train) and its fit statistics."""
    parts = apply_split(pl.read_parquet(shard), assignment, config.split)
    counts = part_counts(parts)
    kept = _without_holdout(parts["train"], config)
    counts["holdout_events_removed_from_train"] = parts["train"].height - kept.height
    return counts, Workflow.statistics(kept, catalogue, config.features)


def shard_transform(shard: str, assignment, workflow: Workflow, config: DataConfig, out_dir: str) -> dict:
    """Transform every split of one shard into `SPLIT/part-N.parquet`; the transform reports."""
    parts = apply_split(pl.read_parquet(shard), assignment, config.split)
    parts["train"] = _without_holdout(parts["train"], config)
    reports = {}
    for split in SPLITS:
        sequences, reports[split] = workflow.transform(parts[split])
        if split == "train" and config.features.chunking is not None:
            sequences, reports[split]["chunking"] = chunk_sequences(
                sequences, config.features.chunking, config.split.seed
            )
        write_parquet_atomic(sequences, Path(out_dir) / split / Path(shard).name)
    return reports


def _without_holdout(train: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    if not config.features.holdout_commands:
        return train
    return train.filter(~pl.col("command").is_in(list(config.features.holdout_commands)))


def combine_transform_reports(reports: list[dict]) -> dict:
    combined = {}
    for split in SPLITS:
        parts = [r[split] for r in reports]
        oov: dict[str, int] = {}
        for part in parts:
            for column, count in part["oov_events"].items():
                oov[column] = oov.get(column, 0) + count
        combined[split] = {
            "events": sum(p["events"] for p in parts),
            "sessions": sum(p["sessions"] for p in parts),
            "oov_events": oov,
        }
        if "chunking" in parts[0]:
            combined[split]["chunking"] = {k: sum(p["chunking"][k] for p in parts) for k in ("sessions", "chunks")}
    return combined

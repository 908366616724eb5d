"""Process + preprocess at scale: the VS logs (CSV.gz) and synthetic logs of 10M and 100M events
(Parquet shards from `cmdrec sample --events N`), in memory (one partition), streamed in partitions
and on a 2-worker Dask LocalCluster; writes benchmarks/results/data_scale.json.

Each case runs in its own process; its peak memory is the resident memory of the whole process tree
(Dask's workers included), sampled every 50 ms. Outputs of the streamed and Dask runs are checked
against the in-memory run (or, where that does not fit in memory, Dask against streamed, shard by
shard).

python benchmarks/data_scale.py [--sizes 10000000 100000000] [--skip-vs] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import psutil
from peak_memory import run_with_peak_memory
from vs_data import VS_LOGS, have_vs_logs

from cmdrec.data.files import table_parts
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["user_id", "timestamp", "event_index"]

RUN_CASE = """
import json, sys, time
from cmdrec.config import load_data_config
from cmdrec.data.pipeline import preprocess, process_logs
def main():
    config = load_data_config(sys.argv[1], json.loads(sys.argv[2]))
    started = time.perf_counter()
    processed = process_logs(config)
    preprocessed = preprocess(config)
    print(json.dumps({"seconds": time.perf_counter() - started, "process_seconds": processed["seconds"],
        "preprocess_seconds": preprocessed["seconds"], "events": processed["before"]["events"],
        "partitions": processed["partitions"]["count"], "engine": processed["partitions"]["engine"],
        "sessions": processed["after"]["sessions"]}))
if __name__ == "__main__":
    main()
"""


def measure(config: str, overrides: list[str]) -> dict:
    """Run one case in a fresh process; its result and the peak resident memory of its process tree."""
    out, peak = run_with_peak_memory([sys.executable, "-c", RUN_CASE, config, json.dumps(overrides)])
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_memory_gb"] = peak
    result["events_per_second"] = round(result["events"] / result["seconds"])
    result["seconds"] = round(result["seconds"], 2)
    return result


def same_outputs(a: Path, b: Path) -> dict:
    """Whole-table comparison (fits in memory at the sizes it is used for): sessions and every split."""
    checks = {}
    events = [pl.read_parquet(table_parts(d / "processed", "events")).sort(ORDER) for d in (a, b)]
    checks["events"] = events[0].equals(events[1])
    for split in ("train", "valid", "test"):
        parts = [pl.read_parquet(table_parts(d / "preprocessed", split)).sort("session_id") for d in (a, b)]
        checks[split] = parts[0].equals(parts[1])
    return checks


def same_shards(a: Path, b: Path) -> dict:
    """Shard-by-shard comparison of two runs with the same partitions (bounded memory)."""
    checks = {}
    for directory, name in (("processed", "events"), *(("preprocessed", s) for s in ("train", "valid", "test"))):
        left, right = table_parts(a / directory, name), table_parts(b / directory, name)
        checks[name] = len(left) == len(right) and all(
            pl.read_parquet(x).equals(pl.read_parquet(y)) for x, y in zip(left, right, strict=True)
        )
    return checks


def case(label, config, data_overrides, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    overrides = [*data_overrides, f"processed_dir={out}/processed", f"preprocessed_dir={out}/preprocessed", *extra]
    print(f"  {label} ...", flush=True)
    result = measure(config, overrides)
    print(
        f"  {label}: {result['seconds']:.1f} s, {result['events_per_second']:,} events/s, "
        f"{result['peak_memory_gb']:.2f} GB, {result['partitions']} partition(s)",
        flush=True,
    )
    return {"case": label, "settings": extra, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000_000, 100_000_000])
    parser.add_argument("--skip-vs", action="store_true")
    parser.add_argument("--scratch", default="/tmp/cmdrec-data-scale")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/data_scale.json"))
    args = parser.parse_args()
    scratch = Path(args.scratch)
    dask = ["processing.engine=dask", "processing.dask_workers=2"]
    datasets = []

    if not args.skip_vs and have_vs_logs():
        print("VS logs (CSV.gz)")
        data = [f"source.path={VS_LOGS}/BlazeData_Dev_*.csv.gz", f"catalogue.path={VS_LOGS}/MessageList.csv"]
        config = str(ROOT / "configs/data/vs.yaml")
        runs = [
            case("in memory (default: one partition)", config, data, scratch / "vs-memory", []),
            case("streamed, 4 partitions", config, data, scratch / "vs-stream", ["processing.partitions=4"]),
            case("dask, 4 partitions", config, data, scratch / "vs-dask", ["processing.partitions=4", *dask]),
        ]
        runs[1]["equal_to_in_memory"] = same_outputs(scratch / "vs-memory", scratch / "vs-stream")
        runs[2]["equal_to_in_memory"] = same_outputs(scratch / "vs-memory", scratch / "vs-dask")
        datasets.append({"dataset": "VS interaction logs, CSV.gz", "events": runs[0]["events"], "runs": runs})

    for size in args.sizes:
        source = scratch / f"synthetic-{size}"
        if not (source / "catalogue.csv").is_file():
            print(f"writing {size:,} synthetic events", flush=True)
            subprocess.run(
                [sys.executable, "-m", "cmdrec", "sample", "--events", str(size), "--out", str(source)], check=True
            )
        print(f"synthetic, {size:,} events (Parquet shards)")
        config = str(ROOT / "configs/data/sample.yaml")
        data = [
            f"source.path={source}/events",
            f"catalogue.path={source}/catalogue.csv",
            "source.timestamp_format=null",
        ]
        runs = []
        fits = size <= 20_000_000  # in memory: about 2.7 GB per 10M events, measured
        if fits:
            runs.append(
                case("in memory (one partition)", config, data, scratch / f"{size}-memory", ["processing.partitions=1"])
            )
        streamed = case(
            "streamed (default: partitions by memory_budget_gb=4)", config, data, scratch / f"{size}-stream", []
        )
        if streamed["partitions"] == 1:  # small enough for the default to hold it: stream it anyway
            streamed = case(
                "streamed, memory_budget_gb=1",
                config,
                data,
                scratch / f"{size}-stream",
                ["processing.memory_budget_gb=1"],
            )
        partitions = f"processing.partitions={streamed['partitions']}"
        runs.append(streamed)
        runs.append(
            case(
                f"dask, {streamed['partitions']} partitions",
                config,
                data,
                scratch / f"{size}-dask",
                [partitions, *dask],
            )
        )
        if fits:
            streamed["equal_to_in_memory"] = same_outputs(scratch / f"{size}-memory", scratch / f"{size}-stream")
            runs[-1]["equal_to_in_memory"] = same_outputs(scratch / f"{size}-memory", scratch / f"{size}-dask")
        else:
            runs[-1]["equal_to_streamed"] = same_shards(scratch / f"{size}-stream", scratch / f"{size}-dask")
        for name in (f"{size}-memory", f"{size}-stream", f"{size}-dask"):
            shutil.rmtree(scratch / name, ignore_errors=True)
        datasets.append({"dataset": f"synthetic, {size:,} events, Parquet", "events": size, "runs": runs})

    by_size = {d["events"]: d for d in datasets if d["dataset"].startswith("synthetic")}
    growth = None
    if 10_000_000 in by_size and 100_000_000 in by_size:

        def default(d):
            return next(r for r in d["runs"] if r["case"].startswith("streamed"))

        growth = round(default(by_size[100_000_000])["seconds"] / default(by_size[10_000_000])["seconds"], 2)
    result = {
        "benchmark": "process + preprocess at scale: in memory, streamed in partitions of users, Dask",
        "command": "python benchmarks/data_scale.py " + " ".join(sys.argv[1:]),
        "datasets": datasets,
        "time_100m_over_10m_streamed": growth,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "processor": platform.machine(),
            "python": platform.python_version(),
            "polars": pl.__version__,
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training at scale on the CPU: one process against two data-parallel gloo processes on the VS logs
(sequences/s, peak memory of the process tree, metrics after the same epochs), and the training split
streamed shard by shard against held in memory on a sharded synthetic log (peak memory); writes
benchmarks/results/train_scale.json.

python benchmarks/train_scale.py [--data outputs/bench/vs-session/preprocessed] [--epochs 2] [--events 4000000]
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

import psutil
import yaml
from peak_memory import run_with_peak_memory

from cmdrec.config import load_run_config, to_dict
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def train_case(name: str, config_path: str, overrides: list[str], runs: Path, nproc: int = 1) -> dict:
    config = load_run_config(ROOT / config_path, [*overrides, f"name={name}", f"runs_dir={runs}"])
    path = runs / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config)))
    shutil.rmtree(runs / name, ignore_errors=True)
    argv = [
        sys.executable,
        "-m",
        "cmdrec",
        "train",
        "--config",
        str(path),
        *(["--nproc", str(nproc)] if nproc > 1 else []),
    ]
    print(f"  {name} ...", flush=True)
    _, peak = run_with_peak_memory(argv)
    result = json.loads((runs / name / "results.json").read_text())
    row = {
        "run": name,
        "processes": nproc,
        "sequences_per_second": result["sequences_per_second"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "steps": result["steps"],
        "valid_ndcg@10": round(result["valid"]["ndcg@10"], 4),
        "valid_loss": round(result["valid"]["loss"], 4),
        "test_ndcg@10": round(result["test"]["ndcg@10"], 4),
        "peak_memory_gb": peak,
    }
    print(f"  {name}: {row['sequences_per_second']:,} seq/s, {peak:.2f} GB, valid NDCG@10 {row['valid_ndcg@10']}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="outputs/bench/vs-session/preprocessed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--scratch", default="/tmp/cmdrec-train-scale")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/train_scale.json"))
    args = parser.parse_args()
    scratch = Path(args.scratch)
    runs = scratch / "runs"
    common = [f"training.epochs={args.epochs}", "training.early_stopping_patience=null", "model.dropout=0.0"]
    result: dict = {"command": "python benchmarks/train_scale.py " + " ".join(sys.argv[1:])}

    if (Path(args.data) / "schema.json").is_file():
        print("VS logs: one process against two data-parallel processes (gloo), the same global batch")
        vs = [f"data_dir={args.data}", *common]
        one = train_case("gpt2-1proc", "configs/baselines/gpt2.yaml", [*vs, "training.num_threads=2"], runs)
        two = train_case("gpt2-2proc", "configs/baselines/gpt2.yaml", [*vs, "training.num_threads=1"], runs, nproc=2)
        result["data_parallel_vs"] = {
            "config": "configs/baselines/gpt2.yaml",
            "rows": [one, two],
            "valid_ndcg@10_difference": round(abs(one["valid_ndcg@10"] - two["valid_ndcg@10"]), 4),
            "valid_loss_relative_difference": round(abs(one["valid_loss"] - two["valid_loss"]) / one["valid_loss"], 4),
        }

    print(f"synthetic log of {args.events:,} events, processed in 8 partitions: streamed against in memory")
    source = scratch / "synthetic"
    if not (source / "catalogue.csv").is_file():
        subprocess.run([sys.executable, "-m", "cmdrec", "sample", "--events", str(args.events), "--out", str(source)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    data = scratch / "synthetic-prepared"
    data_overrides = [
        f"source.path={source}/events",
        f"catalogue.path={source}/catalogue.csv",
        "source.timestamp_format=null",
        f"processed_dir={data}/processed",
        f"preprocessed_dir={data}/preprocessed",
        "processing.partitions=8",
    ]
    if not (data / "preprocessed" / "schema.json").is_file():
        for step in ("process", "preprocess"):
            subprocess.run([sys.executable, "-m", "cmdrec", step, "--config", str(ROOT / "configs/data/sample.yaml"),
                            *data_overrides], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    small = [f"data_dir={data}/preprocessed", "training.epochs=1", "training.early_stopping_patience=null",
             "model.d_model=32", "model.layers.n_layers=1", "training.num_threads=2"]  # fmt: skip
    memory = train_case("synthetic-in-memory", "configs/baselines/gpt2.yaml", small, runs)
    streamed = train_case(
        "synthetic-streamed", "configs/baselines/gpt2.yaml", [*small, "training.streaming=true"], runs
    )
    result["streaming_synthetic"] = {"events": args.events, "shards": 8, "rows": [memory, streamed]}
    result["not_measured"] = [
        "FSDP (training.fsdp) is not built yet",
        "GPU rows: no GPU was lent to this session",
    ]
    result["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

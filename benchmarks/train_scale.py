"""Training at scale on the CPU: one process against two data-parallel gloo processes on the VS logs
(sequences/s, peak memory of the process tree, metrics after the same epochs), the training split
streamed shard by shard against held in memory on a sharded synthetic log (peak memory), and the
memory per rank of a random Llama of about 300M parameters trained by two gloo processes with DDP
and with FSDP (gathered and sharded checkpoints); writes benchmarks/results/train_scale.json.

python benchmarks/train_scale.py [--data outputs/bench/vs-session/preprocessed] [--epochs 2] [--events 4000000]
    [--sections vs streaming fsdp]    (the sections not named keep their figures in the results file)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml
from peak_memory import run_with_peaks

from cmdrec.config import load_run_config, to_dict
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("vs", "streaming", "fsdp")


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
    _, peak, largest = run_with_peaks(argv)
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
        "peak_process_memory_gb": largest,  # the largest single process: a rank when there are several
        "parameters": result["parameters"],
    }
    print(f"  {name}: {row['sequences_per_second']:,} seq/s, {peak:.2f} GB, valid NDCG@10 {row['valid_ndcg@10']}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="outputs/bench/vs-session/preprocessed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--scratch", default="/tmp/cmdrec-train-scale")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/train_scale.json"))
    args = parser.parse_args()
    scratch = Path(args.scratch)
    runs = scratch / "runs"
    common = [f"training.epochs={args.epochs}", "training.early_stopping_patience=null", "model.dropout=0.0"]
    out = Path(args.out)
    result: dict = json.loads(out.read_text()) if out.is_file() else {}  # the sections not run keep theirs
    command = shlex.join(["python", "benchmarks/train_scale.py", *sys.argv[1:]])

    def measured(section: dict) -> dict:
        return {**section, "command": command, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    if "fsdp" in args.sections:
        result["fsdp_memory"] = measured(fsdp_memory(scratch, runs))
    if "vs" in args.sections and not (Path(args.data) / "schema.json").is_file():
        print(f"no prepared VS data at {args.data}: the data-parallel section is not measured")
        result.pop("data_parallel_vs", None)
    elif "vs" in args.sections:
        print("VS logs: one process against two data-parallel processes (gloo), the same global batch")
        vs = [f"data_dir={args.data}", *common]
        one = train_case("gpt2-1proc", "configs/baselines/gpt2.yaml", [*vs, "training.num_threads=2"], runs)
        two = train_case("gpt2-2proc", "configs/baselines/gpt2.yaml", [*vs, "training.num_threads=1"], runs, nproc=2)
        result["data_parallel_vs"] = measured(
            {
                "config": "configs/baselines/gpt2.yaml",
                "rows": [one, two],
                "valid_ndcg@10_difference": round(abs(one["valid_ndcg@10"] - two["valid_ndcg@10"]), 4),
                "valid_loss_relative_difference": round(
                    abs(one["valid_loss"] - two["valid_loss"]) / one["valid_loss"], 4
                ),
            }
        )

    if "streaming" in args.sections:
        result["streaming_synthetic"] = measured(streaming(scratch, runs, args.events))
    result["not_measured"] = ["GPU rows: no GPU was lent to this session"]
    result["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }
    for stale in ("command", "measured_at"):  # each section records its own
        result.pop(stale, None)
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


def synthetic_data(source: Path, data: Path, events: int, partitions: int | None) -> Path:
    """A synthetic log of `events` events, processed and preprocessed; returns the preprocessed directory."""
    if not (source / "catalogue.csv").is_file():
        subprocess.run([sys.executable, "-m", "cmdrec", "sample", "--events", str(events), "--out", str(source)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    data_overrides = [
        f"source.path={source}/events",
        f"catalogue.path={source}/catalogue.csv",
        "source.timestamp_format=null",
        f"processed_dir={data}/processed",
        f"preprocessed_dir={data}/preprocessed",
        *([f"processing.partitions={partitions}"] if partitions else []),
    ]
    if not (data / "preprocessed" / "schema.json").is_file():
        for step in ("process", "preprocess"):
            subprocess.run([sys.executable, "-m", "cmdrec", step, "--config", str(ROOT / "configs/data/sample.yaml"),
                            *data_overrides], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return data / "preprocessed"


def streaming(scratch: Path, runs: Path, events: int) -> dict:
    print(f"synthetic log of {events:,} events, processed in 8 partitions: streamed against in memory")
    data = synthetic_data(scratch / "synthetic", scratch / "synthetic-prepared", events, 8)
    small = [f"data_dir={data}", "training.epochs=1", "training.early_stopping_patience=null",
             "model.d_model=32", "model.layers.n_layers=1", "training.num_threads=2"]  # fmt: skip
    memory = train_case("synthetic-in-memory", "configs/baselines/gpt2.yaml", small, runs)
    streamed = train_case(
        "synthetic-streamed", "configs/baselines/gpt2.yaml", [*small, "training.streaming=true"], runs
    )
    return {"events": events, "shards": 8, "rows": [memory, streamed]}


# a random Llama of about 300M parameters: where sharding shows (a tiny model is all library overhead)
LLAMA_300M = ["model.d_model=1024", "model.layers.n_layers=24", "model.layers.n_heads=16",
              "model.layers.ffn_dim=2816", "model.max_length=31", "model.dropout=0.0"]  # fmt: skip


def fsdp_memory(scratch: Path, runs: Path) -> dict:
    print("a random Llama of about 300M parameters on two gloo processes: DDP against FSDP")
    data = synthetic_data(scratch / "fsdp-sample", scratch / "fsdp-sample-prepared", 2_000, None)
    common = [f"data_dir={data}", *LLAMA_300M, "training.epochs=1", "training.batch_size=8",
              "training.warmup_steps=1", "training.early_stopping_patience=null", "training.num_threads=1"]  # fmt: skip
    fsdp = ["training.fsdp.enabled=true", "training.fsdp.wrap_policy=transformer_block"]
    rows = [
        train_case("llama300m-ddp", "configs/baselines/llama.yaml", common, runs, nproc=2),
        train_case("llama300m-fsdp", "configs/baselines/llama.yaml", [*common, *fsdp], runs, nproc=2),
        train_case(
            "llama300m-fsdp-sharded-checkpoints",
            "configs/baselines/llama.yaml",
            [*common, *fsdp, "training.fsdp.sharded_checkpoints=true"],
            runs,
            nproc=2,
        ),
    ]
    for row in rows:
        checkpoint = max((runs / row["run"] / "checkpoints").iterdir())
        row["checkpoint_gb"] = round(sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) / 2**30, 3)
        shutil.rmtree(runs / row["run"])  # gigabytes of checkpoints
    return {"shape": LLAMA_300M, "processes": 2, "rows": rows}


if __name__ == "__main__":
    raise SystemExit(main())

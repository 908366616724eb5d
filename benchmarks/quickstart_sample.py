"""What the quickstart's first impression rests on: does the bundled sample lack the longer-range
structure real logs have, or was the quickstart's GPT-2 under-trained?

Structure: test NDCG@10 (last command of each test session) of count models reading one command
back (a first-order Markov chain) and two (backing off to one, then to popularity), on the
sample and, when present, on the VS logs. Training: the Markov chain and the quickstart's GPT-2
with its old settings (8 epochs at learning rate 1e-3) and its current ones, on three seeds.

    python benchmarks/quickstart_sample.py

Writes benchmarks/results/quickstart_sample.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl

from cmdrec.cli.data import QUICKSTART_GPT2
from cmdrec.config import ModelConfig, RunConfig, TrainingConfig
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import sample_config, write_sample
from cmdrec.experiments.suite import machine
from cmdrec.io import write_json_atomic
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs/bench/quickstart"
VS_PREPARED = ROOT / "outputs/bench/vs-session/preprocessed"  # the full-model benchmark's data (full_vs.py)
MODELS = {  # label: (model, training)
    "markov": (ModelConfig("markov"), TrainingConfig()),
    "old quickstart (8 epochs, learning rate 1e-3)": (
        ModelConfig(),
        TrainingConfig(epochs=8, warmup_steps=10, early_stopping_patience=None),
    ),
    "quickstart": (ModelConfig(), QUICKSTART_GPT2),
}


def context_orders(data_dir: Path) -> dict:
    """NDCG@10 of the next command from counts of one and of two commands back."""
    sessions = {s: pl.read_parquet(data_dir / f"{s}.parquet", columns=["command"])["command"].to_list()
                for s in ("train", "test")}  # fmt: skip
    single, one_back, two_back = Counter(), defaultdict(Counter), defaultdict(Counter)
    for session in sessions["train"]:
        for i, command in enumerate(session):
            single[command] += 1
            if i >= 1:
                one_back[session[i - 1]][command] += 1
            if i >= 2:
                two_back[session[i - 2], session[i - 1]][command] += 1
    popular = [c for c, _ in single.most_common(10)]

    def top(counts: Counter | None, fallback: list[int]) -> list[int]:
        ranked = [c for c, _ in counts.most_common(10)] if counts else []
        return (ranked + [c for c in fallback if c not in ranked])[:10]

    gains = {"one command back": [], "two commands back": []}
    for session in sessions["test"]:
        if len(session) < 3 or session[-1] < FIRST_VALUE_ID:
            continue
        first = top(one_back.get(session[-2]), popular)
        second = top(two_back.get((session[-3], session[-2])), first)
        for name, ranked in (("one command back", first), ("two commands back", second)):
            rank = ranked.index(session[-1]) if session[-1] in ranked else None
            gains[name].append(1 / math.log2(rank + 2) if rank is not None else 0.0)
    result = {name: round(statistics.fmean(values), 4) for name, values in gains.items()}
    result["test_sessions"] = len(gains["one command back"])
    result["relative_gain_of_two"] = round(result["two commands back"] / result["one command back"] - 1, 4)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/quickstart_sample.json"))
    args = parser.parse_args()
    write_sample(WORK / "raw", users=60, seed=7)  # as the quickstart writes it
    config = sample_config(str(WORK / "raw"), str(WORK))
    process_logs(config)
    preprocess(config)
    data = Path(config.preprocessed_dir)
    structure = {"sample": context_orders(data)}
    if (VS_PREPARED / "schema.json").is_file():
        structure["vs"] = context_orders(VS_PREPARED)
    runs = WORK / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    rows: dict = {}
    for seed in args.seeds:
        for index, (label, (model, training)) in enumerate(MODELS.items()):
            run = RunConfig(name=f"model{index}-s{seed}", data_dir=str(data), runs_dir=str(runs), model=model,
                            training=dataclasses.replace(training, seed=seed))  # fmt: skip
            result = train(run, show_progress=False)
            rows.setdefault(label, []).append(
                {"seed": seed, "ndcg@10": result["test"]["ndcg@10"], "train_seconds": result["train_seconds"]}
            )
    summary = {
        label: {
            "mean_ndcg@10": round(statistics.fmean(r["ndcg@10"] for r in entries), 4),
            "std_ndcg@10": round(statistics.stdev(r["ndcg@10"] for r in entries), 4) if len(entries) > 1 else 0.0,
            "mean_train_seconds": round(statistics.fmean(r["train_seconds"] for r in entries), 1),
            "seeds": entries,
        }
        for label, entries in rows.items()
    }
    write_json_atomic(
        args.out,
        {
            "command": shlex.join(["python", "benchmarks/quickstart_sample.py", *sys.argv[1:]]),
            "context_structure": structure,
            "models": summary,
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    for label, entry in summary.items():
        print(f"{label}: test NDCG@10 {entry['mean_ndcg@10']:.4f} ± {entry['std_ndcg@10']:.4f}")
    print(f"structure: {structure}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

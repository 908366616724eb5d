"""Recommending commands that training never saw: some commands are held out of training (their
events removed from the training sessions; they keep their catalogue ids), then an id-scored and a
text-scored output head are trained on the same data and compared on the test positions whose
target is a held-out command (the `unseen` bucket) and overall, on every position of the test sessions.

The held-out commands are chosen by rule, not by hand: those at the given ranks of event frequency
in the processed log (mid-frequency by default, so the test has positions for them).

    python benchmarks/new_commands.py [--dataset sample|vs] [--ranks 10 15 20 25 30] [--epochs 5]

Writes benchmarks/results/new_commands_<dataset>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import sys
import time
from pathlib import Path

import polars as pl
from vs_data import VS_LOGS, vs_config

from cmdrec.config import TextConfig, load_run_config
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import sample_config, write_sample
from cmdrec.experiments.suite import METRIC_ORDER, machine
from cmdrec.io import write_json_atomic
from cmdrec.text.pipeline import embed_commands
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
HEADS = {"id-head": {}, "text-head": {"text_embeddings": True, "text_output": True}}


def data_config(dataset: str, vs_dir: Path, out: str):
    if dataset == "sample":
        write_sample(f"{out}/raw")
        return sample_config(f"{out}/raw", out)
    return vs_config(vs_dir, f"{out}/processed", f"{out}/preprocessed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["sample", "vs"], default="sample")
    parser.add_argument("--vs-data", default=str(VS_LOGS))
    parser.add_argument(
        "--ranks",
        nargs="+",
        type=int,
        default=[10, 15, 20, 25, 30],
        help="frequency ranks (1 = most frequent) held out",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="run config overrides for both heads, e.g. training.num_threads=1")
    args = parser.parse_args()
    out = f"outputs/bench/new-commands-{args.dataset}"
    config = data_config(args.dataset, Path(args.vs_data), out)
    process_logs(config)
    frequency = pl.read_parquet(Path(config.processed_dir) / "events.parquet")["command"].value_counts(sort=True)
    held_out = tuple(frequency["command"][rank - 1] for rank in args.ranks)
    config = dataclasses.replace(
        config, features=dataclasses.replace(config.features, vocabulary="catalogue", holdout_commands=held_out)
    )
    split = preprocess(config)["split"]
    embed_commands(config.preprocessed_dir, TextConfig(cache_dir="outputs/cache/text"))
    results = {}
    for name, model in HEADS.items():
        overrides = [
            f"data_dir={config.preprocessed_dir}",
            f"runs_dir={out}/runs",
            f"name={name}",
            f"training.epochs={args.epochs}",
            "eval.positions=all",  # every test position whose target is held out, not only session ends
            *(f"model.{key}={str(value).lower()}" for key, value in model.items()),
            *args.overrides,
        ]
        run = load_run_config(ROOT / "configs/baselines/gpt2.yaml", overrides)
        # a run left by an earlier invocation may have held out other commands: always train afresh
        shutil.rmtree(Path(run.runs_dir) / run.name, ignore_errors=True)
        trained = train(run, show_progress=False)
        test = evaluate_run(Path(run.runs_dir) / run.name)
        results[name] = {
            **{m: test[m] for m in METRIC_ORDER},
            "unseen": {m: test.get(f"unseen/{m}", 0.0) for m in ("ndcg@10", "recall@10", "mrr@10")},
            "unseen_positions": test.get("unseen/positions", 0),
            "train_seconds": trained["train_seconds"],
        }
        print(
            f"{name}: NDCG@10 {test['ndcg@10']:.4f}, held-out commands NDCG@10 "
            f"{results[name]['unseen']['ndcg@10']:.4f} "
            f"Recall@10 {results[name]['unseen']['recall@10']:.4f} over {results[name]['unseen_positions']} positions",
            flush=True,
        )
    path = ROOT / f"benchmarks/results/new_commands_{args.dataset}.json"
    write_json_atomic(
        path,
        {
            "command": shlex.join(["python", "benchmarks/new_commands.py", *sys.argv[1:]]),
            "dataset": args.dataset,
            "held_out_commands": list(held_out),
            "held_out_ranks": args.ranks,
            "holdout_events_removed_from_train": split["holdout_events_removed_from_train"],
            "epochs": args.epochs,
            "base_config": "configs/baselines/gpt2.yaml",
            "models": results,
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

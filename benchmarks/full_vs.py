"""The full model against the baselines on the VS logs (same split and seeds as
benchmarks/baselines_vs.py), with the ablation and the frequency buckets. Writes
benchmarks/results/full_vs.json and the report (compare.md, PNGs) in benchmarks/results/full_vs/.

    python benchmarks/full_vs.py [--data-overrides KEY=VALUE ...] [--epochs 10] [--seeds 1 2 3] [--ablation-seeds 1]
                                 [--ablations "history copy"]
                                 [--jobs N] [overrides applied to every run config]

Finished runs under --out are re-read, so a second call with other --ablations adds those rows only.

Target (issue 4): the full model's NDCG@10 beats the best baseline by >= 5% relative, averaged over
the seeds, and the tail bucket gains more than the head. Whatever the outcome, it is written as measured.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from vs_data import VS_LOGS, have_vs_logs, vs_config

from cmdrec.config import TextConfig, load_run_config
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.experiments.compare import run_compare
from cmdrec.io import write_json_atomic
from cmdrec.text.pipeline import embed_commands

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VS_LOGS))
    parser.add_argument(
        "--preprocessed",
        default=None,
        help="use this preprocessed dataset as it is (with its text embeddings, made if missing) instead of "
        "preparing the VS logs",
    )
    parser.add_argument(
        "--data-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="data config overrides for preparing the VS logs, e.g. the developer as an event attribute",
    )
    parser.add_argument("--full", default=str(ROOT / "configs/full/mixtral_full.yaml"))
    parser.add_argument("--baselines", nargs="+", default=None, help="default: every config in configs/baselines")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument(
        "--ablation-seeds",
        nargs="*",
        type=int,
        default=None,
        help="default: --seeds; given with no seeds: no ablation rows",
    )
    parser.add_argument("--ablations", nargs="+", default=None, help="modules removed in turn (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time, each in its own process")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/full_vs"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    data_dir = args.preprocessed
    if data_dir is None:
        if not have_vs_logs(args.data):
            print(f"VS logs not found at {args.data}; nothing measured", file=sys.stderr)
            return 1
        data_config = vs_config(
            args.data, "outputs/bench/vs/processed", "outputs/bench/vs-session/preprocessed", args.data_overrides
        )
        process_logs(data_config)
        preprocess(data_config)
        data_dir = data_config.preprocessed_dir
        embed_commands(data_dir, TextConfig(cache_dir="outputs/cache/text"))
    overrides = [f"data_dir={data_dir}", f"training.epochs={args.epochs}", *args.overrides]
    baselines = args.baselines or sorted(str(p) for p in (ROOT / "configs/baselines").glob("*.yaml"))
    started = time.perf_counter()
    report = run_compare(
        load_run_config(args.full, overrides),
        [load_run_config(p, overrides) for p in baselines],
        args.seeds,
        args.out,
        ablation_seeds=args.ablation_seeds,
        ablations=args.ablations,
        jobs=args.jobs,
    )
    models = {
        name: {
            "role": entry["role"],
            "seeds": entry["seeds"],
            "mean": entry["mean"],
            "std": entry["std"],
            "buckets_mean": entry["buckets_mean"],
        }
        for name, entry in report["models"].items()
    }
    summary = report["summary"]
    write_json_atomic(
        f"{args.out}.json",
        {
            "command": shlex.join(["python", "benchmarks/full_vs.py", *sys.argv[1:]]),
            "data_dir": str(data_dir),
            "epochs": args.epochs,
            "seeds": args.seeds,
            "ablation_seeds": report["ablation_seeds"],
            "summary": summary,
            "meets_target": bool(
                summary.get("relative_ndcg@10_gain", -1) >= 0.05
                and summary.get("bucket_gain", {}).get("tail", 0) > summary.get("bucket_gain", {}).get("head", 0)
            ),
            "models": models,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": report["machine"],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(f"wrote {args.out}.json and {args.out}/compare.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

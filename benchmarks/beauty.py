"""SASRec-style GPT-2 with full cross-entropy on Amazon Beauty, the published protocol:
leave-one-out, all items ranked, items the user has seen filtered. Target (Klenitskiy & Vasilev,
RecSys 2023): NDCG@10 >= 0.0327, Recall@10 >= 0.0533. Writes benchmarks/results/beauty.json.

    python benchmarks/beauty.py [--config configs/beauty/sasrec_reference.yaml] [--epochs 200]
                                [config overrides such as training.device=cuda]

The run (runs/bench/<name>) resumes if interrupted, and a finished one is only re-read: give a
variant its own `name=` override to measure it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from cmdrec.config import load_data_config, load_run_config
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.experiments.suite import METRIC_ORDER, machine
from cmdrec.io import write_json_atomic
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"ndcg@10": 0.0327, "recall@10": 0.0533}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/amazon-beauty/beauty.txt.gz"))
    parser.add_argument(
        "--config", default=str(ROOT / "configs/beauty/sasrec.yaml"), help="run config (default: the GPT-2 SASRec)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/beauty.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if not Path(args.data).is_file():
        print(f"Beauty data not found at {args.data}; nothing measured", file=sys.stderr)
        return 1
    data_config = load_data_config(
        ROOT / "configs/data/beauty.yaml",
        [
            f"source.path={args.data}",
            "processed_dir=outputs/bench/beauty/processed",
            "preprocessed_dir=outputs/bench/beauty/preprocessed",
        ],
    )
    process_logs(data_config)
    split = preprocess(data_config)["split"]
    overrides = ["data_dir=outputs/bench/beauty/preprocessed", "runs_dir=runs/bench", *args.overrides]
    if args.epochs:
        overrides.append(f"training.epochs={args.epochs}")
    config = load_run_config(args.config, overrides)
    started = time.perf_counter()
    result = train(config)
    test = result["test"]
    write_json_atomic(
        args.out,
        {
            "command": shlex.join(["python", "benchmarks/beauty.py", *sys.argv[1:]]),
            "protocol": "leave-one-out, full ranking over all items, seen items filtered",
            "split": {"method": "leave_one_out", "users": split["test"]["users"]},
            "seed": config.training.seed,
            "published_sasrec_full_ce": PUBLISHED,
            "reaches_published": all(test[k] >= v for k, v in PUBLISHED.items()),
            "models": {
                config.name: {
                    **{m: test[m] for m in METRIC_ORDER},
                    "valid": {m: result["valid"][m] for m in METRIC_ORDER},
                    **{
                        k: result[k]
                        for k in (
                            "epochs_run",
                            "train_seconds",
                            "seconds_per_epoch",
                            "sequences_per_second",
                            "parameters",
                            "device",
                        )
                    },
                    "positions_evaluated": test["positions_evaluated"],
                    "wall_seconds": round(time.perf_counter() - started, 1),
                }
            },
            "machine": machine(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(
        f"NDCG@10 {test['ndcg@10']:.4f} (published {PUBLISHED['ndcg@10']}), Recall@10 {test['recall@10']:.4f} "
        f"(published {PUBLISHED['recall@10']}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

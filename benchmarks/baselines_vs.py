"""The baseline suite on the VS interaction logs (noise preset), two splits: random by session
(85/15 with 5% of train sessions held for validation, seed 42) and by developer (held-out users).
Writes benchmarks/results/baselines_vs.json and .md.

    python benchmarks/baselines_vs.py [--epochs 15] [--splits session user]

Runs live in runs/bench/vs-<split>/ and resume if interrupted; re-running finished runs only re-evaluates.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from vs_data import VS_LOGS, have_vs_logs, vs_config

from cmdrec.config import load_run_config
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.experiments.suite import machine, markdown_table, run_suite
from cmdrec.io import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"session": "random_session", "user": "user"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VS_LOGS))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--models", nargs="+", default=None, help="config stems in configs/baselines (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/baselines_vs"))
    args = parser.parse_args()
    data = Path(args.data)
    if not have_vs_logs(data):
        print(f"VS logs not found at {data}; nothing measured", file=sys.stderr)
        return 1
    paths = sorted((ROOT / "configs/baselines").glob("*.yaml"))
    if args.models:
        paths = [p for p in paths if p.stem in args.models]
    # results of other splits, measured by earlier invocations, are kept: each split records its own command
    out_json = Path(f"{args.out}.json")
    results = json.loads(out_json.read_text())["splits"] if out_json.is_file() else {}
    command = shlex.join(["python", "benchmarks/baselines_vs.py", *sys.argv[1:]])
    for split in args.splits:
        preprocessed = f"outputs/bench/vs-{split}/preprocessed"
        data_config = vs_config(data, "outputs/bench/vs/processed", preprocessed, [f"split.method={SPLITS[split]}"])
        if split == args.splits[0]:
            process_logs(data_config)
        split_report = preprocess(data_config)["split"]
        configs = [
            load_run_config(
                p, [f"data_dir={preprocessed}", f"runs_dir=runs/bench/vs-{split}", f"training.epochs={args.epochs}"]
            )
            for p in paths
        ]
        started = time.perf_counter()
        rows = run_suite(configs, f"runs/bench/vs-{split}/suite", f"VS logs, split by {split}", show_progress=False)
        results[split] = {
            "command": command,
            "epochs": args.epochs,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "split": {
                "method": SPLITS[split],
                "seed": data_config.split.seed,
                "valid_fraction": data_config.split.valid_fraction,
                "test_fraction": data_config.split.test_fraction,
                **{k: split_report[k] for k in ("train", "valid", "test")},
            },
            "wall_seconds": round(time.perf_counter() - started, 1),
            "models": {
                row["model"]: {
                    **row["test_last"],
                    "all_positions": row["test_all_positions"],
                    "valid": row["valid_last"],
                    **{
                        k: row[k]
                        for k in (
                            "backbone",
                            "masking",
                            "epochs_run",
                            "train_seconds",
                            "seconds_per_epoch",
                            "sequences_per_second",
                            "parameters",
                            "positions",
                        )
                    },
                }
                for row in rows
            },
        }
        results[split]["table"] = markdown_table(
            rows,
            f"VS logs, split by {split} ({SPLITS[split]}, seed {data_config.split.seed}, {args.epochs} epochs at most)",
        )
        # written after every split, so a long benchmark cut short still leaves what it measured
        write_json_atomic(out_json, {"machine": machine(), "splits": results})
        write_text_atomic(
            f"{args.out}.md", "\n".join(f"Produced by `{r['command']}`.\n\n{r['table']}" for r in results.values())
        )
        print(f"split {split}: wrote {out_json} and {args.out}.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweeps of the full model and the Llama baseline on the VS logs with equal budgets; writes
benchmarks/results/sweep_vs.json. The Optuna studies live in benchmarks/results/sweep_vs/ (committed),
so the sweep resumes on any machine: run the command again and it continues.

python benchmarks/sweep_vs.py --models llama full --trials 20 [--epochs 10]
    [--data outputs/bench/vs-session/preprocessed]

The data directory is the VS logs prepared as benchmarks/baselines_vs.py prepares its session split
(with `cmdrec embed` for the full model's text embeddings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cmdrec.artifacts.loading import RESULTS
from cmdrec.artifacts.runs import RunDir
from cmdrec.config import load_run_config
from cmdrec.experiments.sweep import Sweep
from cmdrec.io import write_json_atomic
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "llama": ("configs/baselines/llama.yaml", "configs/sweeps/llama_vs.yaml"),
    "full": ("configs/full/mixtral_full.yaml", "configs/sweeps/full_vs.yaml"),
}
STUDIES = ROOT / "benchmarks/results/sweep_vs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default="outputs/bench/vs-session/preprocessed")
    parser.add_argument("--runs-dir", default="runs/bench/sweep_vs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/sweep_vs.json"))
    args = parser.parse_args()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {"models": {}}
    STUDIES.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        config_path, space = MODELS[model]
        overrides = [
            f"data_dir={args.data}",
            f"runs_dir={args.runs_dir}",
            f"training.epochs={args.epochs}",
            "training.early_stopping_patience=3",
            f"training.num_threads={args.threads}",
        ]
        # the shipped settings at the same budget: how far the defaults are from the best found
        default = load_run_config(ROOT / config_path, [*overrides, f"name={model}-default"])
        run = RunDir(default.runs_dir, default.name)
        if run.status().get("state") == "finished" and (run.path / RESULTS).is_file():
            default_result = json.loads((run.path / RESULTS).read_text())
        else:
            default_result = train(default, show_progress=False)
        sweep = Sweep(
            str(ROOT / config_path),
            overrides,
            str(ROOT / space),
            f"{model}_vs",
            storage=f"sqlite:///{STUDIES / f'{model}_vs.db'}",
            pruner="median",
        )
        sweep.optimize(args.trials)
        summary = sweep.finish()
        monitor = summary["monitor"]
        report["models"][model] = {
            "config": config_path,
            "space": space,
            "budget": {"trials": args.trials, "epochs": args.epochs, "early_stopping_patience": 3},
            "trials": {
                state: sum(r["state"] == state for r in summary["trials"]) for state in ("complete", "pruned", "fail")
            },
            "default_valid": default_result["valid"][monitor],
            "default_test": default_result["test"][monitor],
            "best": summary["best"],
            "top_on_seeds": summary["top_on_seeds"],
            "monitor": monitor,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(out, report | {"command": "python benchmarks/sweep_vs.py", "data": args.data})
        print(
            f"{model}: default valid {monitor} {default_result['valid'][monitor]:.4f}, "
            f"best {summary['best']['mean']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

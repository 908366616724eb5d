"""Train and evaluate a suite of models on one dataset and write a results table (Markdown + JSON)."""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

from cmdrec.config import RunConfig, to_dict
from cmdrec.io import write_json_atomic, write_text_atomic
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train

KS = (3, 5, 10)
METRIC_ORDER = [f"{m}@{k}" for m in ("ndcg", "recall", "mrr") for k in KS]


def run_suite(configs: list[RunConfig], out_dir: str | Path, title: str, show_progress: bool = True) -> list[dict]:
    """Train every config (resuming finished or interrupted runs), evaluate the last item and all positions."""
    rows = []
    for config in configs:
        started = time.perf_counter()
        result = train(config, show_progress=show_progress)
        run_dir = Path(config.runs_dir) / config.name
        all_positions = evaluate_run(run_dir, dataclasses.replace(config.eval, positions="all"))
        rows.append(
            {
                "model": config.name,
                "backbone": config.model.backbone,
                "masking": config.model.masking,
                "test_last": {m: result["test"][m] for m in METRIC_ORDER},
                "test_all_positions": {m: all_positions[m] for m in METRIC_ORDER},
                "valid_last": {m: result["valid"][m] for m in METRIC_ORDER},
                "positions": {
                    "last": result["test"]["positions_evaluated"],
                    "all": all_positions["positions_evaluated"],
                    "skipped_oov_target": result["test"]["positions_skipped_oov_target"],
                },
                "epochs_run": result.get("epochs_run"),
                "train_seconds": result.get("train_seconds"),
                "seconds_per_epoch": result.get("seconds_per_epoch"),
                "sequences_per_second": result.get("sequences_per_second"),
                "parameters": result.get("parameters"),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "config": to_dict(config),
            }
        )
    out = Path(out_dir)
    write_json_atomic(out / "results.json", {"title": title, "machine": machine(), "models": rows})
    write_text_atomic(out / "results.md", markdown_table(rows, title))
    return rows


def machine() -> dict:
    import os
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    # the libraries whose numerics a trained figure depends on: the same seed on another release may differ in the
    # last digits
    return {
        "cpus": os.cpu_count(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **{package: installed(package) for package in ("transformers", "numpy", "polars", "sentence-transformers")},
    }


def markdown_table(rows: list[dict], title: str) -> str:
    header = "| model | " + " | ".join(METRIC_ORDER) + " | epochs | train s | s/epoch | seq/s |"
    lines = [f"## {title}", ""]
    for key, label in (
        ("test_last", "last item of each test session"),
        ("test_all_positions", "all positions of the test sessions"),
    ):
        lines += [f"### Test, {label}", "", header, "|" + " --- |" * (len(METRIC_ORDER) + 5)]
        for row in rows:
            values = " | ".join(f"{row[key][m]:.4f}" for m in METRIC_ORDER)
            extra = [row["epochs_run"], row["train_seconds"], row["seconds_per_epoch"], row["sequences_per_second"]]
            lines.append(
                f"| {row['model']} | {values} | " + " | ".join("-" if v is None else f"{v:g}" for v in extra) + " |"
            )
        if key == "test_all_positions" and any(row["masking"] == "mlm" for row in rows):
            lines += [
                "",
                "Models trained with `mlm` are evaluated on the last item in both tables (mlm evaluation masks "
                "the last event).",
            ]
        lines.append("")
    return "\n".join(lines)

"""Why Beauty's test metrics trail validation: how many test targets, and how many test users' last
input item (their validation item), never occur in the training split; and how many test users
have more earlier items than the model's window (whose seen items only a whole-history
`exclude_seen` removes). Reads the dataset that benchmarks/beauty.py preprocessed; writes
benchmarks/results/beauty_coverage.json.

    python benchmarks/beauty_coverage.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from cmdrec.config import load_run_config
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "outputs/bench/beauty/preprocessed"


def main() -> int:
    if not (DATA / "test.parquet").is_file():
        print(f"no preprocessed Beauty data at {DATA}; run benchmarks/beauty.py first", file=sys.stderr)
        return 1
    trained = set(pl.read_parquet(DATA / "train.parquet", columns=["command"])["command"].explode().to_list())
    sessions = pl.read_parquet(DATA / "test.parquet", columns=["command"])["command"].to_list()
    share = lambda position: sum(s[position] not in trained for s in sessions) / len(sessions)  # noqa: E731
    window = load_run_config(ROOT / "configs/beauty/sasrec.yaml").model.window_length
    result = {
        "command": "python benchmarks/beauty_coverage.py",
        "users": len(sessions),
        "test_target_not_in_train": share(-1),
        "last_input_not_in_train": share(-2),
        "model_window": window,
        "users_with_more_inputs_than_window": sum(len(s) - 1 > window for s in sessions),
    }
    write_json_atomic(ROOT / "benchmarks/results/beauty_coverage.json", result)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

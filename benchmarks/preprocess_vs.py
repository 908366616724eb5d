"""Wall time of processing + preprocessing the Visual Studio logs; writes benchmarks/results/preprocess.json.

python benchmarks/preprocess_vs.py [--data ../shared/data/vs-interactions] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from vs_data import VS_LOGS, have_vs_logs, vs_config

from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VS_LOGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/preprocess.json"))
    args = parser.parse_args()
    data = Path(args.data)
    if not have_vs_logs(data):
        print(f"VS logs not found at {data}; nothing measured", file=sys.stderr)
        return 1
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        config = vs_config(data, f"{scratch}/processed", f"{scratch}/preprocessed")
        for _ in range(args.repeats):
            started = time.perf_counter()
            processed = process_logs(config)
            preprocessed = preprocess(config)
            runs.append(time.perf_counter() - started)
    result = {
        "benchmark": "process + preprocess of the VS interaction logs (configs/data/vs.yaml)",
        "command": "python benchmarks/preprocess_vs.py",
        "events": processed["before"]["events"],
        "events_after_processing": processed["after"]["events"],
        "sessions": processed["after"]["sessions"],
        "sessions_by_split": {s: preprocessed["split"][s]["sessions"] for s in ("train", "valid", "test")},
        "seconds": round(min(runs), 3),
        "seconds_all_runs": [round(r, 3) for r in runs],
        "process_seconds": processed["seconds"],
        "preprocess_seconds": preprocessed["seconds"],
        "engine": f"polars {pl.__version__}",
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(args.out, result)
    print(
        f"{result['events']:,} events -> {result['sessions']:,} sessions in {result['seconds']:.2f} s (best of "
        f"{args.repeats}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""cmdrec's feature workflow beside NVTabular 23.8's (CPU mode) on the VS logs: Categorify +
Normalize + Groupby of the same cleaned sessions, fitted and applied to all of them (no split, so
both do the same work); writes benchmarks/results/nvtabular_peer.json.

NVTabular runs from its own environment (.venv-t4rec; benchmarks/peers/t4rec-requirements.txt).

python benchmarks/nvtabular_peer.py [--data ../shared/data/vs-interactions] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from vs_data import VS_LOGS, have_vs_logs, vs_config

from cmdrec.data.pipeline import process_logs
from cmdrec.data.workflow import Workflow
from cmdrec.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-t4rec/bin/python"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VS_LOGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/nvtabular_peer.json"))
    args = parser.parse_args()
    data = Path(args.data)
    if not have_vs_logs(data) or not PEER_PYTHON.is_file():
        print(f"needs the VS logs at {data} and the peer environment at {PEER_PYTHON}; nothing measured")
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        config = vs_config(data, f"{scratch}/processed")
        process_logs(config)
        sessions_path = Path(scratch) / "processed" / "events.parquet"
        sessions = pl.read_parquet(sessions_path)
        catalogue = pl.read_parquet(Path(scratch) / "processed" / "catalogue.parquet")
        ours = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            workflow = Workflow.fit(sessions, catalogue, config.features)
            sequences, _ = workflow.transform(sessions)
            ours.append(time.perf_counter() - started)
        peer = []
        for _ in range(args.repeats):
            out = subprocess.run(
                [str(PEER_PYTHON), str(ROOT / "benchmarks/peers/nvtabular_vs.py"), "--sessions", str(sessions_path)],
                capture_output=True,
                text=True,
                check=True,
            )
            peer.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(peer, key=lambda r: r["workflow_seconds"])
    result = {
        "benchmark": "Categorify + Normalize + Groupby of the cleaned VS sessions: cmdrec vs NVTabular 23.8 (CPU)",
        "command": "python benchmarks/nvtabular_peer.py",
        "events": sessions.height,
        "sessions": {"cmdrec": sequences.height, "nvtabular": best["sessions"]},
        "cmdrec_seconds": round(min(ours), 3),
        "nvtabular_workflow_seconds": best["workflow_seconds"],
        "nvtabular_fit_seconds": best["fit_seconds"],
        "nvtabular_transform_seconds": best["transform_seconds"],
        "nvtabular_pandas_feature_seconds": best["load_and_derive_seconds"],
        "speedup": round(best["workflow_seconds"] / min(ours), 2),
        "versions": {"polars": pl.__version__, "nvtabular": best["nvtabular"]},
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(args.out, result)
    print(
        f"cmdrec {result['cmdrec_seconds']:.2f} s, NVTabular {result['nvtabular_workflow_seconds']:.2f} s "
        f"(+ {result['nvtabular_pandas_feature_seconds']:.2f} s of pandas features); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

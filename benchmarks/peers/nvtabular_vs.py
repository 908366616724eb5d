"""NVTabular 23.8 (CPU mode) on the VS logs: Categorify + Normalize + Groupby, the seed stack's
feature workflow, timed beside cmdrec's preprocess. Runs in the peer environment (.venv-t4rec, see
t4rec-requirements.txt), never in cmdrec's; prints one JSON line that benchmarks/nvtabular_peer.py
records.

.venv-t4rec/bin/python benchmarks/peers/nvtabular_vs.py --sessions SESSIONS.parquet
"""

from __future__ import annotations

import argparse
import json
import time
import warnings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", required=True, help="cmdrec's processed events.parquet (cleaned sessions)")
    parser.add_argument("--min-count", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import numpy as np
    import nvtabular as nvt
    import pandas as pd
    from merlin.io import Dataset
    from nvtabular import ops

    started = time.perf_counter()
    events = pd.read_parquet(args.sessions, columns=["session_id", "timestamp", "event_index", "command", "category"])
    events = events.sort_values(["session_id", "timestamp", "event_index"], kind="stable")
    # the same raw continuous features as cmdrec's workflow
    seconds = events["timestamp"].astype("int64") / 1e9
    gap = seconds.groupby(events["session_id"]).diff().fillna(0).clip(lower=0)
    events["log_time_delta"] = np.log1p(gap)
    events["position"] = events.groupby("session_id").cumcount().astype("float64")
    events["hour"] = events["timestamp"].dt.hour + events["timestamp"].dt.minute / 60.0
    events["weekday"] = (events["timestamp"].dt.weekday + 1).astype("float64")
    events = events.drop(columns=["timestamp"])
    loaded = time.perf_counter()

    categorical = ["command", "category"] >> ops.Categorify(freq_threshold=args.min_count)
    continuous = ["log_time_delta", "position", "hour", "weekday"] >> ops.Normalize()
    grouped = (["session_id", "event_index"] + categorical + continuous) >> ops.Groupby(
        groupby_cols=["session_id"],
        sort_cols=["event_index"],
        aggs={
            "command": ["list", "count"],
            "category": ["list"],
            "log_time_delta": ["list"],
            "position": ["list"],
            "hour": ["list"],
            "weekday": ["list"],
        },
    )
    workflow = nvt.Workflow(grouped)
    dataset = Dataset(events, cpu=True)
    workflow.fit(dataset)
    fitted = time.perf_counter()
    sequences = workflow.transform(dataset).to_ddf().compute()
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "events": int(len(events)),
                "sessions": int(len(sequences)),
                "load_and_derive_seconds": round(loaded - started, 3),
                "fit_seconds": round(fitted - loaded, 3),
                "transform_seconds": round(done - fitted, 3),
                "workflow_seconds": round(done - loaded, 3),
                "total_seconds": round(done - started, 3),
                "nvtabular": nvt.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Serving from raw histories: latency and throughput of `cmdrec.serving.Predictor`, and a check that
suggestions computed from the raw processed events (through the saved feature workflow) reproduce
the run's offline evaluation.

For each test session, the history is its raw events (command names and timestamps from the
processed log) without the last one, and the target is that last command: Recall@10 of the
suggestions must equal the offline evaluation's (last item, out-of-vocabulary targets skipped in
both), and so must NDCG@10 up to ties between scores.

    python benchmarks/serving.py                       # trains a small GPT-2 on the bundled sample first
    python benchmarks/serving.py --run benchmarks/results/full_vs_10ep/runs/mixtral-full-seed1 \\
        --events outputs/bench/vs/processed/events.parquet --out benchmarks/results/serving_vs.json

Writes benchmarks/results/serving_<name>.json.
"""

from __future__ import annotations

import argparse
import math
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

import polars as pl
import torch

from cmdrec.config import ModelConfig, RunConfig, TrainingConfig
from cmdrec.data.masking import next_event
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.data.synthetic import sample_config, write_sample
from cmdrec.experiments.suite import machine
from cmdrec.io import write_json_atomic
from cmdrec.models.backbones import lean
from cmdrec.serving import Predictor
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_OUT = "outputs/bench/serving-sample"


def sample_run() -> tuple[Path, Path]:
    """A GPT-2 with time and category features, trained on the bundled sample (8 epochs), afresh."""
    write_sample(f"{SAMPLE_OUT}/raw")
    config = sample_config(f"{SAMPLE_OUT}/raw", SAMPLE_OUT)
    process_logs(config)
    preprocess(config)
    run = RunConfig(
        name="serving-sample-gpt2",
        data_dir=config.preprocessed_dir,
        runs_dir="runs/bench",
        model=ModelConfig(input_features=("category", "log_time_delta", "hour")),
        training=TrainingConfig(epochs=8, warmup_steps=10, early_stopping_patience=None),
    )
    shutil.rmtree(Path(run.runs_dir) / run.name, ignore_errors=True)  # this benchmark's own run, of any settings
    train(run, show_progress=False)
    return Path(run.runs_dir) / run.name, Path(config.processed_dir) / "events.parquet"


def test_histories(predictor: Predictor, events_path: Path) -> tuple[list[list[str]], list[list], list[str]]:
    sessions = pl.read_parquet(Path(predictor.config.data_dir) / "test.parquet", columns=["session_id"])
    events = (
        pl.read_parquet(events_path, columns=["session_id", "event_index", "command", "timestamp"])
        .join(sessions, on="session_id")
        .sort("session_id", "event_index")
        .group_by("session_id", maintain_order=True)
        .agg("command", "timestamp")
    )
    if events.height != sessions.height:
        raise SystemExit(
            f"{events_path} has {events.height} of the run's {sessions.height} test sessions: not the log it "
            f"was preprocessed from"
        )
    commands, times = events["command"].to_list(), events["timestamp"].to_list()
    return [c[:-1] for c in commands], [t[:-1] for t in times], [c[-1] for c in commands]


def stage_times(predictor: Predictor, histories, timestamps, batch_size: int, repeats: int = 20) -> dict:
    """Milliseconds per history of each stage of `Predictor.recommend_many` at one batch size (medians over
    `repeats` batches): validating and cleaning, encoding (features and masking), the model's forward
    pass, and a whole `Predictor.score` call (encoding, the forward pass, next-command scores, top k, answers)."""
    timings: dict[str, list[float]] = {"prepare": [], "encode": [], "forward": [], "score": []}
    batch_size = min(batch_size, len(histories))
    for index in range(repeats):
        start = (index * batch_size) % max(len(histories) - batch_size, 1)
        rows = range(start, start + batch_size)
        begin = time.perf_counter()
        prepared = [predictor.prepare(histories[i], timestamps[i]) for i in rows]
        timings["prepare"].append(time.perf_counter() - begin)
        begin = time.perf_counter()
        encoded = predictor.encoder.encode(
            [p.commands for p in prepared], [p.timestamps for p in prepared], [p.attributes for p in prepared]
        )
        batch = next_event(encoded, predictor.config.model.masking, predictor.mask_ids)
        timings["encode"].append(time.perf_counter() - begin)
        with torch.inference_mode():
            begin = time.perf_counter()
            predictor.model(batch.to(predictor.device))
            timings["forward"].append(time.perf_counter() - begin)
        begin = time.perf_counter()
        predictor.score(prepared, 10)
        timings["score"].append(time.perf_counter() - begin)
    median = {name: statistics.median(values) * 1000 / batch_size for name, values in timings.items()}
    return {"batch_size": batch_size, "ms_per_history": {name: round(value, 3) for name, value in median.items()}}


def lean_comparison(predictor: Predictor, histories, timestamps, batch_size: int, rounds: int = 7) -> dict | None:
    """The forward pass with the library's decoder forward and with cmdrec's lean one (the default where
    it applies), in alternating rounds so that both see the same machine: milliseconds per history,
    the best and the median round. None when the model has no decoder the lean forward serves."""
    decoder = getattr(predictor.model.backbone, "model", None)
    probe = torch.zeros(1, 2, predictor.config.model.d_model)
    with torch.inference_mode():
        if decoder is None or not lean.applies(decoder, probe, torch.ones(1, 2, dtype=torch.bool)):
            return None
    sample = [predictor.prepare(histories[i], timestamps[i]) for i in range(min(len(histories), 128))]

    def encoded(rows):
        batch = predictor.encoder.encode(
            [p.commands for p in rows], [p.timestamps for p in rows], [p.attributes for p in rows]
        )
        return next_event(batch, predictor.config.model.masking, predictor.mask_ids).to(predictor.device)

    sizes = [size for size in (1, 8, batch_size) if size <= len(sample)]
    batches = {size: [encoded(sample[i : i + size]) for i in range(0, len(sample) - size + 1, size)] for size in sizes}
    times = {(size, path): [] for size in sizes for path in ("library", "lean")}
    applies = lean.applies
    try:
        with torch.inference_mode():
            for _ in range(rounds):
                for size, path in times:
                    lean.applies = applies if path == "lean" else (lambda *args: False)
                    begin = time.perf_counter()
                    for batch in batches[size]:
                        predictor.model(batch)
                    times[(size, path)].append((time.perf_counter() - begin) * 1000 / (len(batches[size]) * size))
    finally:
        lean.applies = applies
    return {
        "rounds": rounds,
        "ms_per_history": [
            {"batch_size": size, "path": path, "best": round(min(v), 3), "median": round(statistics.median(v), 3)}
            for (size, path), v in times.items()
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default=None, help="a finished run (default: train a small GPT-2 on the bundled sample)"
    )
    parser.add_argument(
        "--events", default=None, help="the processed events.parquet the run's data was preprocessed from"
    )
    parser.add_argument("--single-requests", type=int, default=200, help="one-history requests timed for the latency")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/serving_sample.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if (args.run is None) != (args.events is None):
        parser.error("--run and --events go together")
    run_dir, events_path = sample_run() if args.run is None else (Path(args.run), Path(args.events))
    started = time.perf_counter()
    predictor = Predictor(run_dir)
    load_seconds = time.perf_counter() - started
    histories, timestamps, targets = test_histories(predictor, events_path)
    predictor.recommend(histories[0], 10, timestamps[0])  # warm-up

    latencies = []
    for history, times in list(zip(histories, timestamps, strict=False))[: args.single_requests]:
        begin = time.perf_counter()
        predictor.recommend(history, 10, times)
        latencies.append((time.perf_counter() - begin) * 1000)
    begin = time.perf_counter()
    answers = []
    for start in range(0, len(histories), args.batch_size):
        answers += predictor.recommend_many(
            histories[start : start + args.batch_size], 10, timestamps[start : start + args.batch_size]
        )
    batched_seconds = time.perf_counter() - begin

    stages = [stage_times(predictor, histories, timestamps, size) for size in (1, args.batch_size)]
    lean_forward = lean_comparison(predictor, histories, timestamps, args.batch_size)

    known = set(predictor.names[2:])
    scored = [(answer, target) for answer, target in zip(answers, targets, strict=False) if target in known]
    offline = evaluate_run(run_dir)
    quantiles = statistics.quantiles(latencies, n=100)
    result = {
        "command": shlex.join(["python", "benchmarks/serving.py", *sys.argv[1:]]),
        "run": str(run_dir),
        "events": str(events_path),
        "backbone": predictor.config.model.backbone,
        "input_features": list(predictor.config.model.input_features),
        "max_length": predictor.config.model.max_length,
        "threads": args.threads,
        "load_seconds": round(load_seconds, 3),
        "test_sessions": len(histories),
        "mean_history_events": round(statistics.fmean(len(h) for h in histories), 1),
        "single_request_ms": {
            "requests": len(latencies),
            "p50": round(quantiles[49], 2),
            "p95": round(quantiles[94], 2),
            "mean": round(statistics.fmean(latencies), 2),
        },
        "batched": {"batch_size": args.batch_size, "histories_per_second": round(len(histories) / batched_seconds, 1)},
        "stages": stages,
        **({"lean_forward": lean_forward} if lean_forward is not None else {}),
        "served_recall@10": sum(target in answer.commands for answer, target in scored) / len(scored),
        "offline_recall@10": offline["recall@10"],
        "served_ndcg@10": sum(
            1 / math.log2(answer.commands.index(target) + 2) for answer, target in scored if target in answer.commands
        )
        / len(scored),
        "offline_ndcg@10": offline["ndcg@10"],
        "targets_out_of_vocabulary": len(targets) - len(scored),
        "offline_positions_skipped_oov_target": offline["positions_skipped_oov_target"],
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(args.out, result)
    print(
        f"served Recall@10 {result['served_recall@10']:.4f} (offline {result['offline_recall@10']:.4f}), "
        f"NDCG@10 {result['served_ndcg@10']:.4f} (offline {result['offline_ndcg@10']:.4f}); "
        f"one request p50 {result['single_request_ms']['p50']} ms, p95 {result['single_request_ms']['p95']} ms; "
        f"batched {result['batched']['histories_per_second']} histories/s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What each of the paper's data stages does to NDCG@10 on the VS logs: the Llama baseline and the full
model trained on the data with one stage on, against the same protocol with every stage off (the
random session split and epochs of the full-model benchmark), one seed each (a screen), and more seeds
of the stages worth a second look (`--seed 2`, `--seed 3`).

    python benchmarks/pipeline_stages_vs.py --prepare-only
    python benchmarks/pipeline_stages_vs.py --models llama [--steps base workflows ...] [--epochs 10] [--seed 1]

Finished runs are re-read, so the benchmark resumes where it stopped and several invocations (one
per model, say) can share the work. Each (stage, model) result is written to
benchmarks/results/pipeline_stages_vs/ as it finishes, and benchmarks/results/pipeline_stages_vs.json
gathers them all. Undo reconstruction and redundant-command removal change the events, hence the
test targets: their rows are measured on the changed data, and both runs again on the test targets
the two versions share (the same event evaluated, each after its own history).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import polars as pl
from vs_data import VS_LOGS, have_vs_logs, vs_config

from cmdrec.artifacts.loading import load_trained
from cmdrec.config import TextConfig, load_run_config
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.pipeline import preprocess, process_logs
from cmdrec.experiments.suite import machine
from cmdrec.io import read_json, write_json_atomic
from cmdrec.text.pipeline import embed_commands
from cmdrec.training.evaluate import evaluate_model
from cmdrec.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/pipeline_stages_vs"
MINED = ROOT / "benchmarks/results/mining_vs/redundant_pairs.parquet"
MODELS = {"llama": "configs/baselines/llama.yaml", "full": "configs/full/mixtral_full.yaml"}


def reviewed_pairs() -> list[list[str]]:
    """The mined candidates kept after review: ranks 1-28 (confidence at least 0.93: two names logged
    for one action, or a window a command opens), less rank 22, the reverse of rank 21, which would
    remove both of those commands."""
    mined = pl.read_parquet(MINED).filter((pl.col("rank") <= 28) & (pl.col("rank") != 22)).sort("rank")
    return [[row["accompanying"], row["main"]] for row in mined.iter_rows(named=True)]


def steps() -> dict[str, list[str]]:
    """Stage -> data config overrides that turn it on."""
    return {
        "base": [],
        "undo": ["processing.undo.preset=vs"],
        "redundant": [f"processing.redundant.pairs={json.dumps(reviewed_pairs())}", "processing.redundant.window=1"],
        "workflows": ["features.workflows.merges=200", "features.workflows.min_count=20"],
        "balanced": ["split.balance_commands=true"],
        "chunking": ["features.chunking.min=10", "features.chunking.max=100"],
    }


def prepared(step: str, overrides: list[str], logs: Path) -> Path:
    out = ROOT / "outputs/bench/stages" / step
    data = out / "preprocessed"
    if not PreparedDataset(data).text_embeddings_path.is_file():
        config = vs_config(logs, out / "processed", data, overrides)
        report = process_logs(config)
        preprocessed = preprocess(config)
        embed_commands(data, TextConfig(cache_dir=str(ROOT / "outputs/cache/text")))
        write_json_atomic(out / "data_report.json", {"process": report, "preprocess": preprocessed})
    return data


def result_path(step: str, model: str, seed: int) -> Path:
    return RESULTS / (f"{step}-{model}.json" if seed == 1 else f"{step}-{model}-s{seed}.json")


def run(step: str, model: str, data: Path, epochs: int, seed: int, command: str, runs_at_once: int) -> dict:
    path = result_path(step, model, seed)
    if path.is_file():
        return read_json(path)
    name = f"{step}-{model}-s{seed}"
    overrides = [f"data_dir={data}", "runs_dir=runs/bench/stages", f"name={name}", f"training.epochs={epochs}",
                 f"training.seed={seed}", "training.num_threads=1"]  # fmt: skip
    started = time.perf_counter()
    result = train(load_run_config(ROOT / MODELS[model], overrides), show_progress=False)
    data_report = read_json(data.parent / "data_report.json")
    entry = {
        "step": step,
        "model": model,
        "seed": seed,
        "epochs": epochs,
        "run": f"runs/bench/stages/{name}",
        "command": command,
        "test": result["test"],
        "valid": result["valid"],
        "epochs_run": result["epochs_run"],
        "train_seconds": round(time.perf_counter() - started, 1),
        "runs_at_once": runs_at_once,  # above 1 the seconds were shared with other runs on the machine
        "events_after_processing": data_report["process"]["after"]["events"],
        "test_sessions": data_report["preprocess"]["split"]["test"]["sessions"],
        "data": {"train": data_report["preprocess"]["transform"]["train"].get("workflows")},
    }
    write_json_atomic(path, entry)
    return entry


CHANGED_TARGETS = ("undo", "redundant")  # the stages that change the events, hence some test targets


def target_events(data: Path) -> pl.DataFrame:
    """Each test session's id and the event it is evaluated on (its last: user, time, command)."""
    test = pl.read_parquet(data / "test.parquet", columns=["session_id"])
    events = pl.scan_parquet(data.parent / "processed" / "events.parquet")
    return (
        events.select("session_id", "event_index", "user_id", "timestamp", "command")
        .join(test.lazy(), on="session_id")
        .sort("session_id", "event_index")
        .group_by("session_id")
        .last()
        .drop("event_index")
        .collect()
    )


def evaluate_on(run_dir: Path, sessions: list, scratch: Path) -> dict:
    """A finished run's test metrics on some of its test sessions: a copy of its data whose test split
    holds only those (every other file linked)."""
    model, config = load_trained(run_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    data = Path(config.data_dir)
    for entry in data.iterdir():
        if entry.name != "test.parquet":
            (scratch / entry.name).symlink_to(entry.resolve())
    test = pl.read_parquet(data / "test.parquet")
    test.filter(pl.col("session_id").is_in(sessions)).write_parquet(scratch / "test.parquet")
    metrics = evaluate_model(model, dataclasses.replace(config, data_dir=str(scratch)))
    shutil.rmtree(scratch)
    return metrics


def shared_targets(step: str, model: str, seed: int, data: dict[str, Path]) -> dict | None:
    """Both runs on the test targets both versions of the data share: the same event (user, time,
    command) evaluated after each one's own history."""
    base_run, step_run = (result_path(name, model, seed) for name in ("base", step))
    if not (base_run.is_file() and step_run.is_file()):
        return None
    pairs = target_events(data["base"]).join(target_events(data[step]), on=["user_id", "timestamp", "command"])
    scratch = ROOT / f"outputs/bench/stages/shared-targets-s{seed}"  # two seeds may run at once
    base = evaluate_on(ROOT / read_json(base_run)["run"], pairs["session_id"].to_list(), scratch)
    changed = evaluate_on(ROOT / read_json(step_run)["run"], pairs["session_id_right"].to_list(), scratch)
    return {
        "sessions": pairs.height,
        "base": {k: base[k] for k in ("ndcg@10", "recall@10", "positions_evaluated")},
        step: {k: changed[k] for k in ("ndcg@10", "recall@10", "positions_evaluated")},
        "ndcg@10_change": changed["ndcg@10"] - base["ndcg@10"],
    }


def gather() -> dict:
    entries = [read_json(p) for p in sorted(RESULTS.glob("*.json"))]
    return {
        "benchmark": "the paper's data stages, each on alone, on the VS logs (random session split)",
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": entries,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VS_LOGS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", nargs="+", default=None, help="default: all")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs-at-once", type=int, default=1, help="recorded: other runs sharing the machine")
    parser.add_argument("--prepare-only", action="store_true", help="prepare every stage's data, train nothing")
    args = parser.parse_args()
    if not have_vs_logs(args.data):
        print(f"VS logs not found at {args.data}; nothing measured", file=sys.stderr)
        return 1
    chosen = {k: v for k, v in steps().items() if args.steps is None or k in args.steps}
    command = shlex.join(["python", "benchmarks/pipeline_stages_vs.py", *sys.argv[1:]])
    data = {step: prepared(step, overrides, Path(args.data)) for step, overrides in chosen.items()}
    if args.prepare_only:
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        for step in chosen:
            entry = run(step, model, data[step], args.epochs, args.seed, command, args.runs_at_once)
            print(f"{step:>10} {model:>6}: test NDCG@10 {entry['test']['ndcg@10']:.4f}", flush=True)
            if step in CHANGED_TARGETS and "shared_targets" not in entry:
                base_data = data.get("base") or prepared("base", [], Path(args.data))
                shared = shared_targets(step, model, args.seed, {"base": base_data, step: data[step]})
                if shared is not None:
                    write_json_atomic(result_path(step, model, args.seed), {**entry, "shared_targets": shared})
                    print(f"{step:>10} {model:>6}: on {shared['sessions']} shared targets, NDCG@10 change "
                          f"{shared['ndcg@10_change']:+.4f}", flush=True)  # fmt: skip
    write_json_atomic(ROOT / "benchmarks/results/pipeline_stages_vs.json", gather())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `cmdrec` command: argv -> config -> library. The only module that reads argv."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cmdrec.config import DataConfig, apply_overrides, from_dict, load_data_config, to_dict
from cmdrec.errors import InputError

SAMPLE_DIR = "data/sample"
BASELINE_CONFIGS = "configs/baselines"


def _data_parser(command: str, help_text: str, subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(command, help=help_text, description=help_text)
    parser.add_argument(
        "--config", default=None, help="data config YAML (default: the bundled sample, as configs/data/sample.yaml)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides such as processing.session_gap_minutes=10")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmdrec", description="Next-command recommendation from application usage logs."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="write the bundled simulated BIM/CAD log (events.csv, catalogue.csv)")
    sample.add_argument("--out", default=SAMPLE_DIR)
    sample.add_argument("--users", type=int, default=60)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--events", type=int, default=None, help="write a log of N events in shards instead (for measuring scale)"
    )
    sample.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="of the shards (csv: .csv.gz)")
    sample.add_argument("--shard-events", type=int, default=10_000_000, help="events per shard")
    _data_parser("process", "raw command log -> cleaned sessions, with a report of every filter", sub)
    _data_parser("preprocess", "sessions -> split -> fitted feature workflow -> sequences + schema.json", sub)
    _data_parser(
        "quickstart",
        "generate the sample log (if missing), process and preprocess it, train and evaluate two models",
        sub,
    )

    mine = _data_parser("mine", "find commands that almost always accompany another (candidate redundant pairs)", sub)
    mine.add_argument("--window", type=int, default=1, help="events either side that count as together")
    mine.add_argument("--min-count", type=int, default=20, help="ignore commands rarer than this")
    mine.add_argument("--top", type=int, default=50, help="pairs in the Markdown table")
    mine.add_argument("--out", default=None, help="default: the config's processed_dir/mining")

    _data_parser("embed", "embed every command's text (optionally LLM-augmented) -> text_embeddings.safetensors", sub)

    train = sub.add_parser("train", help="train and evaluate one model (resumes the run if it has checkpoints)")
    train.add_argument("--config", required=True, help="run config YAML, e.g. configs/baselines/gpt2.yaml")
    train.add_argument(
        "--nproc", type=int, default=1, help="data-parallel processes on this machine (gloo on a CPU, NCCL on GPUs)"
    )
    train.add_argument(
        "--restart", action="store_true", help="delete what the run holds and train it again from the start"
    )
    train.add_argument(
        "overrides", nargs="*", help="overrides such as data_dir=outputs/vs/preprocessed training.epochs=30"
    )

    evaluate = sub.add_parser("evaluate", help="evaluate a trained run's best model")
    evaluate.add_argument("run", help="run directory (e.g. runs/gpt2) or a directory written by `cmdrec export`")
    evaluate.add_argument("--split", default="test", choices=["valid", "test"])
    evaluate.add_argument(
        "--data", default=None, help="preprocessed dataset to evaluate on (required for a bundle; default: the run's)"
    )
    evaluate.add_argument(
        "--analysis",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="also write where the model goes wrong (category confusion, most missed commands, accuracy by "
        "history length, next-category prediction) to DIR (default: RUN/analysis_SPLIT)",
    )
    evaluate.add_argument("overrides", nargs="*", help="evaluation overrides such as positions=all exclude_seen=true")

    export = sub.add_parser(
        "export", help="write a finished run as a self-contained bundle to serve anywhere (adapters merged)"
    )
    export.add_argument("run", help="run directory, e.g. runs/gpt2")
    export.add_argument("--out", required=True, help="the bundle directory to create")
    export.add_argument(
        "--keep-attribute-values",
        action="store_true",
        help="store event-attribute vocabularies (e.g. developer ids) as given instead of salted hashes",
    )

    recommend = sub.add_parser("recommend", help="the next commands a trained run suggests after a history of commands")
    recommend.add_argument("run", help="run directory (e.g. runs/gpt2) or a directory written by `cmdrec export`")
    recommend.add_argument("--history", nargs="+", required=True, help="command names, oldest first")
    recommend.add_argument(
        "--timestamps",
        nargs="+",
        default=None,
        help="ISO 8601 time of each history command (needed when the model uses time features)",
    )
    recommend.add_argument("-k", type=int, default=10, help="how many suggestions")
    recommend.add_argument("--exclude-seen", action="store_true", help="never suggest a command already in the history")
    recommend.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an event attribute the model uses, held for the whole history (e.g. developer_id=42); repeatable",
    )
    recommend.add_argument("--device", default="cpu")

    serve = sub.add_parser(
        "serve", help="serve a bundle (or a finished run) over HTTP, with live sessions and a demo page"
    )
    serve.add_argument("path", help="bundle directory (from `cmdrec export`) or run directory")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("overrides", nargs="*", help="serving settings such as batch_size=32 max_sessions=50000")

    predict = sub.add_parser("predict", help="score every history of a file (batch prediction) into a Parquet file")
    predict.add_argument("path", help="bundle directory or run directory")
    predict.add_argument(
        "--input", required=True, help="histories: .jsonl, .parquet (history lists) or .csv (one event a row)"
    )
    predict.add_argument("--output", required=True, help="suggestions.parquet")
    predict.add_argument("-k", type=int, default=10)
    predict.add_argument("--chunk-size", type=int, default=512, help="histories scored per forward pass")
    predict.add_argument("--device", default="cpu")

    watch = sub.add_parser("watch", help="follow a growing log file and show the next-command suggestions")
    watch.add_argument("logfile", help="a plain CSV (with header) or JSONL log being appended")
    target = watch.add_mutually_exclusive_group(required=True)
    target.add_argument("--server", help="URL of a running `cmdrec serve`, e.g. http://127.0.0.1:8000")
    target.add_argument("--bundle", help="score in this process with a bundle or run directory")
    watch.add_argument("--session", default=None, help="live-session id (default: the log file's name)")
    watch.add_argument("--command-column", default="command")
    watch.add_argument("--timestamp-column", default="timestamp", help="'' when the log has none")
    watch.add_argument("--timestamp-format", default=None, help="strptime format (default: ISO 8601)")
    watch.add_argument(
        "--attribute", action="append", default=[], metavar="NAME=VALUE", help="event attribute; repeatable"
    )
    watch.add_argument("--from-end", action="store_true", help="skip what the log already holds")
    watch.add_argument("-k", type=int, default=5)
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    watch.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")

    runs = sub.add_parser("runs", help="list runs with their state, last step and best validation metric")
    runs.add_argument("runs_dir_arg", nargs="?", default=None, metavar="RUNS_DIR", help="default: runs")
    runs.add_argument("--runs-dir", default=None)

    suite = sub.add_parser("baselines", help="train and evaluate the baseline suite; write a results table")
    suite.add_argument(
        "--configs", nargs="+", default=None, help=f"run configs (default: every YAML in {BASELINE_CONFIGS})"
    )
    suite.add_argument("--out", default=None, help="where results.md/json go (default: <runs_dir>/<suite>)")
    suite.add_argument("--title", default="Baselines")
    suite.add_argument(
        "overrides", nargs="*", help="overrides applied to every config, e.g. data_dir=outputs/vs/preprocessed"
    )

    compare = sub.add_parser(
        "compare", help="full model vs baselines over seeds, with ablation, frequency buckets and plots"
    )
    compare.add_argument("--full", default="configs/full/mixtral_full.yaml")
    compare.add_argument(
        "--baselines", nargs="*", default=None, help=f"run configs (default: every YAML in {BASELINE_CONFIGS})"
    )
    compare.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    compare.add_argument(
        "--ablation-seeds",
        nargs="*",
        type=int,
        default=None,
        help="seeds for the ablation rows (default: --seeds; given with no seeds: no ablation rows)",
    )
    compare.add_argument(
        "--ablations",
        nargs="+",
        default=None,
        metavar="MODULE",
        help="modules removed in turn (default: all of fusion, multi-task, 'focal loss', 'mixture of experts', "
        "'text embeddings', 'history copy')",
    )
    compare.add_argument("--jobs", type=int, default=1, help="runs trained at a time, each in its own process")
    compare.add_argument("--out", default="reports/compare")
    compare.add_argument(
        "overrides", nargs="*", help="overrides applied to every config, e.g. data_dir=outputs/vs/preprocessed"
    )

    plot = sub.add_parser("plot", help="pictures: a processed log's data, a model's command embeddings")
    plot.add_argument("what", choices=["data", "embeddings"])
    plot.add_argument("path", help="data: a processed directory; embeddings: a run or a bundle")
    plot.add_argument("--out", default=None, help="default: PATH/plots")

    vocab = sub.add_parser("vocab", help="the command vocabulary: ids, categories, train counts, OOV mapping")
    vocab.add_argument("path", help="a preprocessed data directory or a bundle")
    vocab.add_argument("--search", default=None, help="only commands whose name or category contains TEXT")
    vocab.add_argument("--csv", default=None, help="write the table to this CSV file instead")

    sweep = sub.add_parser("sweep", help="search hyperparameters with Optuna; resumes the study when run again")
    sweep.add_argument("--config", required=True, help="the run config every trial starts from")
    sweep.add_argument("--space", required=True, help="search space YAML, e.g. configs/sweeps/gpt2_sample.yaml")
    sweep.add_argument("--trials", type=int, required=True, help="finished (complete or pruned) trials to reach")
    sweep.add_argument("--jobs", type=int, default=1, help="processes sharing the study on this machine")
    sweep.add_argument("--study", default=None, help="study name (default: the config's file name)")
    sweep.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite in the study's folder)")
    sweep.add_argument("--pruner", default="median", choices=["median", "halving", "none"])
    sweep.add_argument("--top", type=int, default=3, help="best trials re-run on more seeds before one is best")
    sweep.add_argument("--seeds", type=int, default=3, help="seeds of each top trial (its own included)")
    sweep.add_argument("--no-finish", action="store_true", help=argparse.SUPPRESS)  # a worker of --jobs
    sweep.add_argument("overrides", nargs="*", help="overrides for every trial, e.g. training.epochs=5")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`cmdrec serve B --port 9000 batch_size=32`); anything else is an error
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


# libraries that report every request, load or optional kernel they lack; `--verbose` shows them
NOISY_LOGGERS = ("httpx", "httpcore", "openai", "bitsandbytes", "sentence_transformers", "urllib3", "distributed")


def quiet_libraries() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if name != "bitsandbytes" else logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is imported


def _config(args) -> DataConfig:
    if args.config:
        return load_data_config(args.config, args.overrides)
    from cmdrec.data.synthetic import sample_config

    return from_dict(DataConfig, apply_overrides(to_dict(sample_config(SAMPLE_DIR)), args.overrides))


def run_sample(args) -> int:
    from cmdrec.data.synthetic import write_large_sample, write_sample

    if getattr(args, "events", None):
        shards = write_large_sample(args.out, args.events, args.format, args.shard_events, seed=args.seed)
        print(f"wrote {args.events:,} events in {len(shards)} shard(s) and catalogue.csv to {args.out}")
        print(
            f"process them with: cmdrec process source.path={args.out}/events catalogue.path={args.out}/catalogue.csv "
            "source.timestamp_format=null processing.noise_preset=sample"
        )
        return 0
    events, catalogue = write_sample(args.out, users=args.users, seed=args.seed)
    print(f"wrote {events} and {catalogue}")
    return 0


def run_process(args) -> int:
    from cmdrec.data.pipeline import process_logs
    from cmdrec.report import format_processing

    config = _config(args)
    print(format_processing(process_logs(config), config.processed_dir))
    return 0


def run_preprocess(args) -> int:
    from cmdrec.data.pipeline import preprocess
    from cmdrec.report import format_preprocess

    config = _config(args)
    print(format_preprocess(preprocess(config), config.preprocessed_dir))
    return 0


def run_quickstart(args) -> int:
    """Sample log -> sessions -> sequences -> a Markov chain and a small GPT-2, trained and evaluated."""
    from cmdrec.config import ModelConfig, RunConfig, TrainingConfig
    from cmdrec.training.suite import run_suite

    if not args.config and not Path(SAMPLE_DIR, "events.csv").exists():
        run_sample(argparse.Namespace(out=SAMPLE_DIR, users=60, seed=7))
    run_process(args)
    run_preprocess(args)
    data_dir = _config(args).preprocessed_dir
    runs = [
        RunConfig(name="quickstart-markov", data_dir=data_dir, model=ModelConfig(backbone="markov")),
        RunConfig(
            name="quickstart-gpt2",
            data_dir=data_dir,
            training=TrainingConfig(epochs=8, warmup_steps=10, early_stopping_patience=None),
        ),
    ]
    print("== train and evaluate: first-order Markov chain, GPT-2 (d 64, 2 layers, 8 epochs)")
    for row in run_suite(runs, "runs/quickstart", "Quickstart on the bundled sample", show_progress=False):
        print(_metrics_line(f"{row['model']} test (last item)", row["test_last"]))
    if not args.config:  # the example history is made of the sample's commands
        from cmdrec.serving import Predictor

        history = ["Open", "ZoomExtents", "Wall", "Wall", "Door"]
        run_dir = Path(runs[1].runs_dir) / runs[1].name
        answer = Predictor(run_dir).recommend(history, k=3)
        print(f"== cmdrec recommend {run_dir} --history {' '.join(history)} -k 3\n   " + ", ".join(answer.commands))
    print(
        "wrote runs/quickstart/results.md; next: cmdrec runs, cmdrec train --config configs/baselines/gpt2.yaml,\n"
        "   cmdrec export runs/quickstart-gpt2 --out bundles/gpt2 && cmdrec serve bundles/gpt2"
        "  (then open http://127.0.0.1:8000)"
    )
    return 0


def run_embed(args) -> int:
    from cmdrec.text.pipeline import embed_commands

    config = _config(args)
    report = embed_commands(config.preprocessed_dir, config.text)
    shared = report["commands"] - report["distinct_texts"]
    same = f" ({shared} command(s) share a text with another, embedded once)" if shared else ""
    print(
        f"embedded {report['commands']} commands with {report['provider']} {report['model']} "
        f"({report['dimension']} dimensions): {report['distinct_texts']} distinct texts{same}, "
        f"{report['embedded_now']} new, {report['from_cache']} from cache (in {report['cache_dir']}); "
        f"wrote {report['path']}"
    )
    if report["described"] < report["commands"]:
        print(
            f"note: {report['commands'] - report['described']} command(s) have no description in the catalogue and "
            "were embedded from their bare names; give a catalogue with descriptions, or text.augment=true"
        )
    if report["label_columns"]:
        print(
            "LLM label columns (usable in model.aux_tasks): "
            + ", ".join(f"{name} ({n} values)" for name, n in report["label_columns"].items())
        )
    return 0


def run_train(args) -> int:
    import os

    from cmdrec.config import load_run_config
    from cmdrec.training.distributed import LAUNCHED, from_environment, launch
    from cmdrec.training.loop import train

    config = load_run_config(args.config, args.overrides)
    devices = config.training.devices
    launched = os.environ.get(LAUNCHED) or from_environment().distributed  # by us, or by torchrun directly
    if not launched and (args.nproc > 1 or len(devices) > 1):
        if args.nproc > 1 and len(devices) > 1 and args.nproc != len(devices):
            raise InputError(f"--nproc {args.nproc} and training.devices {list(devices)} disagree; give one")
        argv = ["train", "--config", args.config, *(["--restart"] if args.restart else []), *args.overrides]
        return launch(argv, max(args.nproc, len(devices)), devices)
    result = train(config, restart=args.restart)
    if from_environment().main:
        print(_metrics_line(f"{config.name} test", result["test"]))
        print(f"run directory: {Path(config.runs_dir) / config.name}")
    return 0


def run_evaluate(args) -> int:
    import dataclasses

    from cmdrec.artifacts.bundle import check_dataset, is_bundle, load_model_dir
    from cmdrec.config import EvalConfig
    from cmdrec.io import write_json_atomic
    from cmdrec.training.evaluate import evaluate_model

    model, config = load_model_dir(args.run)
    bundle = is_bundle(args.run)
    if bundle and not args.data:
        raise InputError(f"{args.run} is a bundle, which holds no evaluation splits: give --data PREPROCESSED_DIR")
    if args.data:
        if bundle:
            check_dataset(args.run, args.data)
        config = dataclasses.replace(config, data_dir=args.data)
    eval_config = from_dict(EvalConfig, apply_overrides(to_dict(config.eval), args.overrides))
    result = evaluate_model(model, config, eval_config, args.split)
    if not bundle:  # a bundle's files are checksummed: the result is printed, not added to it
        name = f"evaluation_{args.split}_{eval_config.positions}{'_unseen' if eval_config.exclude_seen else ''}.json"
        write_json_atomic(Path(args.run) / name, result)
    print(_metrics_line(f"{Path(args.run).name} {args.split} ({eval_config.positions})", result))
    if args.analysis is not None:
        from cmdrec.training.analysis import analyse

        if bundle and not args.analysis:
            raise InputError("--analysis of a bundle needs a folder to write to: --analysis DIR")
        out = args.analysis or str(Path(args.run) / f"analysis_{args.split}")
        summary = analyse(model, config, args.split, out)
        print(f"{summary['predictions']:,} predictions analysed; by history length:")
        for row in summary["by_history_length"]:
            scores = f"recall@10 {row['recall@10']:.4f}, ndcg@10 {row['ndcg@10']:.4f}"
            print(f"  {row['history']:>7}: {scores} ({row['positions']:,})")
        missed = ", ".join(f"{r['command']} {r['misses']:,} ({r['miss_rate']:.0%})" for r in summary["most_missed"][:5])
        print(f"most missed: {missed}")
        for key, value in summary.items():
            if key.startswith("next_"):
                print(f"{key.replace('_', ' ')}: precision {value['precision']:.4f}, recall {value['recall']:.4f}")
        if "category_confusion" in summary:
            print(f"top suggestion in the right category: {summary['category_confusion']['accuracy']:.1%}")
        print(f"wrote {out}/ (analysis.json, CSVs and PNGs)")
    return 0


def run_export(args) -> int:
    from cmdrec.artifacts.bundle import export_bundle

    out = export_bundle(args.run, args.out, keep_attribute_values=args.keep_attribute_values)
    print(f"exported {args.run} to the bundle {out}; serve it with: cmdrec serve {out}")
    return 0


def run_recommend(args) -> int:
    from datetime import datetime

    from cmdrec.serving import Predictor

    try:
        timestamps = None if args.timestamps is None else [datetime.fromisoformat(t) for t in args.timestamps]
    except ValueError as error:
        raise InputError(f"--timestamps: {error}") from error
    attributes = _attributes(args.attribute)
    answer = Predictor(args.run, args.device).recommend(args.history, args.k, timestamps, args.exclude_seen, attributes)
    if answer.unknown_commands:
        print(
            f"not in the vocabulary, read as out-of-vocabulary: {', '.join(answer.unknown_commands)}", file=sys.stderr
        )
    print(f"{'rank':>4}  {'command':<40}score (the model's logit: higher is likelier; not a probability)")
    for rank, (command, score) in enumerate(zip(answer.commands, answer.scores, strict=False), 1):
        print(f"{rank:>4}  {command:<40}{score:.4f}")
    return 0


def run_serve(args) -> int:
    from cmdrec.config import ServingConfig
    from cmdrec.serving.service import serve

    settings = apply_overrides({}, args.overrides)
    settings.update({k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    try:
        config = from_dict(ServingConfig, settings, "serving.")
    except InputError as error:
        raise InputError(f"serve: {error}") from error
    serve(args.path, config)
    return 0


def run_predict(args) -> int:
    from cmdrec.serving.batch import predict_file
    from cmdrec.serving.predict import Predictor

    report = predict_file(Predictor(args.path, args.device), args.input, args.output, args.k, args.chunk_size)
    print(f"scored {report['scored']:,} of {report['histories']:,} histories; wrote {args.output}")
    if report["bad_rows"]:
        print(f"{report['bad_rows']:,} bad row(s), their error in the output's error column:", file=sys.stderr)
        for line in report["errors"]:
            print(f"  {line}", file=sys.stderr)
    return 0


def run_watch(args) -> int:
    from cmdrec.serving.watch import LogFollower, LogFormat, bundle_sink, print_suggestions, server_sink, watch

    attributes = _attributes(args.attribute) or None
    log_format = LogFormat(args.command_column, args.timestamp_column or None, args.timestamp_format)
    follower = LogFollower(args.logfile, log_format, from_start=not args.from_end)
    session = args.session or Path(args.logfile).name
    if args.server:
        send = server_sink(args.server, session, args.k, attributes)
    else:
        send = bundle_sink(args.bundle, args.k, attributes)
    print(f"watching {args.logfile} (session {session}); Ctrl-C to stop", flush=True)
    try:
        watch(follower, send, print_suggestions, args.interval, max_seconds=args.max_seconds)
    except KeyboardInterrupt:
        pass
    return 0


def _attributes(pairs: list[str]) -> dict[str, str]:
    malformed = [a for a in pairs if "=" not in a]
    if malformed:
        raise InputError(f"--attribute: expected NAME=VALUE, got {malformed[0]!r}")
    return dict(a.split("=", 1) for a in pairs)


def run_runs(args) -> int:
    from cmdrec.artifacts.runs import list_runs

    root = args.runs_dir_arg or args.runs_dir or "runs"
    rows = list_runs(root)
    if not rows:
        print(f"no runs in {root}")
        return 0
    width = max(len("run"), *(len(row["name"]) for row in rows)) + 2
    print(f"{'run':<{width}}{'state':<12}{'step':>8}  {'valid':>8}  {'test':>8}  {'updated':<19}  monitor")
    for row in rows:
        valid, test = ("-" if row[k] is None else f"{row[k]:.4f}" for k in ("best", "test"))
        print(
            f"{row['name']:<{width}}{row['state']:<12}{row['step']:>8}  {valid:>8}  {test:>8}  "
            f"{row['updated'] or '-':<19}  {row['monitor'] or ''}"
        )
    return 0


def run_baselines(args) -> int:
    from cmdrec.config import load_run_config
    from cmdrec.training.suite import run_suite

    paths = args.configs or sorted(str(p) for p in Path(BASELINE_CONFIGS).glob("*.yaml"))
    if not paths:
        raise InputError(f"no run configs given and none found in {BASELINE_CONFIGS}")
    configs = [load_run_config(path, args.overrides) for path in paths]
    out = args.out or str(Path(configs[0].runs_dir) / "baselines")
    rows = run_suite(configs, out, args.title)
    for row in rows:
        print(_metrics_line(f"{row['model']} test (last item)", row["test_last"]))
    print(f"wrote {out}/results.md and {out}/results.json")
    return 0


def run_compare_command(args) -> int:
    from cmdrec.config import load_run_config
    from cmdrec.training.compare import run_compare

    paths = (
        args.baselines if args.baselines is not None else sorted(str(p) for p in Path(BASELINE_CONFIGS).glob("*.yaml"))
    )
    report = run_compare(
        load_run_config(args.full, args.overrides),
        [load_run_config(p, args.overrides) for p in paths],
        args.seeds,
        args.out,
        ablation_seeds=args.ablation_seeds,
        ablations=args.ablations,
        jobs=args.jobs,
    )
    summary = report["summary"]
    if summary.get("best_baseline"):
        print(
            f"{summary['full']} vs best baseline {summary['best_baseline']}: NDCG@10 "
            f"{summary['relative_ndcg@10_gain']:+.1%}"
        )
    print(f"wrote {args.out}/compare.md, compare.json, ndcg10.png, buckets.png, learning_curves.png")
    return 0


def _metrics_line(label: str, metrics: dict) -> str:
    keys = [k for k in ("ndcg@10", "recall@10", "mrr@10", "ndcg@3", "recall@3") if k in metrics]
    return f"{label}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def run_mine(args) -> int:
    from cmdrec.data.mining import mine_pairs, write_mined
    from cmdrec.data.presets import noise_commands
    from cmdrec.data.readers import read_events
    from cmdrec.data.sessions import split_sessions

    config = _config(args)
    events, _ = read_events(config.source)
    sessions = split_sessions(events, config.processing.session_gap_minutes)
    pairs = mine_pairs(sessions, args.window, args.min_count)
    out = args.out or str(Path(config.processed_dir) / "mining")
    processing = config.processing
    ranks = write_mined(pairs, out, args.top, noise_commands(processing.noise_preset, processing.noise_commands))
    for row in pairs.head(10).iter_rows(named=True):
        print(
            f"{row['rank']:>4}. {row['accompanying']} with {row['main']}: confidence {row['confidence']:.3f}, "
            f"lift {row['lift']:.1f}, {row['together']:,} of {row['occurrences']:,}"
        )
    if ranks:
        found = sorted((v["rank"], k) for k, v in ranks.items() if v)
        print(f"noise commands of the config among the candidates: {len(found)} of {len(ranks)}, at ranks "
              f"{[r for r, _ in found]}")  # fmt: skip
    print(f"wrote {out}/redundant_pairs.md and redundant_pairs.parquet ({pairs.height:,} pairs)")
    return 0


def run_plot(args) -> int:
    from cmdrec.plots import plot_data, plot_embeddings

    out = args.out or str(Path(args.path) / "plots")
    written = (plot_data if args.what == "data" else plot_embeddings)(args.path, out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_vocab(args) -> int:
    import polars as pl

    from cmdrec.data.workflow import vocabulary

    table = vocabulary(args.path)
    if args.search:
        text = args.search.lower()
        table = table.filter(
            pl.col("command").str.to_lowercase().str.contains(text, literal=True)
            | pl.col("category").fill_null("").str.to_lowercase().str.contains(text, literal=True)
        )
    if args.csv:
        table.write_csv(args.csv)
        print(f"wrote {table.height} commands to {args.csv}")
        return 0
    in_vocabulary = table.filter(pl.col("maps_to").is_null())
    rows = [
        (
            row["id"],
            row["command"] if row["maps_to"] is None else f"{row['command']} (-> {row['maps_to']})",
            row["category"] or "-",
            "-" if row["train_count"] is None else f"{row['train_count']:,}",
        )
        for row in table.iter_rows(named=True)
    ]
    name_width = max([len("command"), *(len(r[1]) for r in rows)]) + 2
    category_width = max([len("category"), *(len(r[2]) for r in rows)]) + 2
    print(f"{'id':>5}  {'command':<{name_width}}{'category':<{category_width}}{'train count':>12}")
    for number, name, category, count in rows:
        print(f"{number:>5}  {name:<{name_width}}{category:<{category_width}}{count:>12}")
    print(f"{in_vocabulary.height} commands with ids, {table.height - in_vocabulary.height} mapped to the OOV id")
    return 0


def run_sweep_command(args) -> int:
    from cmdrec.training.sweep import Sweep, run_sweep

    if args.trials < 1 or args.jobs < 1 or args.top < 1 or args.seeds < 1:
        raise InputError("--trials, --jobs, --top and --seeds must be at least 1")
    sweep = Sweep(
        args.config,
        args.overrides,
        args.space,
        args.study or Path(args.config).stem,
        storage=args.storage,
        pruner=args.pruner,
        top=args.top,
        seeds=args.seeds,
    )
    if args.no_finish:
        sweep.optimize(args.trials)
        return 0
    summary = run_sweep(sweep, args.trials, args.jobs)
    best = summary["best"]
    states = {}
    for row in summary["trials"]:
        states[row["state"]] = states.get(row["state"], 0) + 1
    print(f"study {summary['study']}: {', '.join(f'{n} {state}' for state, n in states.items())}")
    print(
        f"best: trial {best['trial']} ({best['run']}), valid {summary['monitor']} {best['mean']:.4f} "
        f"± {best['std']:.4f} over {len(best['valid'])} seed(s): {best['params']}"
    )
    print(f"wrote {summary['best_config']} (cmdrec train --config it), trials.csv, trials.md, sweep.json and plots")
    return 0


COMMANDS = {
    "sweep": run_sweep_command,
    "vocab": run_vocab,
    "mine": run_mine,
    "plot": run_plot,
    "sample": run_sample,
    "process": run_process,
    "preprocess": run_preprocess,
    "quickstart": run_quickstart,
    "embed": run_embed,
    "train": run_train,
    "evaluate": run_evaluate,
    "runs": run_runs,
    "export": run_export,
    "recommend": run_recommend,
    "serve": run_serve,
    "predict": run_predict,
    "watch": run_watch,
    "baselines": run_baselines,
    "compare": run_compare_command,
}

if __name__ == "__main__":
    raise SystemExit(main())

"""Commands on models: train, evaluate, export, recommend, runs."""

from __future__ import annotations

import sys
from pathlib import Path

from cmdrec.cli.common import metrics_line, parse_attributes
from cmdrec.config import apply_overrides, from_dict, to_dict
from cmdrec.errors import InputError


def add_commands(sub) -> None:
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
    train.set_defaults(handler=run_train)

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
    evaluate.set_defaults(handler=run_evaluate)

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
    export.set_defaults(handler=run_export)

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
    recommend.set_defaults(handler=run_recommend)

    runs = sub.add_parser("runs", help="list runs with their state, last step and best validation metric")
    runs.add_argument("runs_dir_arg", nargs="?", default=None, metavar="RUNS_DIR", help="default: runs")
    runs.add_argument("--runs-dir", default=None)
    runs.set_defaults(handler=run_runs)


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
        print(metrics_line(f"{config.name} test", result["test"]))
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
    print(metrics_line(f"{Path(args.run).name} {args.split} ({eval_config.positions})", result))
    if args.analysis is not None:
        from cmdrec.experiments.analysis import analyse

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
    attributes = parse_attributes(args.attribute)
    answer = Predictor(args.run, args.device).recommend(args.history, args.k, timestamps, args.exclude_seen, attributes)
    if answer.unknown_commands:
        print(
            f"not in the vocabulary, read as out-of-vocabulary: {', '.join(answer.unknown_commands)}", file=sys.stderr
        )
    print(f"{'rank':>4}  {'command':<40}score (the model's logit: higher is likelier; not a probability)")
    for rank, (command, score) in enumerate(zip(answer.commands, answer.scores, strict=False), 1):
        print(f"{rank:>4}  {command:<40}{score:.4f}")
    return 0


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

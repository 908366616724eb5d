"""Commands of the research harness: baselines, compare, plot, sweep."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmdrec.cli.common import BASELINE_CONFIGS, metrics_line
from cmdrec.errors import InputError


def add_commands(sub) -> None:
    suite = sub.add_parser("baselines", help="train and evaluate the baseline suite; write a results table")
    suite.add_argument(
        "--configs", nargs="+", default=None, help=f"run configs (default: every YAML in {BASELINE_CONFIGS})"
    )
    suite.add_argument("--out", default=None, help="where results.md/json go (default: <runs_dir>/<suite>)")
    suite.add_argument("--title", default="Baselines")
    suite.add_argument(
        "overrides", nargs="*", help="overrides applied to every config, e.g. data_dir=outputs/vs/preprocessed"
    )
    suite.set_defaults(handler=run_baselines)

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
    compare.set_defaults(handler=run_compare_command)

    plot = sub.add_parser(
        "plot", help="pictures: a processed log's data, a model's command embeddings, its attention over a history"
    )
    plot.add_argument("what", choices=["data", "embeddings", "attention"])
    plot.add_argument("path", help="data: a processed directory; embeddings, attention: a run or a bundle")
    plot.add_argument("--history", nargs="+", default=None, help="attention: command names, oldest first")
    plot.add_argument("--out", default=None, help="default: PATH/plots")
    plot.set_defaults(handler=run_plot)

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
    sweep.set_defaults(handler=run_sweep_command)


def run_baselines(args) -> int:
    from cmdrec.experiments.suite import run_suite

    paths = args.configs or sorted(str(p) for p in Path(BASELINE_CONFIGS).glob("*.yaml"))
    if not paths:
        raise InputError(f"no run configs given and none found in {BASELINE_CONFIGS}")
    configs = [suite_config(path, args.overrides) for path in paths]
    out = args.out or str(Path(configs[0].runs_dir) / "baselines")
    rows = run_suite(configs, out, args.title)
    for row in rows:
        print(metrics_line(f"{row['model']} test (last item)", row["test_last"]))
    print(f"wrote {out}/results.md and {out}/results.json")
    return 0


def run_compare_command(args) -> int:
    from cmdrec.experiments.compare import run_compare

    paths = (
        args.baselines if args.baselines is not None else sorted(str(p) for p in Path(BASELINE_CONFIGS).glob("*.yaml"))
    )
    report = run_compare(
        suite_config(args.full, args.overrides),
        [suite_config(p, args.overrides) for p in paths],
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


def run_plot(args) -> int:
    from cmdrec.experiments.plots import plot_attention, plot_data, plot_embeddings

    out = args.out or str(Path(args.path) / "plots")
    if args.what == "attention":
        if not args.history:
            raise InputError("cmdrec plot attention needs --history COMMAND ...")
        written = plot_attention(args.path, args.history, out)
    else:
        written = (plot_data if args.what == "data" else plot_embeddings)(args.path, out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_sweep_command(args) -> int:
    from cmdrec.experiments.sweep import Sweep, run_sweep

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


def suite_config(path: str, overrides: list[str]):
    """One config of a suite, with the overrides given for all of them; an override of a model section
    the config's backbone does not have (model.layers.* for a count baseline) does not apply to it."""
    from cmdrec.config import MODEL_SECTIONS, load_run_config
    from cmdrec.config.run import current_spelling
    from cmdrec.models.registry import component

    overrides = current_spelling(list(overrides))
    backbone = load_run_config(path, [o for o in overrides if o.startswith("model.backbone=")]).model.backbone
    sections = component(backbone).sections

    def applies(override: str) -> bool:
        parts = override.partition("=")[0].split(".")
        return not (parts[0] == "model" and len(parts) > 2 and parts[1] in MODEL_SECTIONS and parts[1] not in sections)

    return load_run_config(path, [o for o in overrides if applies(o)])

"""The full model against the baselines on one split, over several seeds, with an ablation
(the full model minus each module in turn), metrics by command-frequency bucket, and plots.

Nothing here is tuned to flatter a module: an ablation row that beats the full model is reported
as it is."""

from __future__ import annotations

import csv
import dataclasses
import logging
import multiprocessing
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from cmdrec.config import LossConfig, RunConfig, TextConfig, to_dict
from cmdrec.data.dataset import PreparedDataset
from cmdrec.errors import InputError
from cmdrec.experiments.suite import METRIC_ORDER, machine
from cmdrec.io import write_json_atomic, write_text_atomic
from cmdrec.models.registry import component
from cmdrec.plugins import load_plugins
from cmdrec.text.pipeline import embed_commands
from cmdrec.training.evaluate import evaluate_run
from cmdrec.training.loop import train
from cmdrec.training.metrics import BUCKETS

log = logging.getLogger(__name__)


def _without(config: RunConfig, module: str) -> RunConfig | None:
    """The full config with one module removed, or None when the full model does not use it."""
    model, loss = config.model, config.loss
    changes = {
        "fusion": model.fusion != "sum" and {"model": dataclasses.replace(model, fusion="sum")},
        "multi-task": bool(model.aux_tasks) and {"model": dataclasses.replace(model, aux_tasks=())},
        "focal loss": loss.name == "focal" and {"loss": dataclasses.replace(loss, name="cross_entropy")},
        "mixture of experts": component(model.backbone).experts
        and {
            "model": dataclasses.replace(model, backbone=component(model.backbone).dense_counterpart, experts=None),
            "loss": LossConfig(**{**dataclasses.asdict(loss), "moe_balance": 0.0}),
        },
        "text embeddings": model.text_embeddings and {"model": dataclasses.replace(model, text_embeddings=False)},
        "history copy": model.history_copy and {"model": dataclasses.replace(model, history_copy=False)},
    }[module]
    return dataclasses.replace(config, name=f"{config.name} - {module}", **changes) if changes else None


ABLATIONS = ("fusion", "multi-task", "focal loss", "mixture of experts", "text embeddings", "history copy")


def run_compare(
    full: RunConfig,
    baselines: list[RunConfig],
    seeds: list[int],
    out_dir: str | Path,
    show_progress: bool = False,
    ablation_seeds: list[int] | None = None,
    ablations: list[str] | None = None,
    jobs: int = 1,
) -> dict:
    """`ablation_seeds` (default: `seeds`) lets the ablation rows run on fewer seeds when compute is
    short, or on none (`[]`: no ablation rows); each row says how many seeds it averages. `ablations`
    (default: every module in ABLATIONS) names the modules removed in turn. The full model and the
    baselines run first, so the headline comparison exists before the ablations start; finished runs
    are re-read, so a later call on the same `out_dir` adds ablation rows without retraining the rest.
    `jobs` > 1 trains that many runs at a time, each in its own process."""
    unknown = sorted(set(ablations or ()) - set(ABLATIONS))
    if unknown:
        raise InputError(f"ablations: unknown module(s) {unknown}; known: {list(ABLATIONS)}")
    if jobs < 1:
        raise InputError(f"jobs: {jobs} must be at least 1")
    out = Path(out_dir)
    if full.model.text_embeddings and not PreparedDataset(full.data_dir).text_embeddings_path.is_file():
        log.info("no text embeddings in %s: embedding with the default offline provider", full.data_dir)
        embed_commands(full.data_dir, TextConfig(cache_dir=str(out / "text-cache")))
    ablation_seeds = seeds if ablation_seeds is None else ablation_seeds
    ablated = (
        [c for c in (_without(full, m) for m in ablations or ABLATIONS) if c is not None] if ablation_seeds else []
    )
    results: dict[str, dict] = {}
    plan = [(config, seeds) for config in [full, *baselines]] + [(config, ablation_seeds) for config in ablated]
    runs = [
        (
            config,
            seed,
            dataclasses.replace(
                config,
                name=f"{_slug(config.name)}-seed{seed}",
                runs_dir=str(out / "runs"),
                training=dataclasses.replace(config.training, seed=seed),
            ),
        )
        for config, config_seeds in plan
        for seed in config_seeds
    ]
    trained = _train_all([run for _, _, run in runs], jobs, show_progress)
    for (config, seed, run), result in zip(runs, trained, strict=False):
        test = evaluate_run(Path(run.runs_dir) / run.name)
        entry = results.setdefault(config.name, {"role": _role(config, full, ablated), "seeds": {}})
        entry["seeds"][seed] = {
            **{m: test[m] for m in METRIC_ORDER},
            "buckets": {
                b: {m: test[f"{b}/{m}"] for m in ("ndcg@10", "recall@10")} | {"positions": test[f"{b}/positions"]}
                for b in BUCKETS
                if f"{b}/positions" in test
            },
            "train_seconds": result.get("train_seconds"),
            "run": str(Path(run.runs_dir) / run.name),
        }
    for entry in results.values():
        entry["mean"] = {m: statistics.fmean(s[m] for s in entry["seeds"].values()) for m in METRIC_ORDER}
        entry["std"] = {m: statistics.pstdev([s[m] for s in entry["seeds"].values()]) for m in METRIC_ORDER}
        entry["buckets_mean"] = {
            b: statistics.fmean(s["buckets"][b]["ndcg@10"] for s in entry["seeds"].values())
            for b in BUCKETS
            if all(b in s["buckets"] for s in entry["seeds"].values())
        }
    best_baseline = max(
        (n for n, e in results.items() if e["role"] == "baseline"),
        key=lambda n: results[n]["mean"]["ndcg@10"],
        default=None,
    )
    summary = {"full": full.name, "best_baseline": best_baseline}
    if best_baseline:
        base, mine = results[best_baseline], results[full.name]
        summary["relative_ndcg@10_gain"] = mine["mean"]["ndcg@10"] / base["mean"]["ndcg@10"] - 1
        summary["bucket_gain"] = {
            b: mine["buckets_mean"][b] - base["buckets_mean"].get(b, 0.0) for b in mine["buckets_mean"]
        }
    ordered = {c.name: results[c.name] for c in [full, *ablated, *baselines]}
    report = {
        "summary": summary,
        "seeds": seeds,
        "ablation_seeds": ablation_seeds,
        "models": ordered,
        "full_config": to_dict(full),
        "machine": machine(),
    }
    report["analysis"] = _analyses(report, out)
    write_json_atomic(out / "compare.json", report)
    write_text_atomic(out / "compare.md", _markdown(report) + _analysis_markdown(report["analysis"]))
    _plots(report, out)
    return report


def _analyses(report: dict, out: Path) -> dict:
    """Where the full model and the best baseline go wrong (`cmdrec evaluate --analysis`), on their
    first seed's test split, in `analysis/NAME/`."""
    from cmdrec.artifacts.bundle import load_model_dir
    from cmdrec.experiments.analysis import analyse

    analyses = {}
    for name in filter(None, (report["summary"]["full"], report["summary"]["best_baseline"])):
        run = next(iter(report["models"][name]["seeds"].values()))["run"]
        try:
            model, config = load_model_dir(run)
            summary = analyse(model, config, "test", out / "analysis" / _slug(name))
        except InputError as error:  # a model the analysis cannot read (mlm, workflow tokens)
            analyses[name] = {"skipped": str(error)}
            continue
        analyses[name] = {
            "by_history_length": summary["by_history_length"],
            "most_missed": summary["most_missed"][:5],
            "category_accuracy": summary.get("category_confusion", {}).get("accuracy"),
        }
    return analyses


def _analysis_markdown(analyses: dict) -> str:
    if not analyses:
        return ""
    lines = ["", "## Where they go wrong (first seed, test, every position; files in `analysis/`)", ""]
    for name, entry in analyses.items():
        if "skipped" in entry:
            lines += [f"- {name}: not analysed ({entry['skipped']})", ""]
            continue
        accuracy = entry["category_accuracy"]
        lines += [f"**{name}**" + (f": the top suggestion is in the right category {accuracy:.1%} of the time"
                                   if accuracy is not None else ""), "",
                  "| history length | NDCG@10 | Recall@10 | positions |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
        lines += [f"| {r['history']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['positions']:,} |"
                  for r in entry["by_history_length"]]  # fmt: skip
        missed = ", ".join(f"{r['command']} ({r['misses']:,})" for r in entry["most_missed"])
        lines += ["", f"Most missed: {missed}.", ""]
    return "\n".join(lines)


def _train_all(runs: list[RunConfig], jobs: int, show_progress: bool) -> list[dict]:
    """Train the runs in order, `jobs` at a time: the small models compared here leave a GPU, or
    all but one core, idle. Spawned processes, since CUDA cannot be forked once initialised."""
    overall = tqdm(total=len(runs), desc="runs", unit="run", disable=not show_progress)  # done / total, ETA
    if jobs == 1 or len(runs) <= 1:
        results = []
        for run in runs:
            overall.set_postfix_str(run.name)
            results.append(train(run, show_progress=show_progress))
            overall.update()
        overall.close()
        return results
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_quietly, run) for run in runs]
        for _ in as_completed(futures):
            overall.update()
        overall.close()
        return [f.result() for f in futures]


def _train_quietly(run: RunConfig) -> dict:
    load_plugins()  # a spawned process: the components of plugins are registered again here
    return train(run, show_progress=False)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name.replace(" - ", "-minus-"))


def _role(config: RunConfig, full: RunConfig, ablated: list[RunConfig]) -> str:
    return "full" if config is full else "ablation" if config in ablated else "baseline"


def _markdown(report: dict) -> str:
    seeds = report["seeds"]
    lines = [
        f"## Full model vs baselines (seeds {seeds}, ablations seeds {report['ablation_seeds']}); mean ± std "
        f"over seeds, last item of each test session",
        "",
        "| model | role | seeds | " + " | ".join(METRIC_ORDER) + " |",
        "|" + " --- |" * (len(METRIC_ORDER) + 3),
    ]
    for name, entry in report["models"].items():
        cells = " | ".join(f"{entry['mean'][m]:.4f} ± {entry['std'][m]:.4f}" for m in METRIC_ORDER)
        lines.append(f"| {name} | {entry['role']} | {len(entry['seeds'])} | {cells} |")
    lines += [
        "",
        "### NDCG@10 by command-frequency bucket (head: commands making the first 50% of training events, "
        "torso: next 30%, tail: the rest)",
        "",
        "| model | " + " | ".join(buckets := _measured_buckets(report)) + " |",
        "|" + " --- |" * (len(buckets) + 1),
    ]
    for name, entry in report["models"].items():
        lines.append(
            f"| {name} | " + " | ".join(f"{entry['buckets_mean'].get(b, float('nan')):.4f}" for b in buckets) + " |"
        )
    summary = report["summary"]
    if summary.get("best_baseline"):
        lines += [
            "",
            f"Full model vs best baseline ({summary['best_baseline']}): NDCG@10 "
            f"{summary['relative_ndcg@10_gain']:+.1%} relative; "
            "by bucket (absolute NDCG@10 difference): "
            + ", ".join(f"{b} {g:+.4f}" for b, g in summary["bucket_gain"].items()),
        ]
    return "\n".join(lines) + "\n"


def _measured_buckets(report: dict) -> list[str]:
    """The buckets some model has targets in (no `unseen` column when every command was trained)."""
    return [b for b in BUCKETS if any(b in entry["buckets_mean"] for entry in report["models"].values())]


def model_colours(names: list[str]) -> dict[str, str]:
    """One colour per model, the same in every picture of a report (the full model first, in red)."""
    palette = ["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink",
               "tab:gray", "tab:olive", "tab:cyan"]  # fmt: skip
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


def _plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    means = [report["models"][n]["mean"]["ndcg@10"] for n in names]
    stds = [report["models"][n]["std"]["ndcg@10"] for n in names]
    colour = model_colours(names)
    figure, axis = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    axis.barh(names, means, xerr=stds, color=[colour[n] for n in names])
    axis.invert_yaxis()
    axis.set_xlabel("NDCG@10 (test, last item)")
    figure.tight_layout()
    figure.savefig(out / "ndcg10.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(names), 1)
    buckets = _measured_buckets(report)
    for index, name in enumerate(names):
        values = [report["models"][name]["buckets_mean"].get(b, 0.0) for b in buckets]
        axis.bar([i + index * width for i in range(len(buckets))], values, width, label=name, color=colour[name])
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(buckets))], buckets)
    axis.set_ylabel("NDCG@10")
    axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(out / "buckets.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(8, 4))
    for name, entry in report["models"].items():
        first = next(iter(entry["seeds"].values()))
        path = Path(first["run"]) / "logs" / "valid.csv"
        if path.is_file():
            with path.open() as handle:
                rows = list(csv.DictReader(handle))
            if rows:
                epochs, scores = [int(r["epoch"]) + 1 for r in rows], [float(r["ndcg@10"]) for r in rows]
                axis.plot(epochs, scores, marker="o", label=name, color=colour[name])
    axis.set_xlabel("epoch")
    axis.set_ylabel("valid NDCG@10")
    axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(out / "learning_curves.png", dpi=120)
    plt.close(figure)

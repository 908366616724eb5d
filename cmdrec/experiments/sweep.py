"""Hyperparameter sweeps on Optuna: `cmdrec sweep --config C --space S.yaml --trials N`.

Each trial is an ordinary run (`<runs_dir>/sweeps/<study>/trial-0007`) trained with the sampled
settings as overrides; the trainer's per-validation hook reports to Optuna, which may prune it. The
study lives in an Optuna storage (SQLite beside the runs by default), so a stopped sweep continues
when the command is run again and several processes can share one study: a trial whose process
died is tried again with the same settings under the same run name, so its run resumes from its
last checkpoint; a pruned trial stays pruned. When the trials are done, the best few (by
validation) are re-run with more seeds before one is called best: one seed's noise is about the
size of the differences a sweep finds.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cmdrec.artifacts.loading import RESULTS
from cmdrec.artifacts.runs import RunDir, process_alive
from cmdrec.config import RunConfig, apply_overrides, from_dict, load_yaml, to_dict
from cmdrec.config.run import current_spelling
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic, write_text_atomic
from cmdrec.training.loop import train
from cmdrec.training.trainer import Callback, Trainer

log = logging.getLogger(__name__)

PRUNERS = ("median", "halving", "none")


# ---------------------------------------------------------------- the search space


@dataclass(frozen=True)
class Parameter:
    """One dotted config key and the values a trial may give it."""

    key: str
    kind: str  # "categorical", "int" or "float"
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def load_space(path: str | Path, base: dict) -> list[Parameter]:
    """The search space of a YAML file, each key checked against the run config it will override:
    `model.d_model: [32, 64, 128]` (categorical), `training.learning_rate: {low: 1e-4, high: 3e-3,
    log: true}` (float; int when both bounds are integers), `{low: .., high: .., step: ..}`."""
    raw = load_yaml(path)
    parameters = []
    for key, spec in raw.items():
        where = f"{path}: {key}"
        if isinstance(spec, list):
            if not spec:
                raise InputError(f"{where}: an empty list of choices")
            parameter = Parameter(key, "categorical", tuple(spec))
        elif isinstance(spec, dict):
            unknown = sorted(set(spec) - {"low", "high", "log", "step"})
            if unknown or "low" not in spec or "high" not in spec:
                raise InputError(f"{where}: expected {{low, high[, log][, step]}} or a list of choices, got {spec!r}")
            low, high = spec["low"], spec["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
                raise InputError(f"{where}: low and high must be numbers with low < high, got {low!r}, {high!r}")
            kind = "int" if all(isinstance(v, int) for v in (low, high)) else "float"
            if spec.get("log") and low <= 0:
                raise InputError(f"{where}: a log scale needs low > 0")
            parameter = Parameter(key, kind, (), low, high, bool(spec.get("log", False)), spec.get("step"))
        else:
            raise InputError(f"{where}: expected a list of choices or {{low, high}}, got {spec!r}")
        probe = parameter.choices if parameter.kind == "categorical" else (parameter.low, parameter.high)
        for value in probe:  # every value the sweep may set must make a valid config
            try:
                config_from(base, {key: _typed(parameter, value)}, "probe")
            except InputError as error:
                raise InputError(f"{where}: {error}") from None
        parameters.append(parameter)
    if not parameters:
        raise InputError(f"{path}: the search space is empty")
    return parameters


def _typed(parameter: Parameter, value):
    return int(value) if parameter.kind == "int" else value


def config_from(base: dict, params: dict, name: str, seed: int | None = None) -> RunConfig:
    data = apply_overrides(
        base, current_spelling([f"{k}={json.dumps(v)}" for k, v in params.items()]) + [f"name={name}"]
    )
    if seed is not None:
        data = apply_overrides(data, [f"training.seed={seed}"])
    return from_dict(RunConfig, data)


# ---------------------------------------------------------------- pruning through the trainer's hook


class ReportToTrial(Callback):
    """Each validation's monitored figure goes to the trial; a trial Optuna prunes stops."""

    def __init__(self, trial, monitor: str):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_validation(self, trainer: Trainer, metrics: dict) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            return
        self.trial.report(float(value), trainer.state.epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop(f"pruned by the sweep at epoch {trainer.state.epoch}")


# ---------------------------------------------------------------- the sweep


@dataclass
class Sweep:
    config_path: str
    overrides: list[str]
    space_path: str
    study_name: str
    storage: str | None = None
    pruner: str = "median"
    seed: int = 0
    top: int = 3
    seeds: int = 3
    show_progress: bool = False

    def __post_init__(self):
        base = load_yaml(self.config_path) if self.config_path else {}
        self.base = apply_overrides(base, current_spelling(list(self.overrides)))
        base_config = from_dict(RunConfig, apply_overrides(self.base, ["name=probe"]))
        self.monitor = base_config.training.monitor
        self.higher_is_better = base_config.training.monitor_higher_is_better
        self.base_seed = base_config.training.seed
        self.root = Path(base_config.runs_dir) / "sweeps" / self.study_name
        self.space = load_space(self.space_path, self.base)
        if self.pruner not in PRUNERS:
            raise InputError(f"--pruner {self.pruner!r}: expected one of {list(PRUNERS)}")

    # ------------------------------------------------------------ study

    def study(self, pruner=None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.root.mkdir(parents=True, exist_ok=True)
        storage = self.storage or f"sqlite:///{(self.root / 'study.db').resolve()}"
        if pruner is None:
            pruner = {
                "median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                "halving": optuna.pruners.SuccessiveHalvingPruner(),
                "none": optuna.pruners.NopPruner(),
            }[self.pruner]
        return optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            load_if_exists=True,
            direction="maximize" if self.higher_is_better else "minimize",
            sampler=optuna.samplers.TPESampler(seed=self.seed),
            pruner=pruner,
        )

    def optimize(self, trials: int, pruner=None) -> None:
        """Run trials until the study holds `trials` finished (complete or pruned) ones."""
        from optuna.trial import TrialState

        study = self.study(pruner)
        self._retry_dead_trials(study)
        done = (TrialState.COMPLETE, TrialState.PRUNED)
        while len(study.get_trials(deepcopy=False, states=done)) < trials:
            trial = study.ask()
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("host", socket.gethostname())
            params = {p.key: p.suggest(trial) for p in self.space}
            run_name = trial.user_attrs.get("run") or f"trial-{trial.number:04d}"  # a retried trial keeps its run
            trial.set_user_attr("run", run_name)
            callback = ReportToTrial(trial, self.monitor)
            try:
                config = config_from(self.base, params, self._name(run_name))
                result = train(config, callbacks=[callback], show_progress=self.show_progress)
            except InputError as error:  # settings that do not go together (width and heads): the next trial
                log.warning("trial %d failed: %s", trial.number, error)
                trial.set_user_attr("error", str(error))
                study.tell(trial, state=TrialState.FAIL)
                continue
            except Exception:
                study.tell(trial, state=TrialState.FAIL)
                raise
            if callback.pruned:
                RunDir(self.root, run_name).set_status("pruned")
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, float(result["valid"][self.monitor]))

    def _name(self, run_name: str) -> str:
        return f"sweeps/{self.study_name}/{run_name}"

    def _retry_dead_trials(self, study) -> None:
        """A trial left running by a process that died (on this machine) is failed and asked again
        with its settings; it keeps its run name, so its run resumes from the last checkpoint."""
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            here = trial.user_attrs.get("host") == socket.gethostname()
            if not here or process_alive(trial.user_attrs.get("pid")):
                continue
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"run": trial.user_attrs.get("run"), "retry_of": trial.number})
            log.warning("trial %d was left running by a process that died; it is tried again", trial.number)

    # ------------------------------------------------------------ the best, on several seeds

    def finish(self) -> dict:
        """Re-run the top trials with `seeds` seeds; write the best config, the trials table and plots."""
        from optuna.trial import TrialState

        study = self.study()
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise InputError(f"study {self.study_name!r} has no completed trial yet; run more trials")
        ranked = sorted(complete, key=lambda t: t.value, reverse=self.higher_is_better)[: self.top]
        candidates = []
        for trial in ranked:
            values = [trial.value]
            for offset in range(1, self.seeds):
                name = f"{trial.user_attrs['run']}-seed{self.base_seed + offset}"
                config = config_from(self.base, trial.params, self._name(name), seed=self.base_seed + offset)
                values.append(float(self._result(config)["valid"][self.monitor]))
            candidates.append(
                {
                    "trial": trial.number,
                    "run": trial.user_attrs["run"],
                    "params": trial.params,
                    "valid": values,
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
            )
        best = max(candidates, key=lambda c: c["mean"] if self.higher_is_better else -c["mean"])
        best_config = config_from(self.base, best["params"], f"sweep-{self.study_name}-best")
        write_text_atomic(self.root / "best.yaml", yaml.safe_dump(to_dict(best_config), sort_keys=False))
        summary = {
            "study": self.study_name,
            "monitor": self.monitor,
            "trials": self._trials_table(study),
            "top_on_seeds": candidates,
            "best": best,
            "best_config": str(self.root / "best.yaml"),
        }
        write_json_atomic(self.root / "sweep.json", summary)
        self._plots(study)
        return summary

    def _result(self, config: RunConfig) -> dict:
        run = RunDir(config.runs_dir, config.name)
        if run.status().get("state") == "finished" and (run.path / RESULTS).is_file():
            return json.loads((run.path / RESULTS).read_text())
        return train(config, show_progress=self.show_progress)

    def _trials_table(self, study) -> list[dict]:
        rows = [
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "run": t.user_attrs.get("run"),
                **t.params,
            }
            for t in study.get_trials(deepcopy=False)
        ]
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with (self.root / "trials.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
        write_text_atomic(self.root / "trials.md", "\n".join(lines) + "\n")
        return rows

    def _plots(self, study) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances
        except ImportError:
            log.warning("matplotlib is not installed: no sweep plots (pip install 'cmdrec[report]')")
            return
        plots = [("optimization_history.png", plot_optimization_history)]
        if len(study.get_trials(deepcopy=False)) > 1 and len(self.space) > 1:
            plots.append(("param_importances.png", plot_param_importances))
        import warnings

        from optuna.exceptions import ExperimentalWarning

        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        for name, plot in plots:
            try:
                axes = plot(study)
            except (ValueError, RuntimeError) as error:  # too few completed trials for importances
                log.warning("no %s: %s", name, error)
                continue
            axes.figure.tight_layout()
            axes.figure.savefig(self.root / name, dpi=120)
            plt.close(axes.figure)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def run_sweep(sweep: Sweep, trials: int, jobs: int = 1) -> dict:
    """`jobs` processes share the study: this one and `jobs - 1` workers that only run trials."""
    argv = [sys.executable, "-m", "cmdrec", "sweep", "--config", sweep.config_path, "--space", sweep.space_path]
    argv += ["--trials", str(trials), "--study", sweep.study_name, "--pruner", sweep.pruner, "--no-finish"]
    argv += [*(["--storage", sweep.storage] if sweep.storage else []), *sweep.overrides]
    workers = [subprocess.Popen(argv) for _ in range(jobs - 1)]
    sweep.optimize(trials)
    failed = [w.args for w in workers if w.wait() != 0]
    if failed:
        raise InputError(f"{len(failed)} sweep worker process(es) failed; see their output above")
    return sweep.finish()

"""`cmdrec sweep` on tiny trials: the search space, a resumed study, pruning through the trainer's
hook, a trial whose process died, and the best config round trip."""

import json
import os
import socket
import subprocess

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from cmdrec.cli import main  # noqa: E402
from cmdrec.config import load_run_config  # noqa: E402
from cmdrec.errors import InputError  # noqa: E402
from cmdrec.experiments.sweep import Sweep, load_space  # noqa: E402

SPACE = {"training.learning_rate": {"low": 1e-3, "high": 5e-3, "log": True}, "model.d_model": [16, 32]}


@pytest.fixture
def setup(tiny_data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "data_dir": str(tiny_data),
                "runs_dir": str(tmp_path / "runs"),
                "model": {"backbone": "gpt2", "n_layers": 1, "max_length": 10},
                "training": {"epochs": 2, "batch_size": 32, "num_threads": 1, "warmup_steps": 1},
            }
        )
    )
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    return config, space, tmp_path


def sweep(setup, **kwargs) -> Sweep:
    config, space, _ = setup
    return Sweep(str(config), [], str(space), "study", **({"top": 1, "seeds": 1} | kwargs))


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_the_search_space_is_typed_and_checked_against_the_config(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump({"model.n_layers": {"low": 1, "high": 3}, "model.dropout": {"low": 0.0, "high": 0.5}, **SPACE})
    )
    kinds = {p.key: p.kind for p in load_space(path, {})}
    assert kinds == {
        "model.n_layers": "int",
        "model.dropout": "float",
        "training.learning_rate": "float",
        "model.d_model": "categorical",
    }
    for bad, message in (
        ({"model.widht": [1, 2]}, r"space.yaml: model.widht: unknown config key"),
        ({"model.dropout": {"low": 0.5, "high": 0.1}}, r"model.dropout: low and high must be numbers with low < high"),
        ({"model.dropout": {"low": 0.1, "hgh": 0.2}}, r"model.dropout: expected \{low, high"),
        ({"training.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, r"a log scale needs low > 0"),
        ({"model.masking": ["clm", "sideways"]}, r"model.masking: 'sideways' is not one of"),
    ):
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(InputError, match=message):
            load_space(path, {})


def test_a_study_resumes_where_it_stopped_and_writes_a_best_config_train_accepts(setup):
    _, _, root = setup
    first = sweep(setup, pruner="none")
    first.optimize(2)
    trial_dir = root / "runs" / "sweeps" / "study" / "trial-0000"
    finished = (trial_dir / "results.json").stat().st_mtime_ns
    second = sweep(setup, pruner="none", top=2, seeds=2)
    second.optimize(3)  # one more trial, the two finished ones left alone
    assert states(second.study()) == ["COMPLETE"] * 3
    assert (trial_dir / "results.json").stat().st_mtime_ns == finished
    summary = second.finish()
    assert len(summary["top_on_seeds"]) == 2 and all(len(c["valid"]) == 2 for c in summary["top_on_seeds"])
    best = load_run_config(summary["best_config"])  # what `cmdrec train --config best.yaml` loads
    assert best.model.d_model == summary["best"]["params"]["model.d_model"]
    assert best.training.learning_rate == pytest.approx(summary["best"]["params"]["training.learning_rate"])
    folder = root / "runs" / "sweeps" / "study"
    assert (folder / "trials.csv").is_file() and (folder / "trials.md").read_text().count("complete") == 3
    assert (folder / "optimization_history.png").stat().st_size > 0


def test_a_pruned_trial_stops_early_and_stays_pruned(setup):
    _, _, root = setup
    never_good_enough = optuna.pruners.ThresholdPruner(lower=2.0)  # NDCG never reaches 2: prune at once
    sweep(setup).optimize(2, pruner=never_good_enough)
    study = sweep(setup).study()
    assert states(study) == ["PRUNED", "PRUNED"]
    run = root / "runs" / "sweeps" / "study" / "trial-0000"
    assert json.loads((run / "status.json").read_text())["state"] == "pruned"
    log = (run / "logs" / "valid.csv").read_text().strip().splitlines()
    assert len(log) == 2  # the header and the first validation: stopped after epoch 1 of 2
    sweep(setup).optimize(2, pruner=never_good_enough)  # nothing to do: pruned trials count as finished
    assert states(sweep(setup).study()) == ["PRUNED", "PRUNED"]


def test_a_trial_whose_process_died_is_tried_again_with_its_settings_and_run(setup):
    study = sweep(setup).study()
    dead = subprocess.Popen(["true"])
    dead.wait()
    trial = study.ask(
        {
            "training.learning_rate": optuna.distributions.FloatDistribution(1e-3, 5e-3, log=True),
            "model.d_model": optuna.distributions.CategoricalDistribution([16, 32]),
        }
    )
    trial.set_user_attr("pid", dead.pid)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("run", "trial-0000")
    assert not os.path.exists(f"/proc/{dead.pid}")
    sweep(setup).optimize(1)
    trials = sweep(setup).study().get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trial.params and trials[1].user_attrs["run"] == "trial-0000"
    assert trials[1].user_attrs["retry_of"] == 0


def test_the_sweep_command(setup, capsys):
    config, space, root = setup
    code = main(["sweep", "--config", str(config), "--space", str(space), "--trials", "3", "--jobs", "2",
                 "--top", "1", "--seeds", "1", "--pruner", "none", "training.epochs=1"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    # two processes shared the study: together they reached the trials asked, each trial run once
    assert "study run: 3 complete" in out or "study run: 4 complete" in out, out
    runs = sorted(p.name for p in (root / "runs" / "sweeps" / "run").glob("trial-*"))
    assert len(runs) == len(set(runs)) >= 3
    assert (root / "runs" / "sweeps" / "run" / "best.yaml").is_file()

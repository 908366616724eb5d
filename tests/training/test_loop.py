import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cmdrec.artifacts.checkpoint import list_checkpoints
from cmdrec.artifacts.loading import load_trained
from cmdrec.artifacts.runs import RunDir, list_runs
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic
from cmdrec.models.registry import COMPONENTS
from cmdrec.training.loop import train
from cmdrec.training.trainer import Callback
from tests.conftest import tiny_run

METRICS = [f"{m}@{k}" for k in (3, 5, 10) for m in ("ndcg", "recall", "mrr")]


class Kill(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, row):
        if trainer.state.step == self.step:
            raise Kill


def final_weights(run_dir):
    return load_file(str(list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors"))


@pytest.mark.parametrize("model", [{"backbone": "gpt2"}, {"backbone": "bert", "masking": "mlm"}])
def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(tiny_data, tmp_path, model):
    sections = {"model": model, "training": {"checkpoint_every_steps": 3, "ema_decay": 0.9, "grad_accumulation": 2}}
    straight = train(tiny_run(tiny_data, tmp_path, "straight", **sections), show_progress=False)
    with pytest.raises(Kill):
        train(tiny_run(tiny_data, tmp_path, "killed", **sections), callbacks=[KillAt(5)], show_progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["00000003"]
    assert {r["name"]: r["state"] for r in list_runs(tmp_path)}["killed"] == "resumable"
    resumed = train(tiny_run(tiny_data, tmp_path, "killed", **sections), show_progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in METRICS:
        assert resumed["test"][name] == straight["test"][name]
    steps = [int(line.split(",")[0]) for line in (tmp_path / "killed/logs/train.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, straight["steps"] + 1))  # the replayed steps are logged once


# "pretrained" needs a checkpoint on disk: tests/llm/test_adapters.py trains it on a tiny Llama
@pytest.mark.parametrize("backbone", sorted(n for n, c in COMPONENTS.items() if not c.pretrained_weights))
def test_every_registered_model_trains_and_evaluates(tiny_data, tmp_path, backbone):
    masking = "mlm" if backbone == "bert" else "clm"
    result = train(
        tiny_run(
            tiny_data, tmp_path, backbone, model={"backbone": backbone, "masking": masking}, training={"epochs": 1}
        ),
        show_progress=False,
    )
    for split in ("valid", "test"):
        assert all(0.0 <= result[split][m] <= 1.0 for m in METRICS)
        assert result[split]["positions_evaluated"] > 0
    assert result["test"]["ndcg@10"] > 0.05  # even one tiny epoch ranks better than chance (1/40 items)
    written = json.loads((tmp_path / backbone / "results.json").read_text())
    assert written["test"] == result["test"]


def test_run_directory_layout_and_listing(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "layout"), show_progress=False)
    run = tmp_path / "layout"
    assert (run / "config.yaml").is_file() and (run / "logs/train.csv").is_file() and (run / "logs/valid.csv").is_file()
    assert any((run / "tensorboard").iterdir())
    checkpoint = list_checkpoints(run / "checkpoints")[-1]
    assert {p.name for p in checkpoint.iterdir()} >= {
        "model.safetensors",
        "trainer_state.pt",
        "metrics.json",
        "model_config.json",
        "manifest.json",
    }
    [listed] = list_runs(tmp_path)
    assert listed["state"] == "finished" and listed["best"] is not None


def test_load_trained_reproduces_the_test_metrics(tiny_data, tmp_path):
    from cmdrec.data.sequences import SequenceData
    from cmdrec.training.evaluate import evaluate

    result = train(tiny_run(tiny_data, tmp_path, "reload"), show_progress=False)
    model, config = load_trained(tmp_path / "reload")
    data = SequenceData.load(tiny_data, "test", [], config.model.window_length, "eval")
    again = evaluate(model, data, config.model, config.eval, {})
    assert all(again[m] == result["test"][m] for m in METRICS)


def test_existing_run_is_not_overwritten(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "once", training={"epochs": 1}), show_progress=False)
    with pytest.raises(InputError, match="already has checkpoints"):
        train(tiny_run(tiny_data, tmp_path, "once"), resume=False, show_progress=False)


def test_a_run_being_trained_by_another_process_is_refused(tiny_data, tmp_path):
    config = tiny_run(tiny_data, tmp_path, "busy", training={"epochs": 1})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        RunDir(tmp_path, "busy").path.mkdir()
        write_json_atomic(tmp_path / "busy" / "status.json", {"state": "running", "pid": other.pid})
        with pytest.raises(InputError, match=f"being trained by process {other.pid}"):
            train(config, show_progress=False)
    finally:
        other.kill()
        other.wait()
    assert {r["name"]: r["state"] for r in list_runs(tmp_path)}["busy"] == "failed"  # dead trainer, no checkpoint
    assert train(config, show_progress=False)["steps"] > 0


def test_resume_with_another_seed_is_refused(tiny_data, tmp_path):
    with pytest.raises(Kill):
        train(
            tiny_run(tiny_data, tmp_path, "seeded", training={"checkpoint_every_steps": 1}),
            callbacks=[KillAt(2)],
            show_progress=False,
        )
    with pytest.raises(InputError, match="training.seed"):
        train(
            tiny_run(tiny_data, tmp_path, "seeded", training={"checkpoint_every_steps": 1, "seed": 5}),
            show_progress=False,
        )


def test_resuming_with_changed_settings_is_refused_naming_them_and_restart_trains_anew(tiny_data, tmp_path):
    with pytest.raises(Kill):
        train(
            tiny_run(tiny_data, tmp_path, "edited", training={"checkpoint_every_steps": 1}),
            callbacks=[KillAt(2)],
            show_progress=False,
        )
    edited = tiny_run(tiny_data, tmp_path, "edited", model={"dropout": 0.25}, training={"checkpoint_every_steps": 1})
    with pytest.raises(InputError, match=r"other settings \(model.dropout 0.1 -> 0.25\).*another name.*--restart"):
        train(edited, show_progress=False)
    # what does not change what was learned may change: more epochs, patience, threads
    longer = tiny_run(
        tiny_data, tmp_path, "edited", training={"checkpoint_every_steps": 1, "epochs": 3, "num_threads": 1}
    )
    assert train(longer, show_progress=False)["test"]
    restarted = train(edited, restart=True, show_progress=False)
    assert restarted["test"] and RunDir(tmp_path, "edited").read_config()["model"]["dropout"] == 0.25


def test_gpu_only_precision_fails_at_start_on_cpu(tiny_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match="needs a CUDA GPU"):
        train(tiny_run(tiny_data, tmp_path, "bf16", training={"mixed_precision": "bf16"}), show_progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_full_model_trains_in_mixed_precision_on_gpu_and_its_checkpoint_evaluates_alike_on_cpu(
    tiny_data, tmp_path, precision
):
    from cmdrec.config import LossConfig
    from cmdrec.training.evaluate import evaluate_run

    config = tiny_run(
        tiny_data,
        tmp_path,
        f"gpu-{precision}",
        model={
            "backbone": "mixtral",
            "input_features": ("category", "log_time_delta", "position", "hour"),
            "fusion": "attention",
            "aux_tasks": ("category",),
            "n_experts": 4,
            "experts_per_token": 2,
            "history_copy": True,
        },
        training={"device": "cuda", "mixed_precision": precision},
    )
    config = dataclasses.replace(
        config, loss=LossConfig(name="focal", focal_gamma=2.0, aux_weight=0.5, moe_balance=0.01)
    )
    result = train(config, show_progress=False)
    assert 0.05 < result["test"]["ndcg@10"] <= 1
    on_cpu = evaluate_run(tmp_path / f"gpu-{precision}")  # the GPU-trained checkpoint, loaded on the CPU in float32
    assert on_cpu["ndcg@10"] == pytest.approx(result["test"]["ndcg@10"], abs=0.03)


def test_full_model_with_features_fusion_aux_task_focal_loss_and_experts(tiny_data, tmp_path):
    from cmdrec.config import LossConfig

    config = tiny_run(
        tiny_data,
        tmp_path,
        "full",
        model={
            "backbone": "mixtral",
            "input_features": ("category", "log_time_delta", "position", "hour"),
            "fusion": "attention",
            "aux_tasks": ("category",),
            "n_experts": 4,
            "experts_per_token": 2,
        },
    )
    config = dataclasses.replace(
        config, loss=LossConfig(name="focal", focal_gamma=2.0, aux_weight=0.5, moe_balance=0.01)
    )
    result = train(config, show_progress=False)
    assert 0 < result["test"]["ndcg@10"] <= 1
    assert 0 < result["test"]["category/ndcg@3"] <= 1  # metrics per task
    assert "category/recall@10" in result["valid"]


def test_history_copy_trains_evaluates_and_reloads(tiny_data, tmp_path):
    result = train(tiny_run(tiny_data, tmp_path, "copy", model={"history_copy": True}), show_progress=False)
    assert 0.05 < result["test"]["ndcg@10"] <= 1
    assert load_trained(tmp_path / "copy")[0].history_copy is not None


def test_objective_adds_weighted_auxiliary_and_balance_losses():
    from cmdrec.batch import Batch
    from cmdrec.config import LossConfig
    from cmdrec.models.recommender import ModelOutput
    from cmdrec.training.objective import objective

    mask = torch.tensor([[True, True]])
    batch = Batch(
        features={},
        padding_mask=mask,
        targets={"command": torch.tensor([[2, 3]]), "category": torch.tensor([[2, 1]])},
        loss_mask=mask,
    )
    logits = {"command": torch.randn(2, 5), "category": torch.randn(2, 4)}
    router = [torch.randn(2, 4)]
    total, parts = objective(
        ModelOutput(logits, {"router_logits": router}), batch, LossConfig(aux_weight=0.5, moe_balance=0.1)
    )
    from cmdrec.losses import cross_entropy, load_balancing

    expected_aux = 0.5 * cross_entropy(logits["category"][:1], torch.tensor([2]))  # the OOV label (1) is left out
    assert parts["category"] == pytest.approx(expected_aux.item(), rel=1e-6)
    assert parts["moe_balance"] == pytest.approx(0.1 * load_balancing(router, 2, mask).item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-6)


def test_early_stopped_run_run_again_trains_no_further(tiny_data, tmp_path):
    # learning rate 0: validation never improves after the first epoch, so patience 1 stops after the second
    sections = {"training": {"epochs": 6, "learning_rate": 0.0, "early_stopping_patience": 1}}
    first = train(tiny_run(tiny_data, tmp_path, "stopped", **sections), show_progress=False)
    assert first["epochs_run"] == 2
    again = train(tiny_run(tiny_data, tmp_path, "stopped", **sections), show_progress=False)
    assert again["steps"] == first["steps"] and again["epochs_run"] == 2
    assert all(again["test"][m] == first["test"][m] for m in METRICS)


def test_a_loss_monitor_keeps_the_lowest_validation_loss_and_an_unknown_monitor_is_refused(tiny_data, tmp_path):
    import csv

    result = train(tiny_run(tiny_data, tmp_path, "by-loss", training={"epochs": 4, "monitor": "loss"}),
                   show_progress=False)  # fmt: skip
    with (tmp_path / "by-loss" / "logs" / "valid.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    lowest = min(rows, key=lambda row: float(row["loss"]))
    assert result["best_step"] == int(lowest["step"])
    for monitor, message in [("accuracy", "no validation metric"), ("ndcg@7", "lacks 7")]:
        with pytest.raises(InputError, match=message):
            tiny_run(tiny_data, tmp_path, "bad", training={"monitor": monitor})


def test_an_observer_callback_sees_each_validation_and_can_stop_the_run(tiny_data, tmp_path):
    class StopAfterFirst(Callback):
        seen = []

        def on_validation(self, trainer, metrics):
            self.seen.append((trainer.state.epoch, metrics["ndcg@10"]))
            trainer.request_stop("pruned by the observer")

    result = train(tiny_run(tiny_data, tmp_path, "observed", training={"epochs": 5}), callbacks=[StopAfterFirst()],
                   show_progress=False)  # fmt: skip
    assert result["epochs_run"] == 1 and result["stopped"] == "pruned by the observer"
    assert StopAfterFirst.seen == [(1, result["valid"]["ndcg@10"])]


def test_a_fitted_baseline_is_saved_with_its_run(tiny_data, tmp_path):
    train(tiny_run(tiny_data, tmp_path, "markov", model={"backbone": "markov"}), show_progress=False)
    assert (tmp_path / "markov" / "baseline.safetensors").is_file()
    model, _ = load_trained(tmp_path / "markov")
    assert model.counts.sum() > 0


def test_input_features_auto_resolves_to_the_side_features_the_data_has(tiny_data, tmp_path):
    import dataclasses

    from cmdrec.data.sequences import load_schema
    from cmdrec.models.build import resolve_input_features
    from cmdrec.schema import Tag

    schema = load_schema(tiny_data)
    config = tiny_run(tiny_data, tmp_path, "auto", model={"input_features": ["auto"], "fusion": "attention"})
    train(config, show_progress=False)
    saved = RunDir(tmp_path, "auto").read_config()["model"]["input_features"]
    assert saved == ["category", "log_time_delta", "position", "hour", "weekday"]  # the sample's, in schema order
    assert saved == [c.name for c in schema.columns if c.name not in ("session_id", "user_id", "length", "command")
                     and (c.has(Tag.CATEGORICAL) or c.has(Tag.CONTINUOUS))]  # fmt: skip
    # a log without timestamps: its schema has no time features, and auto leaves them out
    untimed = dataclasses.replace(
        schema, columns=tuple(c for c in schema.columns if c.name not in ("log_time_delta", "hour", "weekday"))
    )
    untimed_features = tuple(n for n in saved if n not in ("log_time_delta", "hour", "weekday"))
    assert resolve_input_features(config.model, untimed).input_features == untimed_features
    assert untimed_features[:2] == ("category", "position")
    named = dataclasses.replace(config.model, input_features=("category", "log_time_delta"))
    with pytest.raises(InputError, match=r"\['log_time_delta'\] are not in this data.*input_features=\[category\]"):
        resolve_input_features(named, untimed)

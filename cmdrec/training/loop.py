"""The training loop: plain PyTorch, resumable to the exact batch.

Everything a resumed run needs is in the checkpoint: weights (and EMA weights), optimizer state,
RNG state and the data position (epoch, next batch). Batch order is a pure function of (seed,
epoch) and mlm masking draws from a generator seeded by (seed, epoch, batch), so a run killed
mid-epoch and resumed reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import nullcontext
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from cmdrec.config import EvalConfig, ModelConfig, RunConfig, from_dict, to_dict
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData, batches_per_epoch, epoch_order, iterate_batches, load_schema
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids as build_mask_ids
from cmdrec.io import write_json_atomic
from cmdrec.models.build import build_baseline, build_model, data_columns, is_neural
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.text.pipeline import TEXT_EMBEDDINGS
from cmdrec.training.adapters import check_training_machine, export_merged, load_decoder, trainable_state
from cmdrec.training.checkpoint import (
    EMA_WEIGHTS,
    METRICS,
    WEIGHTS,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_model_config,
    save_checkpoint,
)
from cmdrec.training.evaluate import evaluate
from cmdrec.training.metrics import UNSEEN, frequency_buckets
from cmdrec.training.objective import objective
from cmdrec.training.runs import CsvLog, RunDir
from cmdrec.training.schedule import cosine_with_warmup
from cmdrec.training.trackers import Trackers

log = logging.getLogger(__name__)
RESULTS = "results.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"training.device={name!r} needs a CUDA GPU and none is available")
    return device


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "auto":
            return None
        raise InputError(
            f"training.mixed_precision={mode!r} needs a CUDA GPU; this run is on {device.type} (use 'off' or 'auto')"
        )
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def _batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + batch)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 and "embeddings" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config: RunConfig, *, resume: bool = True, on_step=None, show_progress: bool = True) -> dict:
    """Train and evaluate one run; returns (and writes to `results.json`) its metrics."""
    run = RunDir(config.runs_dir, config.name)
    if (pid := run.trainer_elsewhere()) is not None:
        # two trainers on one run would write over each other's checkpoints and logs
        raise InputError(f"run {run.path} is being trained by process {pid}; wait for it to end or stop it first")
    checkpoints = list_checkpoints(run.checkpoints)
    resume_from = checkpoints[-1] if resume and checkpoints else None
    if checkpoints and not resume:
        raise InputError(f"run {run.path} already has checkpoints; resume it, or choose another name")
    if resume_from is not None:
        saved = run.read_config() or {}
        if saved.get("training", {}).get("seed") not in (None, config.training.seed):
            raise InputError(
                f"resuming {run.path}: training.seed {config.training.seed} differs from the run's "
                f"{saved['training']['seed']}"
            )
        # the architecture comes from the checkpoint, never from a possibly edited config
        saved_model = from_dict(ModelConfig, read_model_config(resume_from))
        if changed := [
            f.name
            for f in dataclasses.fields(ModelConfig)
            if getattr(saved_model, f.name) != getattr(config.model, f.name)
        ]:
            log.warning(
                "resuming %s: model settings %s differ from its checkpoint's and are ignored; "
                "train them under another name",
                run.path,
                ", ".join(changed),
            )
        config = dataclasses.replace(config, model=saved_model)
        log.info("resuming %s from %s", run.path, resume_from)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(to_dict(config))
    run.set_status("running", monitor=config.training.monitor)
    try:
        result = _train(config, run, resume_from, on_step, show_progress)
    except BaseException:
        run.set_status("interrupted" if list_checkpoints(run.checkpoints) else "failed")
        raise
    run.set_status("finished", step=result.get("steps", 0), best=result["valid"].get(config.training.monitor))
    return result


def _train(config: RunConfig, run: RunDir, resume_from, on_step, show_progress) -> dict:
    training, model_config = config.training, config.model
    torch.manual_seed(training.seed)
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    device = resolve_device(training.device)
    amp_dtype = autocast_dtype(training.mixed_precision, device)
    check_training_machine(model_config, device)
    schema = load_schema(config.data_dir)
    item = schema.item_id.name
    columns = data_columns(model_config, schema)
    mask_ids = build_mask_ids(schema, columns)

    def load(split, mode):
        return SequenceData.load(
            config.data_dir,
            split,
            columns,
            model_config.max_length,
            mode,  # noqa: E731
            earlier_items=mode == "eval" and config.eval.exclude_seen,
        )

    train_data, valid_data, test_data = load("train", "train"), load("valid", "eval"), load("test", "eval")

    if not is_neural(model_config):
        started = time.perf_counter()
        baseline = build_baseline(model_config, schema).fit(train_data.arrays[item], train_data.lengths)
        fit_seconds = time.perf_counter() - started
        result = {
            "model": model_config.backbone,
            "valid": evaluate(baseline, valid_data, model_config, config.eval, mask_ids),
            "test": evaluate(baseline, test_data, model_config, config.eval, mask_ids),
            "train_seconds": round(fit_seconds, 3),
        }
        write_json_atomic(run.path / RESULTS, result)
        return result

    if training.ema_decay and model_config.backbone == "pretrained":
        raise InputError("training.ema_decay is not supported with a pretrained decoder (it would copy the whole base)")
    model = build_neural(model_config, schema, config.data_dir, device).to(device)
    adapter_run = is_adapter_run(model_config)
    ema = (
        torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(training.ema_decay)
        )
        if training.ema_decay
        else None
    )
    # fused: one kernel for the whole update instead of a loop over tensors (~6x faster step on CPU for small models)
    optimizer = torch.optim.AdamW(_param_groups(model, training.weight_decay), lr=training.learning_rate, fused=True)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    n_batches = batches_per_epoch(len(train_data), training.batch_size)
    total_steps = training.epochs * -(-n_batches // training.grad_accumulation)
    position = {
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "best": None,
        "best_step": None,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "sequences": 0,
    }
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, ema.module if ema else None)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        if ema is not None:
            ema.n_averaged.fill_(state["ema_n_averaged"])
        position = state["position"]
    resume_step = position["step"] if resume_from is not None else None
    train_log = CsvLog(run.logs / "train.csv", ["step", "epoch", "batch", "loss", "lr", "seconds"], resume_step)
    metric_names = ["step", "epoch", "loss", *[f"{m}@{k}" for k in config.eval.ks for m in ("ndcg", "recall", "mrr")]]
    valid_log = CsvLog(run.logs / "valid.csv", metric_names, resume_step)
    trackers = Trackers(run.path, to_dict(config), training.wandb_project)

    def checkpoint(metrics: dict):
        trainer_state = {
            "optimizer": optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}),
            },
            "position": position,
            **({"ema_n_averaged": int(ema.n_averaged)} if ema is not None else {}),
        }
        save_checkpoint(
            run.checkpoints,
            position["step"],
            model,
            trainer_state,
            to_dict(model_config),
            metrics,
            ema.module if ema else None,
            trainable_state(model) if adapter_run else None,
        )
        protect = {run.checkpoints / f"{position['best_step']:08d}"} if position["best_step"] is not None else set()
        prune_checkpoints(run.checkpoints, training.keep_checkpoints, protect)
        run.set_status("running", step=position["step"], best=position["best"])

    trained_items = _trained_items(load_buckets(config.data_dir), device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    for epoch in range(position["epoch"], training.epochs):
        # checked before the epoch, so an early-stopped run that is run again stays finished
        if training.early_stopping_patience is not None and position["bad_epochs"] >= training.early_stopping_patience:
            log.info("early stopping after %d epochs without improvement", position["bad_epochs"])
            break
        order = epoch_order(len(train_data), training.seed, epoch)
        start_batch = position["batch"] if epoch == position["epoch"] else 0
        model.train()
        accumulated, epoch_started = 0, time.perf_counter()
        batches = iterate_batches(train_data, training.batch_size, order, start_batch)
        progress = tqdm(
            batches,
            total=n_batches,
            initial=start_batch,
            desc=f"{config.name} epoch {epoch + 1}/{training.epochs}",
            unit="batch",
            disable=not show_progress,
            leave=False,
        )
        for number, batch in progress:
            masked = mask_batch(
                batch,
                model_config.masking,
                [item, *model_config.aux_tasks],
                training=True,
                mask_ids=mask_ids,
                probability=model_config.mlm_probability,
                generator=_batch_generator(training.seed, epoch, number),
            ).to(device)
            with autocast():
                output = model(masked)
            loss, parts = objective(output, masked, config.loss, model_config.experts_per_token, trained_items)
            scaled = loss / training.grad_accumulation
            (scaler.scale(scaled) if scaler else scaled).backward()
            accumulated += 1
            position["sequences"] += batch.padding_mask.shape[0]
            if accumulated < training.grad_accumulation and number < n_batches - 1:
                continue
            lr = training.learning_rate * cosine_with_warmup(
                position["step"], total_steps, training.warmup_steps, training.min_lr_ratio
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            if scaler:
                scaler.unscale_(optimizer)
            if training.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), training.max_grad_norm)
            scaler.step(optimizer) if scaler else optimizer.step()
            if scaler:
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(model)
            accumulated = 0
            position.update(epoch=epoch, batch=number + 1, step=position["step"] + 1)
            row = {
                "step": position["step"],
                "epoch": epoch,
                "batch": number + 1,
                "loss": loss.item(),
                "lr": lr,
                "seconds": round(position["train_seconds"] + time.perf_counter() - epoch_started, 3),
            }
            train_log.write(row)
            trackers.log(
                {"train/loss": row["loss"], "train/lr": lr, **{f"train/loss_{k}": v for k, v in parts.items()}},
                position["step"],
            )
            progress.set_postfix(loss=f"{row['loss']:.4f}")
            if (
                training.checkpoint_every_steps
                and position["step"] % training.checkpoint_every_steps == 0
                and number < n_batches - 1
            ):
                position["train_seconds"] += time.perf_counter() - epoch_started
                epoch_started = time.perf_counter()
                checkpoint({})
            if on_step is not None:
                on_step(position["step"])
        position["train_seconds"] += time.perf_counter() - epoch_started
        valid = evaluate(ema.module if ema else model, valid_data, model_config, config.eval, mask_ids, device)
        valid_log.write({"step": position["step"], "epoch": epoch, **valid})
        trackers.log({f"valid/{k}": v for k, v in valid.items() if "@" in k or k == "loss"}, position["step"])
        score = valid[training.monitor]
        improved = position["best"] is None or score > position["best"]
        position.update(epoch=epoch + 1, batch=0, bad_epochs=0 if improved else position["bad_epochs"] + 1)
        if improved:
            position.update(best=score, best_step=position["step"])
        log.info("epoch %d: valid %s %.4f (best %.4f)", epoch + 1, training.monitor, score, position["best"])
        checkpoint(valid)
    trackers.close()

    best = run.checkpoints / f"{position['best_step']:08d}"
    load_checkpoint(best, model, weights=EMA_WEIGHTS if ema is not None else WEIGHTS)
    valid = read_valid(best)
    test = evaluate(model, test_data, model_config, config.eval, mask_ids, device)
    epochs_run = position["epoch"]
    result = {
        "model": model_config.backbone,
        "valid": valid,
        "test": test,
        "steps": position["step"],
        "epochs_run": epochs_run,
        "best_step": position["best_step"],
        "train_seconds": round(position["train_seconds"], 3),
        "seconds_per_epoch": round(position["train_seconds"] / max(epochs_run, 1), 3),
        "sequences_per_second": round(position["sequences"] / max(position["train_seconds"], 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
    }
    write_json_atomic(run.path / RESULTS, result)
    return result


def _trained_items(buckets: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Which command ids the training softmax may cover, or None when that is all of them: the
    reserved ids are already masked by the heads, and masking costs a copy of every step's logits."""
    if buckets is None or not (buckets[FIRST_VALUE_ID:] == UNSEEN).any():
        return None
    return (buckets != UNSEEN).to(device)


def is_adapter_run(model_config: ModelConfig) -> bool:
    return model_config.backbone == "pretrained" and model_config.adapter.method != "none"


def load_pretrained(model_config: ModelConfig, device: torch.device):
    """The pretrained decoder of a `pretrained` backbone (quantised / with adapters as configured)."""
    return load_decoder(model_config, device) if model_config.backbone == "pretrained" else None


def build_neural(model_config: ModelConfig, schema, data_dir: str | Path, device: torch.device) -> torch.nn.Module:
    """A neural model with the resources it reads from files: the text table and the pretrained decoder."""
    return build_model(
        model_config, schema, load_text_table(data_dir, model_config), load_pretrained(model_config, device)
    )


EXPORT_WEIGHTS = "recommender.safetensors"


def export_run(run_dir: str | Path, directory: str | Path) -> Path:
    """Merge an adapter run into a plain model directory: `decoder/` (merged, full precision),
    the rest of the recommender's weights, and the config that loads them (`load_exported`)."""
    model, config = load_trained(run_dir)
    if not is_adapter_run(config.model):
        raise InputError(f"{run_dir} has no adapters to merge; its checkpoints already hold the whole model")
    directory = Path(directory)
    exported = export_merged(model, config.model, directory)
    rest = {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("backbone.decoder.")
    }
    save_file(rest, str(directory / EXPORT_WEIGHTS))
    RunDir(directory.parent, directory.name).write_config(to_dict(dataclasses.replace(config, model=exported)))
    return directory


def load_exported(directory: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    directory = Path(directory)
    config_dict = RunDir(directory.parent, directory.name).read_config()
    if config_dict is None or not (directory / EXPORT_WEIGHTS).is_file():
        raise InputError(f"{directory} is not a cmdrec export (no config.yaml / {EXPORT_WEIGHTS})")
    config = from_dict(RunConfig, config_dict)
    model = build_neural(config.model, load_schema(config.data_dir), config.data_dir, torch.device(device))
    result = model.load_state_dict(load_file(str(directory / EXPORT_WEIGHTS)), strict=False)
    stray = [k for k in result.missing_keys if not k.startswith("backbone.decoder.")]
    if stray or result.unexpected_keys:
        raise InputError(
            f"{directory}: weights do not match the model (missing {stray[:3]}, unexpected "
            f"{result.unexpected_keys[:3]})"
        )
    return model.to(device).eval(), config


def load_text_table(data_dir: str | Path, model_config: ModelConfig) -> torch.Tensor | None:
    """The dataset's command text embeddings (written by `cmdrec embed`), when the model uses them."""
    if not (model_config.text_embeddings or model_config.text_output):
        return None
    path = Path(data_dir) / TEXT_EMBEDDINGS
    if not path.is_file():
        raise InputError(
            f"model.text_embeddings / text_output is set but {path} does not exist; run `cmdrec embed` first"
        )
    return load_file(str(path))["embeddings"]


def read_valid(checkpoint_path: Path) -> dict:
    return json.loads((checkpoint_path / METRICS).read_text())


def load_trained(run_dir: str | Path, device: str = "cpu") -> tuple[object, RunConfig]:
    """The best model of a finished run, rebuilt from its checkpoint's own model config.
    Non-neural baselines keep no weights: they are refitted on the run's training split."""
    run_dir = Path(run_dir)
    config_dict = RunDir(run_dir.parent, run_dir.name).read_config()
    if config_dict is None:
        raise InputError(f"{run_dir} is not a run directory (no config.yaml)")
    config = from_dict(RunConfig, config_dict)
    schema = load_schema(config.data_dir)
    if not is_neural(config.model):
        train_data = SequenceData.load(
            config.data_dir, "train", data_columns(config.model, schema), config.model.max_length, "train"
        )
        return build_baseline(config.model, schema).fit(
            train_data.arrays[schema.item_id.name], train_data.lengths
        ), config
    results_path = run_dir / RESULTS
    if not results_path.is_file():
        raise InputError(f"{run_dir} has not finished (no {RESULTS}); resume it with `cmdrec train` first")
    path = run_dir / "checkpoints" / f"{json.loads(results_path.read_text())['best_step']:08d}"
    model_config = from_dict(ModelConfig, read_model_config(path))
    model = build_neural(model_config, schema, config.data_dir, torch.device(device))
    load_checkpoint(path, model, weights=EMA_WEIGHTS if config.training.ema_decay else WEIGHTS)
    return model.to(device).eval(), dataclasses.replace(config, model=model_config)


def load_model_dir(directory: str | Path, device: str = "cpu"):
    """A run's best model, or a merged export, with its config."""
    return (
        load_exported(directory, device)
        if (Path(directory) / EXPORT_WEIGHTS).is_file()
        else load_trained(directory, device)
    )


def evaluate_model(model, config: RunConfig, eval_config: EvalConfig | None = None, split: str = "test") -> dict:
    """Metrics of a loaded model on a split, with its run's or the given evaluation settings."""
    schema = load_schema(config.data_dir)
    columns = data_columns(config.model, schema)
    eval_config = eval_config or config.eval
    data = SequenceData.load(
        config.data_dir, split, columns, config.model.max_length, "eval", earlier_items=eval_config.exclude_seen
    )
    return evaluate(
        model, data, config.model, eval_config, build_mask_ids(schema, columns), buckets=load_buckets(config.data_dir)
    )


def evaluate_run(run_dir: str | Path, eval_config: EvalConfig | None = None, split: str = "test") -> dict:
    """Metrics of a trained run's best model (or of a merged export) on a split."""
    return evaluate_model(*load_model_dir(run_dir), eval_config, split)


def load_buckets(data_dir: str | Path) -> torch.Tensor | None:
    """Head / torso / tail bucket of each command id, from the training counts in items.parquet."""
    path = Path(data_dir) / "items.parquet"
    if not path.is_file():
        return None
    return frequency_buckets(torch.tensor(pl.read_parquet(path, columns=["train_count"])["train_count"].to_list()))

"""The trainer: plain PyTorch, built from typed parts, resumable to the exact batch.

A run's progress is a `TrainerState`; one optimizer step, one validation and one checkpoint are
small functions; logging, checkpointing, early stopping and external observers (a sweep's pruner)
are callbacks. Everything a resumed run needs is in the checkpoint: weights (and EMA weights),
optimizer state, RNG state and the trainer state. Batch order is a pure function of (seed, epoch)
and mlm masking draws from a generator seeded by (seed, epoch, batch), so a run killed mid-epoch
and resumed reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time

import torch
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cmdrec.artifacts.adapters import check_training_machine
from cmdrec.artifacts.checkpoint import (
    EMA_WEIGHTS,
    SHARDED,
    WEIGHTS,
    is_sharded_checkpoint,
    list_checkpoints,
    load_checkpoint,
    verify_checkpoint,
)
from cmdrec.artifacts.loading import (
    RESULTS,
    build_neural,
    is_adapter_run,
    read_valid,
    record_data_dir,
    save_baseline,
)
from cmdrec.artifacts.runs import RunDir
from cmdrec.config import RunConfig, to_dict
from cmdrec.data.sequences import SequenceData, batches_per_epoch, epoch_order, load_schema
from cmdrec.data.streaming import StreamingSequences
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids as build_mask_ids
from cmdrec.io import write_json_atomic
from cmdrec.losses import classification_loss
from cmdrec.models.build import build_baseline, data_columns, resolve_input_features, resolve_sections
from cmdrec.models.dropout import use_byte_mask_dropout
from cmdrec.models.registry import component
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.training import fsdp
from cmdrec.training.callbacks import Checkpointing, CsvLogs, EarlyStopping, TrackerLogs
from cmdrec.training.distributed import (
    World,
    barrier,
    broadcast,
    from_environment,
    rank_device,
    restore_rng,
    shard,
    start,
    stop,
)
from cmdrec.training.evaluate import evaluate, load_buckets
from cmdrec.training.metrics import UNSEEN
from cmdrec.training.resume import resumed_config
from cmdrec.training.schedule import effective_warmup
from cmdrec.training.trainer import (
    Callback,
    Trainer,
    TrainerState,
    autocast_dtype,
    forward_backward,
    optimizer_step,
    param_groups,
    record_validation,
    resolve_device,
    validate,
)

log = logging.getLogger(__name__)


def train(
    config: RunConfig,
    *,
    resume: bool = True,
    restart: bool = False,
    callbacks: list[Callback] = (),
    show_progress: bool = True,
) -> dict:
    """Train and evaluate one run; returns (and writes to `results.json`) its metrics. `callbacks`
    observe the run after the built-in ones (logging, checkpointing, early stopping). `restart`
    deletes what the run holds and trains it from the start. Under a distributed launcher
    (WORLD_SIZE > 1) every rank calls this; rank 0 alone writes files."""
    world = from_environment()
    if restart and world.main:
        run = RunDir(config.runs_dir, config.name)
        if (pid := run.trainer_elsewhere()) is not None:
            raise InputError(f"run {run.path} is being trained by process {pid}; stop it before restarting it")
        shutil.rmtree(run.path, ignore_errors=True)
    if world.distributed:
        if not component(config.model.backbone).neural:
            raise InputError(f"{config.model.backbone!r} is a count baseline: fit it in one process, without --nproc")
        start(world, resolve_device(config.training.device))
    try:
        result = _train_run(config, resume, list(callbacks), show_progress and world.main, world)
        # a rank that tears gloo down while a peer still talks to it can abort that peer (SIGABRT)
        barrier(world)
        return result
    finally:
        stop(world)


def _train_run(config: RunConfig, resume: bool, callbacks: list[Callback], show_progress: bool, world: World):
    run = RunDir(config.runs_dir, config.name)
    if world.main and (pid := run.trainer_elsewhere()) is not None:
        # two trainers on one run would write over each other's checkpoints and logs
        raise InputError(f"run {run.path} is being trained by process {pid}; wait for it to end or stop it first")
    config = dataclasses.replace(config, model=resolve_sections(config.model))  # as the run saves it
    if component(config.model.backbone).neural:
        config = dataclasses.replace(config, model=resolve_input_features(config.model, load_schema(config.data_dir)))
    checkpoints = broadcast(world, list_checkpoints(run.checkpoints))  # every rank resumes from the same one
    resume_from = checkpoints[-1] if resume and checkpoints else None
    if checkpoints and not resume:
        raise InputError(f"run {run.path} already has checkpoints; resume it, or choose another name")
    if resume_from is not None:
        config = resumed_config(config, run, resume_from)
    if world.main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(to_dict(config))
        record_data_dir(run, config.data_dir)
        run.set_status("running", monitor=config.training.monitor, world_size=world.size)
    try:
        if component(config.model.backbone).neural:
            result = _train_neural(config, run, resume_from, callbacks, show_progress, world)
        else:
            result = _fit_baseline(config, run)
    except BaseException:
        if world.main:
            run.set_status("interrupted" if list_checkpoints(run.checkpoints) else "failed")
        raise
    if world.main:
        run.set_status("finished", step=result.get("steps", 0), best=result["valid"].get(config.training.monitor))
    return result


def _load_splits(config: RunConfig, columns: list[str]) -> tuple[SequenceData, SequenceData, SequenceData]:
    def load(split: str, mode: str) -> SequenceData:
        earlier = mode == "eval" and config.eval.exclude_seen
        return SequenceData.load(
            config.data_dir, split, columns, config.model.window_length, mode, earlier_items=earlier
        )

    # a streamed training split is read shard by shard while training, never here
    train = None if config.training.streaming else load("train", "train")
    return train, load("valid", "eval"), load("test", "eval")


def _fit_baseline(config: RunConfig, run: RunDir) -> dict:
    schema = load_schema(config.data_dir)
    columns = data_columns(config.model, schema)
    mask_ids = build_mask_ids(schema, columns)
    # counts are fitted over the whole split at once: a baseline never streams (it keeps only counts)
    in_memory = dataclasses.replace(config, training=dataclasses.replace(config.training, streaming=False))
    train_data, valid_data, test_data = _load_splits(in_memory, columns)
    started = time.perf_counter()
    baseline = build_baseline(config.model, schema).fit(train_data.arrays[schema.item_id.name], train_data.lengths)
    fit_seconds = time.perf_counter() - started
    save_baseline(run, baseline)
    result = {
        "model": config.model.backbone,
        "valid": evaluate(baseline, valid_data, config.model, config.eval, mask_ids),
        "test": evaluate(baseline, test_data, config.model, config.eval, mask_ids),
        "train_seconds": round(fit_seconds, 3),
    }
    write_json_atomic(run.path / RESULTS, result)
    return result


def _build_trainer(config: RunConfig, run: RunDir, n_batches: int, resume_from, world: World) -> Trainer:
    training, model_config = config.training, config.model
    device = rank_device(resolve_device(training.device), world)
    check_training_machine(model_config, device)
    classification_loss(config.loss.name)  # an unknown loss fails before any data is read
    if training.ema_decay and not component(model_config.backbone).ema:
        raise InputError(
            f"training.ema_decay is not supported with backbone {model_config.backbone!r} (it would copy the "
            "whole base)"
        )
    schema = load_schema(config.data_dir)
    model = build_neural(model_config, schema, config.data_dir, device).to(device)
    if training.fast_dropout and not use_byte_mask_dropout(model):
        log.warning("training.fast_dropout: %s has no dropout layers to replace", model_config.backbone)
    ema = None
    if training.ema_decay:
        average = torch.optim.swa_utils.get_ema_multi_avg_fn(training.ema_decay)
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average)
    saved = None if resume_from is None else load_checkpoint(resume_from, model, ema.module if ema else None)
    if training.fsdp.enabled:  # after the full weights are in: they are sharded from there
        fsdp.check(training.fsdp, device, world, ema is not None)
        fsdp.shard(model, training.fsdp, device)
    # fused: one kernel for the whole update instead of a loop over tensors (~6x faster step on CPU for small models)
    optimizer = torch.optim.AdamW(param_groups(model, training.weight_decay), lr=training.learning_rate, fused=True)
    amp_dtype = autocast_dtype(training.mixed_precision, device)
    total_steps = training.epochs * -(-n_batches // training.grad_accumulation)
    warmup = effective_warmup(training.warmup_steps, training.warmup_ratio, total_steps)
    if total_steps and warmup >= 0.5 * total_steps:
        log.warning("warm-up covers %d of the run's %d optimizer steps", warmup, total_steps)
    trainer = Trainer(
        config=config,
        run=run,
        model=model,
        optimizer=optimizer,
        device=device,
        mask_ids=build_mask_ids(schema, data_columns(model_config, schema)),
        n_batches=n_batches,
        total_steps=total_steps,
        warmup_steps=warmup,
        ema=ema,
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        amp_dtype=amp_dtype,
        trained_items=_trained_items(load_buckets(config.data_dir), schema.item_id.cardinality, device),
        world=world,
    )
    if saved is not None:
        if is_sharded_checkpoint(resume_from):
            if not fsdp.is_sharded(model):
                raise InputError(f"{resume_from} is a sharded checkpoint: resume it with training.fsdp enabled")
            fsdp.load_sharded_optimizer(model, optimizer, resume_from / SHARDED)
        elif training.fsdp.enabled:
            fsdp.load_optimizer_state(model, optimizer, saved["optimizer"])
        else:
            optimizer.load_state_dict(saved["optimizer"])
        restore_rng(saved["rng"], world)
        if ema is not None:
            ema.n_averaged.fill_(saved["ema_n_averaged"])
        trainer.state = TrainerState(**saved["position"])
    if world.distributed and not training.fsdp.enabled:
        # unused parameters exist (HF decoders' token tables when fed embeddings; experts no token chose)
        ids = [device.index] if device.type == "cuda" else None
        trainer.model = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return trainer


def _train_neural(
    config: RunConfig, run: RunDir, resume_from, callbacks: list[Callback], show_progress: bool, world: World
) -> dict:
    training = config.training
    torch.manual_seed(training.seed)
    if training.num_threads:
        torch.set_num_threads(training.num_threads)
    if training.deterministic:
        torch.use_deterministic_algorithms(True)
    schema = load_schema(config.data_dir)
    train_data, valid_data, test_data = _load_splits(config, data_columns(config.model, schema))
    if config.training.streaming:
        train_data = StreamingSequences(
            config.data_dir, "train", data_columns(config.model, schema), config.model.window_length
        )
        n_batches = train_data.batches_per_epoch(config.training.batch_size)
    else:
        n_batches = batches_per_epoch(len(train_data), config.training.batch_size)
    trainer = _build_trainer(config, run, n_batches, resume_from, world)
    resume_step = trainer.state.step if resume_from is not None else None
    logs = [CsvLogs(trainer, resume_step), TrackerLogs(trainer)] if world.main else []
    trainer.callbacks = [
        *logs,
        Checkpointing(),
        EarlyStopping(training.early_stopping_patience),
        *callbacks,
    ]
    try:
        _fit(trainer, train_data, valid_data, show_progress)
    finally:
        trainer.emit("on_end")
    return _final_evaluation(trainer, test_data)


def _fit(trainer: Trainer, train_data: SequenceData, valid_data: SequenceData, show_progress: bool) -> None:
    config, state = trainer.config, trainer.state
    training = config.training
    for epoch in range(state.epoch, training.epochs):
        trainer.emit("before_epoch")
        if trainer.stop_reason:
            log.info("%s: %s", trainer.config.name, trainer.stop_reason)
            return
        start_batch = state.batch if epoch == state.epoch else 0
        if isinstance(train_data, StreamingSequences):
            batches = streamed_rank_batches(
                train_data, training.batch_size, training.seed, epoch, start_batch, trainer.world
            )
        else:
            order = epoch_order(len(train_data), training.seed, epoch)
            batches = rank_batches(train_data, training.batch_size, order, start_batch, trainer.world)
        trainer.module.train()
        accumulated = 0
        trainer.restart_clock()
        progress = tqdm(
            batches,
            total=trainer.n_batches,
            initial=start_batch,
            desc=f"{config.name} epoch {epoch + 1}/{training.epochs}",
            unit="batch",
            disable=not show_progress,
            leave=False,
        )
        for number, batch, weight, global_size in progress:
            last_micro = accumulated + 1 >= training.grad_accumulation or number == trainer.n_batches - 1
            loss, parts = forward_backward(trainer, batch, epoch, number, weight, sync=last_micro)
            accumulated += 1
            state.sequences += global_size
            if not last_micro:
                continue
            lr = optimizer_step(trainer)
            accumulated = 0
            state.epoch, state.batch, state.step = epoch, number + 1, state.step + 1
            seconds = state.train_seconds + time.perf_counter() - trainer._clock
            row = {"step": state.step, "epoch": epoch, "batch": number + 1, "loss": loss.item(), "lr": lr,
                   "seconds": round(seconds, 3), "parts": parts}  # fmt: skip
            progress.set_postfix(loss=f"{row['loss']:.4f}")
            trainer.emit("on_step", row)
            if trainer.stop_reason:
                log.info("%s: %s", trainer.config.name, trainer.stop_reason)
                return
        trainer.account_time()
        # rank 0's figures decide for every rank (GPU kernels may differ in the last bits between ranks)
        metrics = broadcast(trainer.world, validate(trainer, valid_data))
        record_validation(trainer, epoch, metrics)
        trainer.emit("on_validation", metrics)
        if trainer.stop_reason:
            log.info("%s: %s", trainer.config.name, trainer.stop_reason)
            return


def _final_evaluation(trainer: Trainer, test_data: SequenceData) -> dict:
    config, state, model = trainer.config, trainer.state, trainer.module
    if state.best_step is None:
        raise InputError(f"run {trainer.run.path} stopped before its first validation; nothing to evaluate")
    best = trainer.run.checkpoints / f"{state.best_step:08d}"
    weights = EMA_WEIGHTS if trainer.ema is not None else WEIGHTS
    if fsdp.is_sharded(model):
        verify_checkpoint(best)
        if is_sharded_checkpoint(best):
            fsdp.load_sharded_model(model, best / SHARDED)
        else:
            fsdp.load_model_state(model, load_file(str(best / weights)), partial=is_adapter_run(config.model))
    else:
        load_checkpoint(best, model, weights=weights)
    test = evaluate(model, test_data, config.model, config.eval, trainer.mask_ids, trainer.device)
    epochs_run = state.epoch
    result = {
        "model": config.model.backbone,
        "valid": read_valid(best),
        "test": test,
        "steps": state.step,
        "epochs_run": epochs_run,
        "best_step": state.best_step,
        "train_seconds": round(state.train_seconds, 3),
        "seconds_per_epoch": round(state.train_seconds / max(epochs_run, 1), 3),
        "sequences_per_second": round(state.sequences / max(state.train_seconds, 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(trainer.device),
        **({"stopped": trainer.stop_reason} if trainer.stop_reason else {}),
    }
    if trainer.world.main:
        write_json_atomic(trainer.run.path / RESULTS, result)
    return result


def streamed_rank_batches(
    data: StreamingSequences, batch_size: int, seed: int, epoch: int, start_batch: int, world: World
):
    """As `rank_batches`, over a split read one shard at a time."""
    for number, windows, indices in data.epoch(batch_size, seed, epoch, start_batch):
        mine, weight = shard(indices, world)
        yield number, windows.batch(mine), weight, len(indices)


def rank_batches(data: SequenceData, batch_size: int, order, start_batch: int, world: World):
    """(batch number, this rank's share of the global batch, its loss weight, global batch size)."""
    for number, begin in enumerate(range(0, len(order), batch_size)):
        if number >= start_batch:
            indices = order[begin : begin + batch_size]
            mine, weight = shard(indices, world)
            yield number, data.batch(mine), weight, len(indices)


def _trained_items(buckets: torch.Tensor | None, n_items: int, device: torch.device) -> torch.Tensor | None:
    """Which item ids the training softmax may cover, or None when that is all of them: the reserved
    ids are already masked by the heads, and masking costs a copy of every step's logits. Workflow
    tokens (ids past the commands) are learned from the training split, so all of them are in it."""
    if buckets is None or not (buckets[FIRST_VALUE_ID:] == UNSEEN).any():
        return None
    trained = torch.ones(n_items, dtype=torch.bool)
    trained[: len(buckets)] = buckets != UNSEEN
    return trained.to(device)

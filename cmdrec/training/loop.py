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
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cmdrec.artifacts.adapters import check_training_machine, trainable_state
from cmdrec.artifacts.checkpoint import (
    EMA_WEIGHTS,
    WEIGHTS,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from cmdrec.artifacts.loading import RESULTS, build_neural, is_adapter_run, read_valid, record_data_dir, save_baseline
from cmdrec.artifacts.runs import CsvLog, RunDir
from cmdrec.config import RunConfig, to_dict
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData, batches_per_epoch, epoch_order, load_schema
from cmdrec.data.streaming import StreamingSequences
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids as build_mask_ids
from cmdrec.io import write_json_atomic
from cmdrec.models.build import build_baseline, data_columns, resolve_input_features
from cmdrec.models.registry import component
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.training.distributed import (
    World,
    barrier,
    broadcast,
    from_environment,
    gather,
    rank_device,
    shard,
    start,
    stop,
)
from cmdrec.training.evaluate import evaluate, load_buckets
from cmdrec.training.metrics import UNSEEN
from cmdrec.training.objective import objective
from cmdrec.training.resume import resumed_config
from cmdrec.training.schedule import effective_warmup, lr_multiplier
from cmdrec.training.trackers import Trackers

log = logging.getLogger(__name__)


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


@dataclass
class TrainerState:
    """Where a run is; saved in every checkpoint (as the plain mapping `asdict` gives)."""

    epoch: int = 0  # the epoch in progress (or the next one, at an epoch boundary)
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # optimizer steps taken
    best: float | None = None  # best validation value of the monitor, and the step it was reached at
    best_step: int | None = None
    bad_epochs: int = 0  # validations since the last improvement
    train_seconds: float = 0.0  # time spent in training steps, validation excluded
    sequences: int = 0  # training windows seen


class Callback:
    """Hooks the trainer calls; `trainer.request_stop(reason)` ends the run after the current hook.
    In a distributed run callbacks run on rank 0 only, unless `every_rank`."""

    every_rank = False

    def before_epoch(self, trainer: Trainer) -> None: ...

    def on_step(self, trainer: Trainer, row: dict) -> None: ...

    def on_validation(self, trainer: Trainer, metrics: dict) -> None: ...

    def on_end(self, trainer: Trainer) -> None: ...


@dataclass
class Trainer:
    """What one run's steps share: its config, model, optimizer and state."""

    config: RunConfig
    run: RunDir
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    mask_ids: dict[str, int]
    n_batches: int
    total_steps: int
    warmup_steps: int
    ema: torch.optim.swa_utils.AveragedModel | None = None
    scaler: torch.amp.GradScaler | None = None
    amp_dtype: torch.dtype | None = None
    trained_items: torch.Tensor | None = None
    state: TrainerState = field(default_factory=TrainerState)
    callbacks: list[Callback] = field(default_factory=list)
    stop_reason: str | None = None
    world: World = field(default_factory=World)
    _clock: float = field(default_factory=time.perf_counter)

    @property
    def module(self) -> torch.nn.Module:
        """The model itself, not its DistributedDataParallel wrapper."""
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason

    def account_time(self) -> None:
        """Move the time since the last call into `state.train_seconds`."""
        now = time.perf_counter()
        self.state.train_seconds += now - self._clock
        self._clock = now

    def restart_clock(self) -> None:
        self._clock = time.perf_counter()

    def emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            if self.world.main or callback.every_rank:
                getattr(callback, hook)(self, *args)
        if self.world.distributed and hook != "on_end":
            self.stop_reason = broadcast(self.world, self.stop_reason)  # every rank stops together

    @property
    def evaluated_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.module


# ---------------------------------------------------------------- the parts


def _batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 10_007 + batch)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 and "embeddings" not in name else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def forward_backward(
    trainer: Trainer, batch, epoch: int, number: int, weight: float = 1.0, sync: bool = True
) -> tuple[torch.Tensor, dict]:
    """Loss of one batch, its gradient accumulated (scaled for gradient accumulation and by `weight`);
    `sync` False skips DDP's gradient all-reduce (a micro-batch before the last of an accumulation)."""
    config, model_config = trainer.config, trainer.config.model
    masked = mask_batch(
        batch,
        model_config.masking,
        [batch.item_column, *model_config.aux_tasks],
        training=True,
        mask_ids=trainer.mask_ids,
        probability=model_config.mlm_probability,
        generator=_batch_generator(config.training.seed, epoch, number),
    ).to(trainer.device)
    autocast = torch.autocast(trainer.device.type, dtype=trainer.amp_dtype) if trainer.amp_dtype else nullcontext()
    no_sync = (
        trainer.model.no_sync() if not sync and isinstance(trainer.model, DistributedDataParallel) else nullcontext()
    )
    with no_sync:
        with autocast:
            output = trainer.model(masked)
        loss, parts = objective(output, masked, config.loss, model_config.experts_per_token, trainer.trained_items)
        scaled = loss * weight / config.training.grad_accumulation
        (trainer.scaler.scale(scaled) if trainer.scaler else scaled).backward()
    return loss, parts


def optimizer_step(trainer: Trainer) -> float:
    """Apply the accumulated gradient at the scheduled learning rate; returns that rate."""
    training, optimizer, scaler = trainer.config.training, trainer.optimizer, trainer.scaler
    multiplier = lr_multiplier(
        trainer.state.step, trainer.total_steps, trainer.warmup_steps, training.min_lr_ratio, training.scheduler
    )
    lr = training.learning_rate * multiplier
    for group in optimizer.param_groups:
        group["lr"] = lr
    if scaler:
        scaler.unscale_(optimizer)
    if training.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), training.max_grad_norm)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if trainer.ema is not None:
        trainer.ema.update_parameters(trainer.module)
    return lr


def validate(trainer: Trainer, data: SequenceData) -> dict:
    config = trainer.config
    return evaluate(trainer.evaluated_model, data, config.model, config.eval, trainer.mask_ids, trainer.device)


def record_validation(trainer: Trainer, epoch: int, metrics: dict) -> bool:
    """Advance the state past a validated epoch; True when the monitor improved."""
    training, state = trainer.config.training, trainer.state
    score = metrics[training.monitor]
    if state.best is None:
        improved = True
    else:
        improved = score > state.best if training.monitor_higher_is_better else score < state.best
    state.epoch, state.batch = epoch + 1, 0
    state.bad_epochs = 0 if improved else state.bad_epochs + 1
    if improved:
        state.best, state.best_step = score, state.step
    log.info(
        "%s epoch %d: valid %s %.4f (best %.4f)", trainer.config.name, epoch + 1, training.monitor, score, state.best
    )
    return improved


def write_checkpoint(trainer: Trainer, metrics: dict) -> None:
    """Save a resumable checkpoint and prune old ones (never the best). Every rank calls it: each
    rank's RNG state goes into the checkpoint, which rank 0 alone writes."""
    state, run, world = trainer.state, trainer.run, trainer.world
    per_rank = gather(world, torch.get_rng_state())
    cuda_per_rank = gather(world, torch.cuda.get_rng_state()) if torch.cuda.is_available() else None
    if not world.main:
        barrier(world)
        return
    trainer_state = {
        "optimizer": trainer.optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            **({"torch_per_rank": per_rank} if world.distributed else {}),
            **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}),
            **({"cuda_per_rank": cuda_per_rank} if world.distributed and cuda_per_rank else {}),
        },
        "position": dataclasses.asdict(state),
        **({"ema_n_averaged": int(trainer.ema.n_averaged)} if trainer.ema is not None else {}),
    }
    model_config = trainer.config.model
    save_checkpoint(
        run.checkpoints,
        state.step,
        trainer.module,
        trainer_state,
        to_dict(model_config),
        metrics,
        trainer.ema.module if trainer.ema else None,
        trainable_state(trainer.module) if is_adapter_run(model_config) else None,
    )
    protect = {run.checkpoints / f"{state.best_step:08d}"} if state.best_step is not None else set()
    prune_checkpoints(run.checkpoints, trainer.config.training.keep_checkpoints, protect)
    run.set_status("running", step=state.step, best=state.best)
    barrier(world)


# ---------------------------------------------------------------- callbacks


class CsvLogs(Callback):
    """`logs/train.csv` (one row per optimizer step) and `logs/valid.csv` (one per validation)."""

    def __init__(self, trainer: Trainer, resume_step: int | None):
        ks = trainer.config.eval.ks
        metric_names = ["step", "epoch", "loss", *[f"{m}@{k}" for k in ks for m in ("ndcg", "recall", "mrr")]]
        fields = ["step", "epoch", "batch", "loss", "lr", "seconds"]
        self.train = CsvLog(trainer.run.logs / "train.csv", fields, resume_step)
        self.valid = CsvLog(trainer.run.logs / "valid.csv", metric_names, resume_step)

    def on_step(self, trainer, row):
        self.train.write(row)

    def on_validation(self, trainer, metrics):
        self.valid.write({"step": trainer.state.step, "epoch": trainer.state.epoch - 1, **metrics})


class TrackerLogs(Callback):
    """TensorBoard (and W&B when configured)."""

    def __init__(self, trainer: Trainer):
        config = trainer.config
        self.trackers = Trackers(trainer.run.path, to_dict(config), config.training.wandb_project)

    def on_step(self, trainer, row):
        parts = {f"train/loss_{k}": v for k, v in row["parts"].items()}
        self.trackers.log({"train/loss": row["loss"], "train/lr": row["lr"], **parts}, row["step"])

    def on_validation(self, trainer, metrics):
        values = {f"valid/{k}": v for k, v in metrics.items() if "@" in k or k == "loss"}
        self.trackers.log(values, trainer.state.step)

    def on_end(self, trainer):
        self.trackers.close()


class Checkpointing(Callback):
    """A checkpoint after every validation, and every `checkpoint_every_steps` within an epoch."""

    every_rank = True

    def on_step(self, trainer, row):
        every = trainer.config.training.checkpoint_every_steps
        if every and trainer.state.step % every == 0 and row["batch"] < trainer.n_batches:
            trainer.account_time()
            write_checkpoint(trainer, {})

    def on_validation(self, trainer, metrics):
        write_checkpoint(trainer, metrics)


class EarlyStopping(Callback):
    """Stop after `patience` validations without improvement; checked before each epoch, so an
    early-stopped run that is run again stays finished."""

    every_rank = True  # every rank holds the same state, so each decides alike

    def __init__(self, patience: int | None):
        self.patience = patience

    def before_epoch(self, trainer):
        if self.patience is not None and trainer.state.bad_epochs >= self.patience:
            trainer.request_stop(f"early stopping after {trainer.state.bad_epochs} epochs without improvement")


# ---------------------------------------------------------------- the run


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
        return _train_run(config, resume, list(callbacks), show_progress and world.main, world)
    finally:
        stop(world)


def _train_run(config: RunConfig, resume: bool, callbacks: list[Callback], show_progress: bool, world: World):
    run = RunDir(config.runs_dir, config.name)
    if world.main and (pid := run.trainer_elsewhere()) is not None:
        # two trainers on one run would write over each other's checkpoints and logs
        raise InputError(f"run {run.path} is being trained by process {pid}; wait for it to end or stop it first")
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
        return SequenceData.load(config.data_dir, split, columns, config.model.max_length, mode, earlier_items=earlier)

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
    if training.ema_decay and not component(model_config.backbone).ema:
        raise InputError(
            f"training.ema_decay is not supported with backbone {model_config.backbone!r} (it would copy the "
            "whole base)"
        )
    schema = load_schema(config.data_dir)
    model = build_neural(model_config, schema, config.data_dir, device).to(device)
    ema = None
    if training.ema_decay:
        average = torch.optim.swa_utils.get_ema_multi_avg_fn(training.ema_decay)
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=average)
    # fused: one kernel for the whole update instead of a loop over tensors (~6x faster step on CPU for small models)
    optimizer = torch.optim.AdamW(_param_groups(model, training.weight_decay), lr=training.learning_rate, fused=True)
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
        trained_items=_trained_items(load_buckets(config.data_dir), device),
        world=world,
    )
    if resume_from is not None:
        saved = load_checkpoint(resume_from, model, ema.module if ema else None)
        optimizer.load_state_dict(saved["optimizer"])
        per_rank = saved["rng"].get("torch_per_rank")
        if world.distributed and (per_rank is None or len(per_rank) != world.size):
            log.warning(
                "resuming on %d ranks from a checkpoint of another world size: dropout draws differ", world.size
            )
        own = per_rank[world.rank] if per_rank is not None and len(per_rank) == world.size else saved["rng"]["torch"]
        torch.set_rng_state(own)
        if "cuda" in saved["rng"] and torch.cuda.is_available():
            cuda_states = saved["rng"].get("cuda_per_rank")
            own_cuda = (
                cuda_states[world.rank] if cuda_states and len(cuda_states) == world.size else saved["rng"]["cuda"]
            )
            torch.cuda.set_rng_state(own_cuda)
        if ema is not None:
            ema.n_averaged.fill_(saved["ema_n_averaged"])
        trainer.state = TrainerState(**saved["position"])
    if world.distributed:
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
            config.data_dir, "train", data_columns(config.model, schema), config.model.max_length
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
    load_checkpoint(best, model, weights=EMA_WEIGHTS if trainer.ema is not None else WEIGHTS)
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


def _trained_items(buckets: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """Which command ids the training softmax may cover, or None when that is all of them: the
    reserved ids are already masked by the heads, and masking costs a copy of every step's logits."""
    if buckets is None or not (buckets[FIRST_VALUE_ID:] == UNSEEN).any():
        return None
    return (buckets != UNSEEN).to(device)

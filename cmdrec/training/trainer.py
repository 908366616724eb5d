"""The trainer's parts: its typed state, the callback protocol, and one optimizer step, one validation and
one checkpoint as small functions."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel

from cmdrec.artifacts.adapters import trainable_state
from cmdrec.artifacts.checkpoint import (
    SHARDED,
    prune_checkpoints,
    save_checkpoint,
    staging_directory,
)
from cmdrec.artifacts.loading import is_adapter_run
from cmdrec.artifacts.runs import RunDir
from cmdrec.config import RunConfig, to_dict
from cmdrec.data.masking import mask_batch
from cmdrec.data.sequences import SequenceData
from cmdrec.errors import InputError
from cmdrec.training import fsdp
from cmdrec.training.distributed import (
    World,
    barrier,
    broadcast,
    gather,
)
from cmdrec.training.evaluate import evaluate
from cmdrec.training.objective import objective
from cmdrec.training.schedule import lr_multiplier

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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
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
    if fsdp.is_sharded(trainer.model):  # FSDP's counterpart of no_sync
        trainer.model.set_requires_gradient_sync(sync)
    with no_sync:
        with autocast:
            output = trainer.model(masked)
        routed = model_config.experts.experts_per_token if model_config.experts else 1
        loss, parts = objective(output, masked, config.loss, routed, trainer.trained_items)
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
    rank's RNG state goes into the checkpoint, which rank 0 alone writes (each rank its own shards,
    when the checkpoints are sharded)."""
    state, run, world = trainer.state, trainer.run, trainer.world
    model_config = trainer.config.model
    per_rank = gather(world, torch.get_rng_state())
    cuda_per_rank = gather(world, torch.cuda.get_rng_state()) if torch.cuda.is_available() else None
    sharded = fsdp.is_sharded(trainer.module)
    shards = sharded and trainer.config.training.fsdp.sharded_checkpoints
    weights = optimizer_state = None
    if shards:
        staging = staging_directory(run.checkpoints, state.step)
        if world.main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        barrier(world)
        fsdp.save_sharded(trainer.module, trainer.optimizer, staging / SHARDED)
    elif sharded:  # gathered by every rank, written by rank 0
        weights = fsdp.full_model_state(trainer.module)
        optimizer_state = fsdp.full_optimizer_state(trainer.module, trainer.optimizer)
    if not world.main:
        barrier(world)
        return
    if not sharded:
        weights = trainable_state(trainer.module) if is_adapter_run(model_config) else None
        optimizer_state = trainer.optimizer.state_dict()
    elif weights is not None and is_adapter_run(model_config):
        trainable = {name for name, p in trainer.module.named_parameters() if p.requires_grad}
        weights = {name: tensor for name, tensor in weights.items() if name in trainable}
    trainer_state = {
        **({} if shards else {"optimizer": optimizer_state}),  # a sharded one is in the shards
        "rng": {
            "torch": torch.get_rng_state(),
            **({"torch_per_rank": per_rank} if world.distributed else {}),
            **({"cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {}),
            **({"cuda_per_rank": cuda_per_rank} if world.distributed and cuda_per_rank else {}),
        },
        "position": dataclasses.asdict(state),
        **({"ema_n_averaged": int(trainer.ema.n_averaged)} if trainer.ema is not None else {}),
    }
    save_checkpoint(
        run.checkpoints,
        state.step,
        trainer.module,
        trainer_state,
        to_dict(model_config),
        metrics,
        trainer.ema.module if trainer.ema else None,
        weights,
        partial=is_adapter_run(model_config),
        staged_shards=shards,
    )
    protect = {run.checkpoints / f"{state.best_step:08d}"} if state.best_step is not None else set()
    prune_checkpoints(run.checkpoints, trainer.config.training.keep_checkpoints, protect)
    run.set_status("running", step=state.step, best=state.best)
    barrier(world)

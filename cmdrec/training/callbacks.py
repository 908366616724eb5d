"""The built-in callbacks: logs, trackers, checkpoints and early stopping."""

from __future__ import annotations

from cmdrec.artifacts.runs import CsvLog
from cmdrec.config import to_dict
from cmdrec.training.trackers import Trackers
from cmdrec.training.trainer import Callback, Trainer, write_checkpoint


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

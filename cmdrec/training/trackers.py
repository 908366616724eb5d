"""Metric trackers: TensorBoard event files always; Weights & Biases when asked for and installed."""

from __future__ import annotations

import logging
from pathlib import Path

from cmdrec.errors import InputError

log = logging.getLogger(__name__)


class Trackers:
    def __init__(self, run_path: Path, config: dict, wandb_project: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(str(run_path / "tensorboard"))
        self.wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError as error:
                raise InputError(
                    "training.wandb_project is set but wandb is not installed: pip install wandb"
                ) from error
            self.wandb = wandb.init(
                project=wandb_project, name=run_path.name, config=config, dir=str(run_path), resume="allow"
            )

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.tensorboard.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()

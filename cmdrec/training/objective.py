"""The training objective, composed outside the model: the next-command loss, each auxiliary
task's loss with its weight, and the router load-balancing loss of mixture-of-experts backbones."""

from __future__ import annotations

import torch

from cmdrec.batch import Batch
from cmdrec.config import LossConfig
from cmdrec.losses import classification_loss, load_balancing
from cmdrec.models.recommender import ModelOutput
from cmdrec.schema import FIRST_VALUE_ID


def objective(
    output: ModelOutput,
    batch: Batch,
    config: LossConfig,
    experts_per_token: int = 2,
    trained_items: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (for logging). `trained_items` (bool per command id) limits the
    next-command softmax to commands present in training: the others, catalogue commands training
    never saw, would otherwise only ever be pushed down, and could never be recommended later."""
    loss_fn = classification_loss(config.name)
    parts = {}
    total = None
    for task, logits in output.logits.items():
        targets = batch.targets[task][batch.loss_mask]
        if task == batch.item_column:
            if trained_items is not None:
                logits = logits.masked_fill(~trained_items, torch.finfo(logits.dtype).min)
            loss = loss_fn(logits, targets, config)
        else:
            known = targets >= FIRST_VALUE_ID  # a label can be out of vocabulary where the command is not
            if not known.any():
                continue
            loss = config.aux_weight * loss_fn(logits[known], targets[known], config)
        parts[task] = loss.item()
        total = loss if total is None else total + loss
    if "router_logits" in output.auxiliary and config.moe_balance > 0:
        balance = config.moe_balance * load_balancing(
            output.auxiliary["router_logits"], experts_per_token, batch.padding_mask
        )
        parts["moe_balance"] = balance.item()
        total = total + balance
    return total, parts

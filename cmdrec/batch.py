"""The batch that flows from the data loader through masking into a model: explicit tensors only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # (B, T) per input column: int64 categorical, float32 continuous
    padding_mask: torch.Tensor  # (B, T) bool, True where an event is
    targets: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T) per predicted column
    loss_mask: torch.Tensor | None = None  # (B, T) bool: positions whose targets are predicted
    item_column: str = "command"

    @property
    def items(self) -> torch.Tensor:
        return self.features[self.item_column]

    def predicted_histories(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For each predicted position (b, t): the inputs of row b, and which of them are visible
        history (real events at positions <= t)."""
        rows, cols = self.loss_mask.nonzero(as_tuple=True)
        inputs = self.items[rows]
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        return inputs, (positions[None, :] <= cols[:, None]) & self.padding_mask[rows]

    def to(self, device) -> Batch:
        move = lambda tensors: {k: v.to(device, non_blocking=True) for k, v in tensors.items()}  # noqa: E731
        return replace(
            self,
            features=move(self.features),
            padding_mask=self.padding_mask.to(device),
            targets=move(self.targets),
            loss_mask=None if self.loss_mask is None else self.loss_mask.to(device),
        )

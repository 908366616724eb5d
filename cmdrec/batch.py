"""The batch that flows from the data loader through masking into a model: explicit tensors only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from cmdrec.schema import PAD_ID


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # (B, T) per input column: int64 categorical, float32 continuous
    padding_mask: torch.Tensor  # (B, T) bool, True where an event is
    targets: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, T) per predicted column
    loss_mask: torch.Tensor | None = None  # (B, T) bool: positions whose targets are predicted
    item_column: str = "command"
    # (B, E) item ids of the session before the window, PAD-padded: evaluation windows of long
    # sessions, loaded only to exclude every seen item, not only those in the window
    earlier_items: torch.Tensor | None = None

    @property
    def items(self) -> torch.Tensor:
        return self.features[self.item_column]

    def predicted_histories(self, include_earlier: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """For each predicted position (b, t): the inputs of row b, and which of them are visible
        history (real events at positions <= t); with `include_earlier`, preceded by the events
        before the window."""
        rows, cols = self.loss_mask.nonzero(as_tuple=True)
        inputs = self.items[rows]
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        visible = (positions[None, :] <= cols[:, None]) & self.padding_mask[rows]
        if include_earlier and self.earlier_items is not None:
            earlier = self.earlier_items[rows]
            return torch.cat([earlier, inputs], 1), torch.cat([earlier != PAD_ID, visible], 1)
        return inputs, visible

    def to(self, device) -> Batch:
        move = lambda tensors: {k: v.to(device, non_blocking=True) for k, v in tensors.items()}  # noqa: E731
        return replace(
            self,
            features=move(self.features),
            padding_mask=self.padding_mask.to(device),
            targets=move(self.targets),
            loss_mask=None if self.loss_mask is None else self.loss_mask.to(device),
            earlier_items=None if self.earlier_items is None else self.earlier_items.to(device),
        )

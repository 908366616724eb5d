"""Full-ranking metrics: every item is ranked, no sampled negatives.

The rank of a target is the number of items scored above it plus the number of other items tied
with it (ties count against the model, so a constant scorer gets no credit)."""

from __future__ import annotations

import torch


def target_ranks(logits: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each target among all items; `exclude` (N, V) bool removes items from the ranking."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    if exclude is not None:
        exclude = exclude.clone()
        exclude[torch.arange(len(targets)), targets] = False  # the target itself is always ranked
        logits = logits.masked_fill(exclude, float("-inf"))
    target_scores = logits.gather(1, targets[:, None])
    above = (logits > target_scores).sum(1)
    tied = (logits == target_scores).sum(1) - 1
    return above + tied


def seen_items(inputs: torch.Tensor, visible: torch.Tensor, n_items: int) -> torch.Tensor:
    """(N, V) bool: items present among the visible inputs of each predicted position."""
    seen = torch.zeros(len(inputs), n_items, dtype=torch.bool, device=inputs.device)
    visible = visible & (inputs < n_items)  # mlm's mask id lies past the vocabulary
    seen.scatter_(1, torch.where(visible, inputs, 0), True)
    seen[:, 0] = False  # padding
    return seen


class RankingMetrics:
    """Accumulates NDCG, Recall (hit rate) and MRR at each k over batches of ranks."""

    def __init__(self, ks: tuple[int, ...] = (3, 5, 10)):
        self.ks = ks
        self.sums = {f"{name}@{k}": 0.0 for k in ks for name in ("ndcg", "recall", "mrr")}
        self.count = 0

    def add(self, ranks: torch.Tensor) -> None:
        ranks = ranks.double()
        for k in self.ks:
            hit = ranks < k
            self.sums[f"recall@{k}"] += hit.sum().item()
            self.sums[f"ndcg@{k}"] += torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).sum().item()
            self.sums[f"mrr@{k}"] += torch.where(hit, 1.0 / (ranks + 1.0), 0.0).sum().item()
        self.count += len(ranks)

    def result(self) -> dict[str, float]:
        return {name: total / max(self.count, 1) for name, total in self.sums.items()}


BUCKETS = ("head", "torso", "tail", "unseen")
UNSEEN = BUCKETS.index("unseen")


def frequency_buckets(train_counts: torch.Tensor, head_share: float = 0.5, torso_share: float = 0.3) -> torch.Tensor:
    """Bucket of each item id by training frequency: the most frequent items that together make
    `head_share` of training events are the head, the next `torso_share` the torso, the rest
    the tail; items never seen in training are their own bucket. Returns 0 / 1 / 2 / 3 per id."""
    order = torch.argsort(train_counts, descending=True, stable=True)
    cumulative = torch.cumsum(train_counts[order].double(), 0) / train_counts.sum().clamp(min=1)
    share_before = cumulative - train_counts[order].double() / train_counts.sum().clamp(min=1)
    bucket_in_order = torch.where(
        share_before < head_share, 0, torch.where(share_before < head_share + torso_share, 1, 2)
    )
    buckets = torch.empty_like(order)
    buckets[order] = bucket_in_order
    return torch.where(train_counts == 0, UNSEEN, buckets)

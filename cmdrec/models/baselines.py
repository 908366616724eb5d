"""Non-neural baselines that any honest comparison needs. Each is fitted on the training windows
(item arrays, right-padded) and scores the positions a masked batch asks for, like the neural
models. Ties are left to the metrics, which rank them pessimistically. Scores are float64: the
popularity tie-breaks are many orders of magnitude below the main scores."""

from __future__ import annotations

import numpy as np
import torch

from cmdrec.batch import Batch
from cmdrec.errors import InputError
from cmdrec.models.recommender import ModelOutput
from cmdrec.schema import FIRST_VALUE_ID, PAD_ID

NEG = torch.finfo(torch.float64).min


class CountBaseline:
    """Shared plumbing: item popularity as a target, from the training windows."""

    def __init__(self, n_items: int, item_column: str):
        self.n_items = n_items
        self.item_column = item_column
        self.popularity = torch.zeros(n_items, dtype=torch.float64)

    def fit(self, items: np.ndarray, lengths: np.ndarray) -> CountBaseline:
        # a window's first event is no target (windows overlap by one event): every target counted once
        counts = np.bincount(items[:, 1:][items[:, 1:] != PAD_ID], minlength=self.n_items)
        self.popularity = torch.from_numpy(counts[: self.n_items]).double()
        self.popularity[:FIRST_VALUE_ID] = 0
        return self

    STATE = ("popularity",)  # what fitting computes

    def state(self) -> dict[str, torch.Tensor]:
        """The fitted counts, so a saved baseline loads without refitting."""
        return {name: getattr(self, name).contiguous() for name in self.STATE}

    def load_state(self, state: dict[str, torch.Tensor]) -> CountBaseline:
        expected = set(self.STATE)
        if set(state) != expected or len(state["popularity"]) != self.n_items:
            raise InputError(
                f"{type(self).__name__}: saved state holds {sorted(state)} for {len(state.get('popularity', []))} "
                f"items, expected {sorted(expected)} for {self.n_items}"
            )
        for name, value in state.items():
            setattr(self, name, value)
        return self

    def _finish(self, scores: torch.Tensor) -> ModelOutput:
        scores[:, :FIRST_VALUE_ID] = NEG
        return ModelOutput(logits={self.item_column: scores})

    def eval(self):  # same surface as an nn.Module for the evaluation loop
        return self


class MostPopular(CountBaseline):
    def __call__(self, batch: Batch) -> ModelOutput:
        n = int(batch.loss_mask.sum())
        return self._finish(self.popularity.expand(n, -1).clone())


class RepeatLast(CountBaseline):
    """Commands repeat: rank items of the session so far by recency, then by popularity."""

    def __call__(self, batch: Batch) -> ModelOutput:
        inputs, visible = batch.predicted_histories()
        recency = torch.where(visible, torch.arange(1, inputs.shape[1] + 1, dtype=torch.float64)[None, :], 0.0)
        scores = torch.zeros(len(inputs), self.n_items, dtype=torch.float64).scatter_reduce(
            1, inputs, recency, reduce="amax"
        )
        # popularity breaks ties among unseen items without ever outranking a seen one
        return self._finish(scores * (self.popularity.max() + 1) + self.popularity)


class Markov(CountBaseline):
    """First-order Markov chain: counts of next item after the last one, backing off to popularity.

    Transition counts are kept as compressed rows (CSR): a dense V x V table would not fit for
    item catalogues like Amazon Beauty's 54k items."""

    STATE = ("popularity", "row_start", "next_items", "counts")

    def fit(self, items: np.ndarray, lengths: np.ndarray) -> Markov:
        super().fit(items, lengths)
        previous, following = items[:, :-1].ravel(), items[:, 1:].ravel()
        keep = (previous != PAD_ID) & (following != PAD_ID)
        keys, counts = np.unique(previous[keep].astype(np.int64) * self.n_items + following[keep], return_counts=True)
        self.row_start = torch.from_numpy(np.searchsorted(keys // self.n_items, np.arange(self.n_items + 1)))
        self.next_items = torch.from_numpy(keys % self.n_items)
        self.counts = torch.from_numpy(counts.astype(np.float64))
        return self

    def __call__(self, batch: Batch) -> ModelOutput:
        rows, cols = batch.loss_mask.nonzero(as_tuple=True)
        last = batch.items[rows, cols]
        starts, sizes = self.row_start[last], self.row_start[last + 1] - self.row_start[last]
        owner = torch.repeat_interleave(torch.arange(len(last)), sizes)
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
        entries = starts[owner] + within
        scores = torch.zeros(len(last), self.n_items, dtype=torch.float64)
        scores[owner, self.next_items[entries]] = self.counts[entries]
        back_off = self.popularity / (self.popularity.sum() + 1)  # below one count: only breaks ties
        return self._finish(scores + back_off)

"""Recommend the next commands for live sessions.

A `Predictor` loads a finished run (or a merged export), the feature workflow saved by
preprocessing, and the run's data schema. A history of raw command names (with timestamps when the
model uses time features, and the values of the event attributes it uses, such as the developer)
goes through the same workflow as the training data, keeps the most
recent events the model was trained on, and is scored with `next_event` masking, so a suggestion
equals what evaluation would compute for that history.

The history should be cleaned like the training log (the processing step's noise filters and
repeat collapsing); commands the vocabulary does not know are fed as out-of-vocabulary and listed in
the answer, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import torch

from cmdrec.artifacts.bundle import load_model_dir
from cmdrec.data.masking import next_event
from cmdrec.data.pipeline import WORKFLOW_DIR
from cmdrec.data.readers import COMMAND, TIME, USER
from cmdrec.data.sequences import SequenceData, load_schema
from cmdrec.data.sessions import SESSION
from cmdrec.data.workflow import TIME_FEATURES, Workflow
from cmdrec.errors import InputError
from cmdrec.features.embeddings import mask_ids
from cmdrec.models.build import input_columns
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.training.metrics import seen_items


@dataclass(frozen=True)
class Recommendation:
    commands: list[str]  # best first
    scores: list[float]  # the model's score of each (logit or count); higher is better
    unknown_commands: list[str]  # history commands outside the vocabulary, fed as out-of-vocabulary


class Predictor:
    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.model, self.config = load_model_dir(run_dir, device)
        self.device = torch.device(device)
        data_dir = Path(self.config.data_dir)
        self.schema = load_schema(data_dir)
        self.workflow = Workflow.load(data_dir / WORKFLOW_DIR)
        self.columns = input_columns(self.config.model, self.schema)
        self.mask_ids = mask_ids(self.schema, self.columns)
        self.names = ["<pad>", "<oov>", *self.workflow.categorify[COMMAND].values]  # by command id
        self.needs_time = [c for c in self.columns if c in TIME_FEATURES]
        # categorical columns that describe the event, not the command: the caller sends their values
        catalogue = set() if self.workflow.catalogue is None else set(self.workflow.catalogue.columns)
        self.attributes = [c for c in self.workflow.config.categorical_columns if c not in catalogue]
        self.needs_attributes = [c for c in self.attributes if c in self.columns]

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        timestamps: Sequence[datetime] | None = None,
        exclude_seen: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> Recommendation:
        return self.recommend_many(
            [history],
            k,
            None if timestamps is None else [timestamps],
            exclude_seen,
            None if attributes is None else [attributes],
        )[0]

    @torch.no_grad()
    def recommend_many(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        timestamps: Sequence[Sequence[datetime]] | None = None,
        exclude_seen: bool = False,
        attributes: Sequence[Mapping[str, str]] | None = None,
    ) -> list[Recommendation]:
        """The top `k` next commands of each history, in one batch. `attributes`: per history, the
        value of each event attribute the model uses (`needs_attributes`), held for the whole history."""
        if not histories:
            return []
        events = self._events(histories, timestamps, attributes)
        sequences, _ = self.workflow.transform(events)
        # the model's inputs were at most max_length - 1 events (one position is the target)
        data = SequenceData.from_frame(
            sequences,
            self.schema,
            self.columns,
            self.config.model.max_length - 1,
            "eval",
            data_dir=self.config.data_dir,
        )
        batch = next_event(data.batch(np.arange(len(data))), self.config.model.masking, self.mask_ids).to(self.device)
        scores = self.model(batch).logits[self.schema.item_id.name].float()
        if exclude_seen:
            scores = scores.masked_fill(seen_items(*batch.predicted_histories(), scores.shape[1]), float("-inf"))
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        known = set(self.workflow.categorify[COMMAND].values)
        answers = []
        for ids, values, history in zip(top.indices.tolist(), top.values.tolist(), histories, strict=False):
            # reserved ids and excluded commands score lowest: they reach the top k only when too few others remain
            ranked = [(i, v) for i, v in zip(ids, values, strict=False) if i >= FIRST_VALUE_ID and v != float("-inf")]
            answers.append(
                Recommendation(
                    [self.names[i] for i, _ in ranked], [v for _, v in ranked], [c for c in history if c not in known]
                )
            )
        return answers

    def _events(
        self,
        histories: Sequence[Sequence[str]],
        timestamps: Sequence[Sequence[datetime]] | None,
        attributes: Sequence[Mapping[str, str]] | None,
    ) -> pl.DataFrame:
        if timestamps is None and self.needs_time:
            raise InputError(
                f"the model uses the time feature(s) {self.needs_time}: pass the timestamp of every history event"
            )
        if attributes is not None and len(attributes) != len(histories):
            raise InputError(f"{len(histories)} histories but {len(attributes)} sets of attributes")
        unknown = sorted({name for given in attributes or [] for name in given} - set(self.attributes))
        if unknown:
            raise InputError(f"unknown event attribute(s) {unknown}: this model's data has {self.attributes or 'none'}")
        missing = [
            c for c in self.needs_attributes if attributes is None or any(c not in given for given in attributes)
        ]
        if missing:
            raise InputError(
                f"the model uses the event attribute(s) {missing}: pass each history's value "
                f"(attributes={{{missing[0]!r}: ...}}; cmdrec recommend --attribute {missing[0]}=VALUE)"
            )
        for index, history in enumerate(histories):
            if isinstance(history, str) or len(history) == 0:
                raise InputError(f"history {index}: expected a non-empty list of command names, got {history!r}")
            if timestamps is not None and len(timestamps[index]) != len(history):
                raise InputError(f"history {index}: {len(history)} commands but {len(timestamps[index])} timestamps")
        session = [index for index, history in enumerate(histories) for _ in history]
        return pl.DataFrame(
            {
                USER: [str(index) for index in session],
                SESSION: session,
                COMMAND: [str(command) for history in histories for command in history],
                TIME: None if timestamps is None else [t for times in timestamps for t in times],
                # an attribute the model does not use may be left out: it is read as out-of-vocabulary
                **{
                    c: [
                        None if attributes is None or c not in attributes[i] else str(attributes[i][c]) for i in session
                    ]
                    for c in self.attributes
                },
            },
            schema_overrides={TIME: pl.Datetime("us"), SESSION: pl.Int64, **{c: pl.Utf8 for c in self.attributes}},
        )

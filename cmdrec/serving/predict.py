"""Recommend the next commands for live histories.

A `Predictor` loads a bundle (or a finished run), its feature workflow and schema. A history of raw
command names (with timestamps when the model uses time features or the session gap should apply,
and the values of the event attributes the model uses, such as the developer) is first cleaned as
the training log was (noise commands dropped, repeats collapsed, as the
dataset's `processing.json` records; see `clean_history`), then encoded like the training data, keeps the most recent
events the model reads, and is scored with `next_event` masking, so a suggestion equals what
evaluation computes for that history. Commands the vocabulary does not know are fed as
out-of-vocabulary and listed in the answer, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl
import torch

from cmdrec.artifacts.bundle import hash_value, is_bundle, load_model_dir, read_bundle_info
from cmdrec.config import ProcessingConfig, from_dict
from cmdrec.data.dataset import PreparedDataset
from cmdrec.data.derived import time_features, utc_time
from cmdrec.data.masking import next_event
from cmdrec.data.sessions import clean_history
from cmdrec.data.tokens import token_extensions
from cmdrec.data.undo import UndoRules
from cmdrec.errors import RequestError
from cmdrec.features.embeddings import mask_ids
from cmdrec.models.build import model_columns
from cmdrec.models.registry import component
from cmdrec.models.tokens import first_commands, score_next_commands
from cmdrec.schema import FIRST_VALUE_ID
from cmdrec.serving.encode import HistoryEncoder
from cmdrec.training.metrics import seen_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedHistory:
    """A validated, cleaned history, ready to be scored with others in one batch."""

    commands: list[str]
    timestamps: list[datetime] | None
    attributes: dict[str, str | None]  # as the vocabulary stores them
    unknown_commands: list[str]
    removed: dict[str, int]


@dataclass(frozen=True)
class Recommendation:
    commands: list[str]  # best first
    scores: list[float]  # the model's score of each (logit or count); higher is better
    probabilities: list[float]  # each one's share of the model's distribution over the whole vocabulary
    unknown_commands: list[str]  # history commands outside the vocabulary, fed as out-of-vocabulary
    removed: dict[str, int] = field(default_factory=dict)  # events the cleaning removed, by step


class Predictor:
    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = Path(path)
        self.model, self.config = load_model_dir(path, device)
        self.device = torch.device(device)
        self.info = read_bundle_info(path) if is_bundle(path) else None
        self.salts = (self.info or {}).get("attribute_salts", {})
        data_dir = Path(self.config.data_dir)
        dataset = PreparedDataset(data_dir)
        self.schema = dataset.schema()
        self.workflow = dataset.workflow()
        self.columns = model_columns(self.config.model, self.schema)
        self.mask_ids = mask_ids(self.schema, self.columns)
        self.neural = component(self.config.model.backbone).neural
        self.encoder = HistoryEncoder(self.workflow, self.schema, self.columns, data_dir, self.max_events)
        self.attributes = self.encoder.attributes
        self.needs_attributes = [c for c in self.attributes if c in self.columns]
        self.needs_time = [c for c in self.columns if c in time_features()]
        items = dataset.items()
        self.names = items["name"].to_list()  # by command id
        self.known = set(self.names[FIRST_VALUE_ID:])
        self._index = {name: i for i, name in enumerate(self.names)}
        self.categories = _column(items, "category_name")
        self.descriptions = _column(items, "description")
        self.first = first_commands(self.schema)  # each item id's first command, when they are workflow tokens
        self.extensions = token_extensions(self.schema)
        tokens = self.workflow.tokens
        parts = [] if tokens is None else tokens.composites
        self.token_commands = [[name] for name in self.names] + [[self.names[i] for i in p] for p in parts]
        self.processing, self.noise, self.undo = _processing(dataset)
        if self.processing is None:
            log.warning("%s records no processing settings: histories are scored as given, uncleaned", data_dir)

    @property
    def max_events(self) -> int:
        return self.config.model.history_length

    @property
    def vocabulary(self) -> list[str]:
        return self.names[FIRST_VALUE_ID:]

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
        check_k(k)
        for name, given in (("timestamps", timestamps), ("attributes", attributes)):
            if given is not None and len(given) != len(histories):
                raise RequestError(name, f"{len(histories)} histories but {len(given)} {name}")
        one = len(histories) == 1
        prepared = [
            self.prepare(
                history,
                None if timestamps is None else timestamps[index],
                None if attributes is None else attributes[index],
                prefix="" if one else f"histories[{index}].",
            )
            for index, history in enumerate(histories)
        ]
        return self.score(prepared, k, exclude_seen)

    def prepare(
        self,
        history: Sequence[str],
        timestamps: Sequence[datetime] | None = None,
        attributes: Mapping[str, str] | None = None,
        prefix: str = "",
    ) -> PreparedHistory:
        """Validate and clean one history; `prefix` ("requests[3].") places its errors within a batch."""
        if timestamps is None and self.needs_time:
            raise RequestError(
                f"{prefix}timestamps", f"the model uses the time feature(s) {self.needs_time}: pass every event's time"
            )
        given = attributes or {}
        unknown = sorted(set(given) - set(self.attributes))
        if unknown:
            raise RequestError(
                f"{prefix}attributes.{unknown[0]}",
                f"unknown event attribute; this model's data has {self.attributes or 'none'}",
            )
        missing = [c for c in self.needs_attributes if given.get(c) is None]
        if missing:
            raise RequestError(f"{prefix}attributes.{missing[0]}", _missing_attribute(missing))
        field = f"{prefix}history"
        if isinstance(history, str) or not isinstance(history, Sequence) or len(history) == 0:
            raise RequestError(field, f"expected a non-empty list of command names, got {history!r}")
        for position, command in enumerate(history):
            if not isinstance(command, str):
                raise RequestError(f"{field}[{position}]", f"expected a command name, got {command!r}")
        stamps = None if timestamps is None else _checked_times(timestamps, len(history), f"{prefix}timestamps")
        if self.processing is None:
            keep, counts = list(range(len(history))), {}
        else:
            keep, counts = clean_history(list(history), self.processing, self.noise, self.undo)
        if not keep:
            raise RequestError(field, f"nothing is left after cleaning it as the training log was ({counts})")
        return PreparedHistory(
            [history[i] for i in keep],
            None if stamps is None else [stamps[i] for i in keep],
            self._attribute_values(given),
            [c for c in history if c not in self.known],
            {step: n for step, n in counts.items() if n},
        )

    @torch.inference_mode()
    def score(self, prepared: Sequence[PreparedHistory], k: int, exclude_seen: bool = False) -> list[Recommendation]:
        """The top `k` of prepared histories, in one forward pass."""
        if not prepared:
            return []
        if exclude_seen and self.first is not None:
            raise RequestError("exclude_seen", "not available for a model that reads workflow tokens")
        batch, scores = self._forward(prepared)
        distribution = _distribution(scores, self.neural)
        if exclude_seen:
            scores = scores.masked_fill(seen_items(*batch.predicted_histories(), scores.shape[1]), float("-inf"))
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        answers = []
        for row, (ids, values) in enumerate(zip(top.indices.tolist(), top.values.tolist(), strict=True)):
            # reserved ids and excluded commands score lowest: they reach the top k only when too few others remain
            ranked = [(i, v) for i, v in zip(ids, values, strict=True) if i >= FIRST_VALUE_ID and v != float("-inf")]
            answers.append(
                Recommendation(
                    [self.names[i] for i, _ in ranked],
                    [v for _, v in ranked],
                    [float(distribution[row, i]) for i, _ in ranked],
                    prepared[row].unknown_commands,
                    prepared[row].removed,
                )
            )
        return answers

    def _batch(self, prepared: Sequence[PreparedHistory]):
        times = None if any(p.timestamps is None for p in prepared) else [p.timestamps for p in prepared]
        encoded = self.encoder.encode([p.commands for p in prepared], times, [p.attributes for p in prepared])
        return next_event(encoded, self.config.model.masking, self.mask_ids)

    def _forward(self, prepared: Sequence[PreparedHistory]):
        """The batch of the histories and the model's score of every command (as evaluation scores it)."""
        batch = self._batch(prepared)
        scores, _, _ = score_next_commands(self.model, batch.to(self.device), self.first, self.extensions)
        return batch, scores.float().cpu()

    @torch.inference_mode()
    def recommend_workflows(self, history: Sequence[str], k: int = 5, timestamps=None, attributes=None):
        """The `k` likeliest next tokens, workflows among them, as (their commands, probability)."""
        check_k(k)
        if self.first is None:
            raise RequestError("workflows", "this model reads single commands: it has no workflow tokens")
        batch = self._batch([self.prepare(history, timestamps, attributes)]).to(self.device)
        probabilities = torch.softmax(self.model(batch).logits[self.schema.item_id.name][0].float().cpu(), 0)
        top = probabilities[FIRST_VALUE_ID:].topk(min(k, len(probabilities) - FIRST_VALUE_ID))
        runs = [self.token_commands[i + FIRST_VALUE_ID] for i in top.indices.tolist()]
        return list(zip(runs, top.values.tolist(), strict=True))

    def describe(self, command: str) -> tuple[str | None, str | None]:
        """(category, description) of a vocabulary command."""
        index = self._index.get(command)
        if index is None:
            return None, None
        return self.categories[index], self.descriptions[index]

    def _attribute_values(self, given: Mapping[str, str]) -> dict[str, str | None]:
        """Attribute values as the vocabulary stores them (salted hashes in a bundle that hashes them)."""
        values = {}
        for name in self.attributes:
            value = given.get(name)
            if value is not None:
                value = str(value)
                if name in self.salts:
                    value = hash_value(self.salts[name], value)
            values[name] = value
        return values


def check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError("k", f"expected a positive integer, got {k!r}")


def _checked_times(stamps, n_commands: int, where: str) -> list[datetime]:
    if isinstance(stamps, str) or not isinstance(stamps, Sequence):
        raise RequestError(where, f"expected a list of times, got {stamps!r}")
    if len(stamps) != n_commands:
        raise RequestError(where, f"{n_commands} commands but {len(stamps)} timestamps")
    previous = None
    for position, stamp in enumerate(stamps):
        if not isinstance(stamp, datetime):
            raise RequestError(f"{where}[{position}]", f"expected a date and time, got {stamp!r}")
        try:
            moment = utc_time(stamp)
        except OverflowError:
            raise RequestError(f"{where}[{position}]", f"{stamp} is out of the range of times") from None
        if previous is not None and moment < previous:
            raise RequestError(
                f"{where}[{position}]", f"{stamp} is earlier than the event before it; send events in order"
            )
        previous = moment
    return list(stamps)


def _missing_attribute(missing: list[str]) -> str:
    return (
        f"the model uses the event attribute(s) {missing}: pass each history's value "
        f"(attributes={{{missing[0]!r}: ...}}; cmdrec recommend --attribute {missing[0]}=VALUE)"
    )


def _distribution(scores: torch.Tensor, neural: bool) -> torch.Tensor:
    """Softmax of a neural model's logits; a count baseline's scores normalised to sum to one."""
    if neural:
        return torch.softmax(scores, dim=1)
    positive = scores.clamp(min=0)
    return positive / positive.sum(1, keepdim=True).clamp(min=1e-12)


def _column(items: pl.DataFrame, name: str) -> list[str | None]:
    return items[name].to_list() if name in items.columns else [None] * items.height


def _processing(dataset: PreparedDataset) -> tuple[ProcessingConfig | None, frozenset[str], UndoRules | None]:
    path = dataset.processing_path
    if not path.is_file():
        return None, frozenset(), None
    record = json.loads(path.read_text())
    if record.get("processing") is None:
        return None, frozenset(), None
    undo = None if record.get("undo") is None else UndoRules.from_dict(record["undo"])
    return from_dict(ProcessingConfig, record["processing"]), frozenset(record["noise_commands"]), undo

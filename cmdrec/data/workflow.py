"""The feature workflow: fitted on the training split, saved to a directory, re-applied unchanged
to validation, test and live requests.

Its contract follows NVTabular's: Categorify gives each column ids with 0 reserved for padding and
1 for out-of-vocabulary (values seen fewer than `min_count` times in train included), Normalize
standardises continuous columns with train statistics, and the output is one row per session
with list columns plus a tagged schema. Fitting is a handful of aggregations and transforming is
joins and column expressions over the flat event table, so a lazy or distributed engine can run
the same steps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cmdrec import __version__
from cmdrec.config import FeatureConfig, from_dict, to_dict
from cmdrec.data.dataset import ITEMS_FILE, TOKENIZER_FILE, WORKFLOW_FILE
from cmdrec.data.dataset import WORKFLOW_CATALOGUE as CATALOGUE_FILE
from cmdrec.data.derived import derive_continuous, time_features
from cmdrec.data.readers import COMMAND, DESCRIPTION, NO_CATEGORY, TIME, USER
from cmdrec.data.sessions import SESSION
from cmdrec.data.tokens import WorkflowTokens
from cmdrec.errors import InputError
from cmdrec.io import write_json_atomic, write_parquet_atomic
from cmdrec.schema import FIRST_VALUE_ID, OOV_ID, PAD_ID, ColumnSpec, Schema, Tag

LENGTH = "length"


@dataclass(frozen=True)
class Categorify:
    column: str
    min_count: int
    values: tuple[str, ...]  # value of id i is values[i - FIRST_VALUE_ID]
    counts: tuple[int, ...]  # training frequency of each value

    @property
    def cardinality(self) -> int:
        return len(self.values) + FIRST_VALUE_ID

    @classmethod
    def fit(cls, column: pl.Series, min_count: int, universe: pl.Series | None = None) -> Categorify:
        return cls.from_counts(column.name, column.value_counts(), min_count, universe)

    @classmethod
    def from_counts(
        cls, name: str, counts: pl.DataFrame, min_count: int, universe: pl.Series | None = None
    ) -> Categorify:
        """Ids by train frequency (`counts`: value, count); `universe` values never seen in train follow
        with count 0."""
        kept = counts.filter(pl.col("count") >= min_count).sort(["count", name], descending=[True, False])
        values, frequencies = kept[name].to_list(), kept["count"].to_list()
        if universe is not None:
            unseen = sorted(set(universe.to_list()) - set(counts[name].to_list()))
            values, frequencies = values + unseen, frequencies + [0] * len(unseen)
        return cls(name, min_count, tuple(values), tuple(frequencies))

    def mapping(self) -> pl.DataFrame:
        return pl.DataFrame(
            {self.column: list(self.values), "_id": list(range(FIRST_VALUE_ID, self.cardinality))},
            schema={self.column: pl.Utf8, "_id": pl.Int64},
        )


@dataclass(frozen=True)
class Normalize:
    column: str
    mean: float
    std: float

    @classmethod
    def fit(cls, column: pl.Series) -> Normalize:
        return cls.from_moments(column.name, Moments.of(column))

    @classmethod
    def from_moments(cls, name: str, moments: Moments) -> Normalize:
        std = math.sqrt(moments.variance) if moments.variance is not None else 0.0
        return cls(name, moments.mean, std if std > 1e-12 else 1.0)


@dataclass(frozen=True)
class Moments:
    """Count, mean and sample variance of a column; partitions combine exactly (Chan et al.)."""

    count: int
    mean: float
    variance: float | None  # None below two values

    @classmethod
    def of(cls, column: pl.Series) -> Moments:
        variance = column.var()
        return cls(
            column.len() - column.null_count(),
            float(column.mean() or 0.0),
            None if variance is None else float(variance),
        )

    def __add__(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        squares = (self.variance or 0.0) * (self.count - 1) + (other.variance or 0.0) * (other.count - 1)
        squares += delta * delta * self.count * other.count / count
        return Moments(count, self.mean + delta * other.count / count, squares / (count - 1))


@dataclass
class FitStatistics:
    """What fitting the workflow needs from the training split, summed over partitions."""

    events: int
    counts: dict[str, pl.DataFrame]  # column -> (value, count)
    moments: dict[str, Moments]
    has_time: bool

    def __add__(self, other: FitStatistics) -> FitStatistics:
        counts = {
            name: pl.concat([frame, other.counts[name]]).group_by(name).agg(pl.col("count").sum())
            for name, frame in self.counts.items()
        }
        moments = {name: value + other.moments[name] for name, value in self.moments.items()}
        return FitStatistics(self.events + other.events, counts, moments, self.has_time or other.has_time)


@dataclass
class Workflow:
    config: FeatureConfig
    categorify: dict[str, Categorify] = field(default_factory=dict)
    normalize: dict[str, Normalize] = field(default_factory=dict)
    catalogue: pl.DataFrame | None = None  # command metadata, joined onto events that lack it
    tokens: WorkflowTokens | None = None  # workflow tokens learned on the training sequences

    # ------------------------------------------------------------ fit

    @classmethod
    def fit(cls, train: pl.DataFrame, catalogue: pl.DataFrame, config: FeatureConfig) -> Workflow:
        return cls.from_statistics(cls.statistics(train, catalogue, config), catalogue, config)

    @classmethod
    def statistics(cls, train: pl.DataFrame, catalogue: pl.DataFrame, config: FeatureConfig) -> FitStatistics:
        """The counts and moments of one partition of the training split."""
        workflow = cls(config, catalogue=catalogue)
        train = workflow._with_metadata(train)
        has_time = train[TIME].null_count() < train.height
        continuous = tuple(c for c in config.continuous_columns if has_time or c not in time_features())
        raw = derive_continuous(train, continuous)
        return FitStatistics(
            train.height,
            {name: train[name].value_counts() for name in dict.fromkeys((COMMAND, *config.categorical_columns))},
            {name: Moments.of(raw[name]) for name in continuous},
            has_time,
        )

    @classmethod
    def from_statistics(cls, statistics: FitStatistics, catalogue: pl.DataFrame, config: FeatureConfig) -> Workflow:
        if statistics.events == 0:
            raise InputError("cannot fit the feature workflow: the training split is empty")
        workflow = cls(config, catalogue=catalogue)
        universe = catalogue[COMMAND] if config.vocabulary == "catalogue" else None
        counts = statistics.counts
        workflow.categorify[COMMAND] = Categorify.from_counts(
            COMMAND, counts[COMMAND], config.min_command_count, universe
        )
        for name in config.categorical_columns:
            workflow.categorify[name] = Categorify.from_counts(name, counts[name], config.min_category_count)
        for name, moments in statistics.moments.items():
            workflow.normalize[name] = Normalize.from_moments(name, moments)
        return workflow

    def continuous_columns(self, events: pl.DataFrame | None = None) -> tuple[str, ...]:
        """The configured continuous features; time features only when the log has timestamps."""
        if self.normalize:
            return tuple(self.normalize)
        has_time = events is not None and events[TIME].null_count() < events.height
        return tuple(c for c in self.config.continuous_columns if has_time or c not in time_features())

    # ------------------------------------------------------------ transform

    def transform(self, events: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
        """Canonical session events -> one row per session with list columns; report OOV counts."""
        events = self._with_metadata(events)
        report = {"events": events.height, "sessions": events[SESSION].n_unique(), "oov_events": {}}
        encoded = derive_continuous(events, tuple(self.normalize))
        for name, fitted in self.categorify.items():
            encoded = encoded.join(fitted.mapping(), on=name, how="left", maintain_order="left")
            report["oov_events"][name] = int(encoded["_id"].null_count())
            encoded = encoded.with_columns(pl.col("_id").fill_null(OOV_ID).alias(name)).drop("_id")
        encoded = encoded.with_columns(
            ((pl.col(n.column) - n.mean) / n.std).cast(pl.Float32).alias(n.column) for n in self.normalize.values()
        )
        feature_names = [*self.categorify, *self.normalize]
        sequences = (
            encoded.group_by(SESSION, maintain_order=True)
            .agg(pl.col(USER).first(), pl.len().cast(pl.Int32).alias(LENGTH), *[pl.col(n) for n in feature_names])
            .sort(SESSION)
        )
        return sequences, report

    def _with_metadata(self, events: pl.DataFrame) -> pl.DataFrame:
        """Join catalogue columns the workflow needs and the events lack (live requests carry only commands)."""
        missing = [c for c in self.config.categorical_columns if c not in events.columns]
        if not missing:
            return events
        if self.catalogue is None or any(c not in self.catalogue.columns for c in missing):
            raise InputError(f"events lack column(s) {missing} and the catalogue does not provide them")
        return events.join(
            self.catalogue.select(COMMAND, *missing), on=COMMAND, how="left", maintain_order="left"
        ).with_columns(pl.col(c).fill_null(NO_CATEGORY) for c in missing)

    # ------------------------------------------------------------ schema and items

    def output_schema(self) -> Schema:
        columns = [
            ColumnSpec(SESSION, (Tag.SESSION_ID,), "int64"),
            ColumnSpec(USER, (Tag.USER_ID,), "str"),
            ColumnSpec(LENGTH, (), "int32"),
        ]
        for name, fitted in self.categorify.items():
            tags = [Tag.CATEGORICAL, Tag.LIST]
            properties = {"pad_id": PAD_ID, "oov_id": OOV_ID, "min_count": fitted.min_count}
            cardinality = fitted.cardinality
            if name == COMMAND:
                tags.insert(0, Tag.ITEM_ID)
                if self.tokens is not None:  # ids past the commands are workflow tokens, made of these commands
                    properties |= {
                        "commands": cardinality,
                        "workflow_tokens": [list(t) for t in self.tokens.composites],
                    }
                    cardinality = self.tokens.cardinality
            if name in self.config.label_columns:
                tags.append(Tag.LABEL)
            columns.append(ColumnSpec(name, tuple(tags), "int64", cardinality, properties))
        for name, fitted in self.normalize.items():
            columns.append(
                ColumnSpec(name, (Tag.CONTINUOUS, Tag.LIST), "float32", None, {"mean": fitted.mean, "std": fitted.std})
            )
        if self.catalogue is not None and self.catalogue[DESCRIPTION].null_count() < self.catalogue.height:
            columns.append(ColumnSpec(DESCRIPTION, (Tag.TEXT,), "str", None, {"table": ITEMS_FILE, "key": COMMAND}))
        return Schema(tuple(columns))

    def items(self) -> pl.DataFrame:
        """One row per command id (reserved ids included): name, encoded metadata, description, train count."""
        commands = self.categorify[COMMAND]
        table = pl.DataFrame(
            {
                COMMAND: list(range(commands.cardinality)),
                "name": ["<pad>", "<oov>", *commands.values],
                "train_count": [0, 0, *commands.counts],
            },
            schema={COMMAND: pl.Int64, "name": pl.Utf8, "train_count": pl.Int64},
        )
        if self.catalogue is None:
            return table
        metadata = self.catalogue.rename({COMMAND: "name"})
        table = table.join(metadata, on="name", how="left", maintain_order="left")
        for name in self.config.categorical_columns:
            if name not in metadata.columns:
                continue  # an attribute of the event (a log metadata column such as a team), not of the command
            fitted = self.categorify[name]
            table = table.with_columns(pl.col(name).alias(f"{name}_name"))
            table = (
                table.join(fitted.mapping(), on=name, how="left", maintain_order="left")
                .with_columns(
                    pl.when(pl.col(COMMAND) == PAD_ID)
                    .then(PAD_ID)
                    .otherwise(pl.col("_id").fill_null(OOV_ID))
                    .alias(name)
                )
                .drop("_id")
            )
        return table

    # ------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.catalogue is not None:
            write_parquet_atomic(self.catalogue, directory / CATALOGUE_FILE)
        write_json_atomic(
            directory / WORKFLOW_FILE,
            {
                "cmdrec_version": __version__,
                "config": to_dict(self.config),
                "categorify": {
                    k: {"min_count": v.min_count, "values": list(v.values), "counts": list(v.counts)}
                    for k, v in self.categorify.items()
                },
                "normalize": {k: {"mean": v.mean, "std": v.std} for k, v in self.normalize.items()},
            },
        )
        if self.tokens is not None:
            self.tokens.save(directory)
        else:  # preprocessing again without workflow tokens: serving must not tokenize
            (directory / TOKENIZER_FILE).unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: str | Path) -> Workflow:
        directory = Path(directory)
        path = directory / WORKFLOW_FILE
        if not path.is_file():
            raise InputError(f"no saved workflow at {path}; run preprocessing first")
        state = json.loads(path.read_text())
        catalogue_path = directory / CATALOGUE_FILE
        categorify = {
            k: Categorify(k, v["min_count"], tuple(v["values"]), tuple(v["counts"]))
            for k, v in state["categorify"].items()
        }
        return cls(
            config=from_dict(FeatureConfig, state["config"]),
            categorify=categorify,
            normalize={k: Normalize(k, v["mean"], v["std"]) for k, v in state["normalize"].items()},
            catalogue=pl.read_parquet(catalogue_path) if catalogue_path.is_file() else None,
            tokens=WorkflowTokens.load(directory, categorify[COMMAND].cardinality),
        )


def event_attributes(workflow: Workflow) -> list[str]:
    """Categorical columns that describe the event (a developer, a team), not the command: a
    request carries their values, since the catalogue cannot supply them."""
    catalogue = set() if workflow.catalogue is None else set(workflow.catalogue.columns)
    return [c for c in workflow.config.categorical_columns if c not in catalogue]

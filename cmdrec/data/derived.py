"""Continuous features derived from each session's events (`features.continuous_columns`).

A feature is computed twice: over whole tables of session-ordered events when data is prepared (a
polars expression), and over one live history when it is served (plain Python over its times). Each
registered feature carries both, and a test holds every registered feature's two forms equal."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from cmdrec.data.readers import LOCAL_TIME, TIME
from cmdrec.data.sessions import SESSION
from cmdrec.errors import InputError


@dataclass(frozen=True)
class SessionColumns:
    """Expressions a feature builds on, over events ordered by session then time."""

    position: pl.Expr  # index of the event in its session, from 0
    previous_gap: pl.Expr  # time since the session's previous event (null at its first)
    clock: pl.Expr  # the local wall clock when the log gave UTC offsets, else the time as logged
    time: pl.Expr = pl.col(TIME)
    session: pl.Expr = pl.col(SESSION)


@dataclass(frozen=True)
class DerivedFeature:
    name: str
    expression: Callable[[SessionColumns], pl.Expr]  # over whole tables
    # the feature of events start..end-1 of one history, given the times of the whole history (None
    # when the request has none); the same numbers `expression` gives for those events
    values: Callable[[Sequence[datetime] | None, int, int], list[float]]
    needs_time: bool = True  # left out when a log has no timestamps


def utc_time(stamp: datetime) -> datetime:
    """Naive UTC, as the training logs hold times. A time with an offset keeps it until here, since
    hour of day and weekday are of its local wall clock (as processing computes them); a naive time
    is taken as given."""
    return stamp.astimezone(timezone.utc).replace(tzinfo=None) if stamp.tzinfo else stamp


def milliseconds(delta) -> int:
    """A timedelta in whole milliseconds, truncated toward zero as polars' total_milliseconds does."""
    total = delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds
    return int(total / 1000) if total < 0 else total // 1000


def _log_time_delta(times, start: int, end: int) -> list[float]:
    deltas = [0 if i == 0 else milliseconds(utc_time(times[i]) - utc_time(times[i - 1])) for i in range(start, end)]
    return [math.log1p(max(d, 0) / 1000.0) for d in deltas]


FEATURES: dict[str, DerivedFeature] = {}


def register_feature(feature: DerivedFeature) -> DerivedFeature:
    """Make `feature.name` usable in `features.continuous_columns`; the name must be new."""
    if feature.name in FEATURES:
        raise InputError(f"a continuous feature named {feature.name!r} is registered already")
    FEATURES[feature.name] = feature
    return feature


for _feature in (
    DerivedFeature(
        "position",
        lambda c: c.position.cast(pl.Float64),
        lambda times, start, end: [float(i) for i in range(start, end)],
        needs_time=False,
    ),
    DerivedFeature(
        "log_time_delta",
        lambda c: (c.previous_gap.dt.total_milliseconds().fill_null(0).clip(0) / 1000.0).log1p(),
        _log_time_delta,
    ),
    DerivedFeature(
        "hour",
        lambda c: c.clock.dt.hour().cast(pl.Float64) + c.clock.dt.minute().cast(pl.Float64) / 60.0,
        lambda times, start, end: [t.hour + t.minute / 60.0 for t in times[start:end]],
    ),
    DerivedFeature(
        "weekday",
        lambda c: c.clock.dt.weekday().cast(pl.Float64),
        lambda times, start, end: [float(t.isoweekday()) for t in times[start:end]],
    ),
):
    register_feature(_feature)


def feature(name: str) -> DerivedFeature:
    if name not in FEATURES:
        raise InputError(f"unknown continuous feature {name!r}; known: {sorted(FEATURES)}")
    return FEATURES[name]


def time_features() -> tuple[str, ...]:
    return tuple(name for name, f in FEATURES.items() if f.needs_time)


def derive_continuous(events: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Raw (unnormalised) continuous features of session-ordered events."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise InputError(f"features.continuous_columns: unknown feature(s) {unknown}; known: {sorted(FEATURES)}")
    clock = pl.coalesce(LOCAL_TIME, TIME) if LOCAL_TIME in events.columns else pl.col(TIME)
    start = (pl.col(SESSION) != pl.col(SESSION).shift(1)).fill_null(True)
    if events.select(start.sum()).item() == events[SESSION].n_unique():
        # each session's events are together (as processing writes them): runs, not windows, which
        # cost several times as much
        row = pl.int_range(pl.len())
        position = row - pl.when(start).then(row).otherwise(None).forward_fill()
        previous_gap = pl.when(start).then(None).otherwise(pl.col(TIME).diff())
    else:
        position = pl.int_range(pl.len()).over(SESSION)
        previous_gap = pl.col(TIME) - pl.col(TIME).shift(1).over(SESSION)
    columns = SessionColumns(position, previous_gap, clock)
    return events.with_columns(FEATURES[n].expression(columns).alias(n) for n in names)

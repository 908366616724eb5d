"""Redundant-command mining (`cmdrec mine`) and the processing step that drops reviewed pairs.

A command is redundant when it almost always comes with another: an IDE event emitted after a
command (a build's begin and done around `Build.BuildSolution`), or two names logged for one
action. For every ordered pair (accompanying a, main m) the miner counts the events of a that
have m within `window` events in the same session, either side:

- support: those events / all events;
- confidence: those events / events of a (how often a comes with m);
- lift: confidence / the share of all events that have m within the window (how much more than
  chance);
- the median time between a and the nearest m.

Candidates are ranked by confidence, then lift; a person reviews them (as the BIM paper's authors
validated theirs) and lists the pairs to drop in `processing.redundant.pairs`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cmdrec.config import RedundantConfig
from cmdrec.data.readers import COMMAND, TIME
from cmdrec.errors import InputError
from cmdrec.io import write_parquet_atomic, write_text_atomic

SESSION = "session_id"


def neighbours(events: pl.DataFrame, window: int) -> pl.DataFrame:
    """(event, its command, a command within `window` events in its session, seconds between them),
    one row per event and neighbouring command (the nearest occurrence)."""
    numbered = events.select(SESSION, COMMAND, TIME).with_row_index("_event")
    parts = []
    for offset in [*range(1, window + 1), *range(-window, 0)]:
        parts.append(
            numbered.select(
                "_event",
                pl.col(COMMAND).alias("accompanying"),
                pl.col(COMMAND).shift(-offset).alias("main"),
                pl.col(SESSION).shift(-offset).alias("_other"),
                pl.col(SESSION),
                (pl.col(TIME).shift(-offset) - pl.col(TIME)).dt.total_milliseconds().abs().alias("_gap_ms"),
                pl.lit(abs(offset)).alias("_distance"),
            ).filter((pl.col("_other") == pl.col(SESSION)) & (pl.col("main") != pl.col("accompanying")))
        )
    near = pl.concat(parts).sort("_distance")
    return near.unique(["_event", "main"], keep="first").drop("_other", "_distance")


def mine_pairs(events: pl.DataFrame, window: int = 1, min_count: int = 20) -> pl.DataFrame:
    """Ranked candidate pairs of sessionised events (`session_id`, `command`, `timestamp`)."""
    if window < 1:
        raise InputError("mine: the window must be at least 1 event")
    total = events.height
    near = neighbours(events, window)
    occurrences = events.group_by(COMMAND).len("occurrences").rename({COMMAND: "accompanying"})
    # the share of all events that have m nearby: the chance level of the confidence
    chance = near.group_by("main").agg((pl.col("_event").n_unique() / total).alias("_chance"))
    pairs = (
        near.group_by("accompanying", "main")
        .agg(pl.len().alias("together"), (pl.col("_gap_ms").median() / 1000).alias("median_gap_seconds"))
        .join(occurrences, on="accompanying")
        .join(chance, on="main")
        .filter(pl.col("occurrences") >= min_count)
        .with_columns(
            (pl.col("together") / total).alias("support"),
            (pl.col("together") / pl.col("occurrences")).alias("confidence"),
        )
        .with_columns((pl.col("confidence") / pl.col("_chance")).alias("lift"))
        .drop("_chance")
        .sort(["confidence", "lift", "accompanying", "main"], descending=[True, True, False, False])
    )
    return pairs.with_row_index("rank", offset=1).select(
        "rank", "accompanying", "main", "occurrences", "together", "support", "confidence", "lift", "median_gap_seconds"
    )


def write_mined(pairs: pl.DataFrame, out_dir: str | Path, top: int = 50, check: tuple[str, ...] = ()) -> dict:
    """`redundant_pairs.parquet` (all) and `redundant_pairs.md` (the top); with `check` (commands
    removed by hand, such as a noise preset), where each ranks as an accompanying command."""
    out = Path(out_dir)
    write_parquet_atomic(pairs, out / "redundant_pairs.parquet")
    lines = [
        "| rank | accompanying | main | events of it | with main | support | confidence | lift | median gap s |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in pairs.head(top).iter_rows(named=True):
        gap = "-" if row["median_gap_seconds"] is None else f"{row['median_gap_seconds']:.1f}"
        lines.append(
            f"| {row['rank']} | `{row['accompanying']}` | `{row['main']}` | {row['occurrences']:,} | "
            f"{row['together']:,} | {row['support']:.4f} | {row['confidence']:.3f} | {row['lift']:.1f} | {gap} |"
        )
    ranks = {}
    if check:
        first = pairs.group_by("accompanying").agg(pl.col("rank").min(), pl.col("confidence").max())
        found = {r["accompanying"]: r for r in first.iter_rows(named=True)}
        lines += ["", "Commands removed by hand, where the miner ranks each (its best pair):", ""]
        for command in check:
            row = found.get(command)
            ranks[command] = None if row is None else {"rank": row["rank"], "confidence": round(row["confidence"], 3)}
            where = (
                "not a candidate (too rare, or never beside another command)"
                if row is None
                else (f"rank {row['rank']} (confidence {row['confidence']:.3f})")
            )
            lines.append(f"- `{command}`: {where}")
    write_text_atomic(out / "redundant_pairs.md", "\n".join(lines) + "\n")
    return ranks


def drop_redundant(events: pl.DataFrame, config: RedundantConfig) -> tuple[pl.DataFrame, dict]:
    """Drop each pair's accompanying command where its main command is within `window` events in
    the session; the dropped events are counted per pair."""
    if not config.pairs:
        return events, {}
    near = neighbours(events, config.window).select("_event", "accompanying", "main")
    wanted = pl.DataFrame(
        {"accompanying": [a for a, _ in config.pairs], "main": [m for _, m in config.pairs]},
        schema={"accompanying": pl.Utf8, "main": pl.Utf8},
    )
    matched = near.join(wanted, on=["accompanying", "main"])
    dropped = matched["_event"].unique()
    per_pair = matched.group_by("accompanying", "main").len().sort("len", descending=True)
    kept = events.with_row_index("_event").filter(~pl.col("_event").is_in(dropped.implode())).drop("_event")
    return kept, {f"{a} with {m}": n for a, m, n in per_pair.iter_rows()}

"""Clean a canonical event table into sessions. Each step returns the new table and a report of
what it removed or changed, so nothing disappears unreported.

Order: sort per user -> split into sessions by inactivity gap -> drop noise commands -> collapse
consecutive repeats -> drop short sessions -> keep the most recent N events of long sessions.
Sessions are cut on all activity (a caret move still shows the person is there), before noise is
removed. All steps are column expressions over the flat table, so a lazy or distributed engine
can run them unchanged.
"""

from __future__ import annotations

import polars as pl

from cmdrec.config import ProcessingConfig
from cmdrec.data.mining import drop_redundant
from cmdrec.data.presets import noise_commands
from cmdrec.data.readers import COMMAND, ORDER, SESSION_KEY, TIME, USER
from cmdrec.data.undo import UndoRules, reconstruct, reconstruct_sessions

SESSION = "session_id"


def step_report(name: str, before: pl.DataFrame, after: pl.DataFrame, **extra) -> dict:
    sessions_before = before[SESSION].n_unique() if SESSION in before.columns else None
    sessions_after = after[SESSION].n_unique() if SESSION in after.columns else None
    report = {
        "step": name,
        "events_before": before.height,
        "events_after": after.height,
        "events_removed": before.height - after.height,
    }
    if sessions_after is not None:
        report["sessions_before"] = sessions_before
        report["sessions_after"] = sessions_after
        report["sessions_removed"] = (sessions_before or 0) - sessions_after if sessions_before is not None else 0
    return report | extra


def sort_events(events: pl.DataFrame) -> pl.DataFrame:
    """By user, time (missing first), input order."""
    key = _user_time_key(events)
    if key is None:
        return events.sort([USER, TIME, ORDER], nulls_last=False)
    if key.is_sorted():  # logs written per user in time order (the VS files): nothing to move
        return events
    # a stable sort on one integer moves the rows once; sorting on the user's string costs about twice
    return events.with_columns(key).sort(key.name, maintain_order=True).drop(key.name)


def _user_time_key(events: pl.DataFrame) -> pl.Series | None:
    """One unsigned integer per event ordered as (user, time, input order) when the events are in input
    order and the user's rank and the time since the earliest event fit in 64 bits together; else None."""
    time = events.schema[TIME]
    # finer than microseconds would tie distinct times; other temporal types do not cast to microseconds
    exact = (isinstance(time, pl.Datetime) and time.time_unit in ("us", "ms")) or time == pl.Date
    if events.height < 2 or events.schema[USER] != pl.String or not exact or events[USER].null_count():
        return None
    if not events[ORDER].is_sorted():  # the stable sort below keeps ties in frame order
        return None
    users = events[USER].unique().sort()
    micros = events[TIME].cast(pl.Datetime("us", getattr(time, "time_zone", None))).to_physical()
    earliest, latest = micros.min(), micros.max()
    span = 1 if earliest is None else latest - earliest + 2  # 0 is kept for a missing time
    if users.len().bit_length() + span.bit_length() > 64:
        return None
    rank = events[USER].cast(pl.Enum(users)).to_physical().cast(pl.UInt64)
    since = (micros - (earliest or 0) + 1).fill_null(0).cast(pl.UInt64)
    return (rank * (1 << span.bit_length()) + since).alias("_order_key")


def split_sessions(events: pl.DataFrame, gap_minutes: float) -> pl.DataFrame:
    """Number sessions: a new one starts at each user's first event and after each gap > `gap_minutes`.

    Given session keys (`session_key`) take precedence; without timestamps, a user's whole history
    is one session.
    """
    events = sort_events(events)
    new_user = pl.col(USER) != pl.col(USER).shift(1)
    if SESSION_KEY in events.columns:
        starts = new_user | (pl.col(SESSION_KEY) != pl.col(SESSION_KEY).shift(1))
    elif events[TIME].null_count() == events.height:
        starts = new_user
    else:
        gap = (pl.col(TIME) - pl.col(TIME).shift(1)).dt.total_microseconds() > int(gap_minutes * 60e6)
        starts = new_user | gap
    return events.with_columns(starts.fill_null(True).cum_sum().cast(pl.Int64).alias(SESSION))


def drop_commands(events: pl.DataFrame, commands: tuple[str, ...]) -> tuple[pl.DataFrame, dict]:
    removed = events.filter(pl.col(COMMAND).is_in(commands))
    kept = events.filter(~pl.col(COMMAND).is_in(commands))
    per_command = removed[COMMAND].value_counts().sort("count", descending=True)
    return kept, step_report("drop noise commands", events, kept, removed_per_command=dict(per_command.iter_rows()))


def collapse_repeats(events: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """Keep the first of each run of the same command within a session."""
    repeat = (pl.col(COMMAND) == pl.col(COMMAND).shift(1)) & (pl.col(SESSION) == pl.col(SESSION).shift(1))
    kept = events.filter(~repeat.fill_null(False))
    return kept, step_report("collapse consecutive repeats", events, kept)


def drop_short_sessions(events: pl.DataFrame, min_length: int) -> tuple[pl.DataFrame, dict]:
    kept = events.filter(pl.len().over(SESSION) >= min_length)
    return kept, step_report(f"drop sessions shorter than {min_length}", events, kept)


def keep_recent(events: pl.DataFrame, max_length: int) -> tuple[pl.DataFrame, dict]:
    from_end = pl.int_range(pl.len(), 0, -1).over(SESSION)  # N..1 within each session
    kept = events.filter(from_end <= max_length)
    truncated = events.group_by(SESSION).len().filter(pl.col("len") > max_length).height
    return kept, step_report(f"keep the most recent {max_length} events", events, kept, sessions_truncated=truncated)


def process_events(
    events: pl.DataFrame, config: ProcessingConfig, split: pl.DataFrame | None = None, undo: UndoRules | None = None
) -> tuple[pl.DataFrame, list[dict]]:
    """Run every configured cleaning step; return sessions and one report per step. `split`: the
    events split into sessions already; `undo`: the undo/redo rules resolved for this log."""
    reports = []
    sessions = split_sessions(events, config.session_gap_minutes) if split is None else split
    how = "given session ids" if SESSION_KEY in events.columns else f"gap {config.session_gap_minutes:g} min"
    reports.append(step_report(f"split sessions ({how})", events, sessions))
    noise = noise_commands(config.noise_preset, config.noise_commands)
    if noise:
        sessions, report = drop_commands(sessions, noise)
        reports.append(report)
    if config.redundant.pairs:
        kept, per_pair = drop_redundant(sessions, config.redundant)
        reports.append(step_report("drop redundant commands", sessions, kept, removed_per_pair=per_pair))
        sessions = kept
    if undo is not None:
        reconstructed, counts = reconstruct_sessions(sessions, undo, SESSION, COMMAND)
        reports.append(step_report("undo/redo reconstruction", sessions, reconstructed, **counts))
        sessions = reconstructed
    if config.collapse_repeats:
        sessions, report = collapse_repeats(sessions)
        reports.append(report)
    sessions, report = drop_short_sessions(sessions, config.min_session_length)
    reports.append(report)
    if config.max_session_length:
        sessions, report = keep_recent(sessions, config.max_session_length)
        reports.append(report)
    return sessions, reports


def session_statistics(events: pl.DataFrame, top: int = 10) -> dict:
    """Events, sessions, length distribution, repeat rate, share of the top commands and of session ends."""
    return combine_statistics([partial_statistics(events)], top)


def partial_statistics(events: pl.DataFrame) -> dict:
    """What `combine_statistics` needs of one partition of users (sessions never span partitions)."""
    repeat = (pl.col(COMMAND) == pl.col(COMMAND).shift(1)) & (pl.col(SESSION) == pl.col(SESSION).shift(1))
    per_session = events.group_by(SESSION).agg(pl.len(), pl.col(COMMAND).last())
    return {
        "events": events.height,
        "users": events[USER].n_unique(),
        "repeats": events.select(repeat.fill_null(False).sum()).item(),
        "lengths": per_session["len"],
        "commands": events[COMMAND].value_counts(),
        "ends": per_session[COMMAND].value_counts(),
    }


def combine_statistics(partials: list[dict], top: int = 10) -> dict:
    def summed(key: str) -> pl.DataFrame:
        frames = pl.concat([p[key] for p in partials])
        return frames.group_by(COMMAND).agg(pl.col("count").sum()).sort(["count", COMMAND], descending=[True, False])

    events = sum(p["events"] for p in partials)
    lengths = pl.concat([p["lengths"] for p in partials])
    counts, last = summed("commands"), summed("ends")
    n_sessions = lengths.len()
    return {
        "events": events,
        "sessions": n_sessions,
        "users": sum(p["users"] for p in partials),
        "commands": counts.height,
        "session_length": {
            "mean": round(float(lengths.mean()), 2),
            **{f"p{q}": float(lengths.quantile(q / 100, "nearest")) for q in (10, 25, 50, 75, 90, 99)},
            "min": int(lengths.min()),
            "max": int(lengths.max()),
        },
        "repeat_rate": round(sum(p["repeats"] for p in partials) / max(events - n_sessions, 1), 4),
        "top_commands": {c: round(n / events, 4) for c, n in counts.head(top).iter_rows()},
        # for the data plots: session lengths by power-of-two bin, and the 200 most frequent commands' counts
        "length_histogram": _length_histogram(lengths),
        "command_counts": counts.head(200)["count"].to_list(),
        "top_session_ends": {c: round(n / n_sessions, 4) for c, n in last.head(5).iter_rows()},
    }


def _length_histogram(lengths: pl.Series) -> dict[str, int]:
    """Sessions by length: 1, 2-3, 4-7, 8-15, ... (bins of powers of two)."""
    bins = lengths.cast(pl.Float64).log(2).floor().cast(pl.Int64).value_counts().sort(lengths.name)
    return {f"{2**b}-{2 ** (b + 1) - 1}" if b else "1": int(n) for b, n in bins.iter_rows()}


def combine_step_reports(partials: list[list[dict]]) -> list[dict]:
    """Step reports of user partitions summed into the report of the whole log."""
    combined = []
    for steps in zip(*partials, strict=True):
        merged = {"step": steps[0]["step"]}
        for key in steps[0]:
            if key == "step":
                continue
            if isinstance(steps[0][key], dict):
                total: dict = {}
                for step in steps:
                    for name, count in step[key].items():
                        total[name] = total.get(name, 0) + count
                merged[key] = dict(sorted(total.items(), key=lambda item: (-item[1], item[0])))
            elif steps[0][key] is None:  # sessions before they are split
                merged[key] = None
            else:
                merged[key] = sum(step[key] for step in steps)
        combined.append(merged)
    return combined


def clean_history(
    commands: list[str],
    config: ProcessingConfig,
    noise: frozenset[str],
    undo: UndoRules | None = None,
) -> tuple[list[int], dict]:
    """The events of one live history that `process_events` keeps, as indices into it: noise dropped,
    repeats collapsed, the most recent `max_session_length`. Every step is idempotent, so a history
    cleaned already (a processed session) comes through unchanged. Sessions are not cut at gaps here:
    a gap measured after noise is dropped is not the gap processing measured, and a live session idle
    past its TTL is forgotten anyway. Returns what each step removed."""
    kept = [i for i in range(len(commands)) if commands[i] not in noise]
    removed = {"noise": len(commands) - len(kept), "repeats": 0, "truncated": 0}
    if config.redundant.pairs:
        names = [commands[i] for i in kept]
        window = config.redundant.window
        mains = {}
        for accompanying, main in config.redundant.pairs:
            mains.setdefault(accompanying, set()).add(main)
        redundant = {
            n
            for n, name in enumerate(names)
            if name in mains and any(other in mains[name] for other in names[max(0, n - window) : n + window + 1])
        }
        removed["redundant"] = len(redundant)
        kept = [i for n, i in enumerate(kept) if n not in redundant]
    if undo is not None:
        standing, _ = reconstruct([commands[i] for i in kept], undo)
        removed["undone"] = len(kept) - len(standing)
        kept = [kept[i] for i in standing]
    if config.collapse_repeats:
        collapsed = [i for n, i in enumerate(kept) if n == 0 or commands[i] != commands[kept[n - 1]]]
        removed["repeats"] = len(kept) - len(collapsed)
        kept = collapsed
    if config.max_session_length and len(kept) > config.max_session_length:
        removed["truncated"] = len(kept) - config.max_session_length
        kept = kept[-config.max_session_length :]
    return kept, removed

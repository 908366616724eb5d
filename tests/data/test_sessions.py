from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmdrec.config import ProcessingConfig
from cmdrec.data.readers import COMMAND, ORDER, TIME, USER
from cmdrec.data.sessions import (
    SESSION,
    collapse_repeats,
    drop_commands,
    drop_short_sessions,
    keep_recent,
    process_events,
    session_statistics,
    sort_events,
    split_sessions,
)
from tests.data.helpers import events_frame


def test_gap_splits_sessions_and_users_never_share_one():
    events = events_frame([("u1", 0, "A"), ("u1", 10, "B"), ("u1", 45, "C"), ("u2", 46, "D"), ("u2", 47, "E")])
    sessions = split_sessions(events, gap_minutes=30)
    assert sessions[SESSION].to_list() == [1, 1, 2, 3, 3]


def test_unsorted_input_is_sorted_per_user_with_row_order_breaking_ties():
    events = events_frame([("u2", 0, "X"), ("u1", 5, "B"), ("u1", 0, "A"), ("u1", 5, "C")])
    sessions = split_sessions(events, gap_minutes=30)
    assert sessions[COMMAND].to_list() == ["A", "B", "C", "X"]


EVENT = st.tuples(st.sampled_from(["u1", "u10", "u2", "\u00e9"]), st.one_of(st.none(), st.integers(0, 5)))


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENT, max_size=40), st.sampled_from([1, 10**9, 10**14]))
def test_the_one_integer_sort_orders_as_user_time_and_input_order(events, microseconds_apart):
    """sort_events packs user rank and time into one integer; it must order exactly as the columns do
    (missing times first, ties in input order)."""
    start = datetime(2000, 1, 1)
    times = [None if t is None else start + timedelta(microseconds=t * microseconds_apart) for _, t in events]
    frame = pl.DataFrame(
        {
            USER: [u for u, _ in events],
            TIME: pl.Series(times, dtype=pl.Datetime("us")),
            COMMAND: [str(n) for n in range(len(events))],
            ORDER: pl.Series(range(len(events)), dtype=pl.Int64),
        }
    )
    assert sort_events(frame).equals(frame.sort([USER, TIME, ORDER], nulls_last=False))


@pytest.mark.parametrize(
    "users, dtype",
    [(["a", "a", "b"], pl.Datetime("ns")), (["a", "a", "b"], pl.Datetime("us", "Europe/Paris")),
     (["a", "a", "b"], pl.Date), (["a", None, "b"], pl.Datetime("us"))],
)  # fmt: skip
def test_times_and_users_the_packed_sort_cannot_take_are_sorted_by_column(users, dtype):
    times = [datetime(2020, 1, 2), datetime(2020, 1, 1), datetime(2020, 1, 1, 0, 0, 0, 1)]
    frame = pl.DataFrame({USER: users, TIME: pl.Series(times).cast(dtype), COMMAND: ["A", "B", "C"],
                          ORDER: pl.Series([0, 1, 2], dtype=pl.Int64)})  # fmt: skip
    if dtype == pl.Datetime("ns"):  # a nanosecond apart: the same microsecond
        frame = frame.with_columns(pl.Series(TIME, [1001, 1000, 5], dtype=pl.Int64).cast(dtype))
    assert sort_events(frame).equals(frame.sort([USER, TIME, ORDER], nulls_last=False))


def test_no_timestamps_means_one_session_per_user():
    events = events_frame([("u1", None, "A"), ("u1", None, "B"), ("u2", None, "C")])
    assert split_sessions(events, 30)[SESSION].to_list() == [1, 1, 2]


def test_noise_removal_reports_counts_per_command():
    sessions = split_sessions(
        events_frame([("u1", 0, "A"), ("u1", 1, "Noise"), ("u1", 2, "B"), ("u1", 3, "Noise")]), 30
    )
    kept, report = drop_commands(sessions, ("Noise",))
    assert kept[COMMAND].to_list() == ["A", "B"]
    assert report["events_removed"] == 2
    assert report["removed_per_command"] == {"Noise": 2}


def test_collapse_repeats_only_within_a_session():
    sessions = split_sessions(
        events_frame([("u1", 0, "A"), ("u1", 1, "A"), ("u1", 2, "B"), ("u1", 60, "B"), ("u1", 61, "B")]), 30
    )
    kept, report = collapse_repeats(sessions)
    assert kept[COMMAND].to_list() == ["A", "B", "B"]
    assert report["events_removed"] == 2


def test_short_sessions_dropped_and_counted():
    sessions = split_sessions(events_frame([("u1", 0, "A"), ("u1", 60, "B"), ("u1", 61, "C")]), 30)
    kept, report = drop_short_sessions(sessions, 2)
    assert kept[COMMAND].to_list() == ["B", "C"]
    assert (report["events_removed"], report["sessions_removed"]) == (1, 1)


def test_keep_recent_keeps_the_last_events():
    sessions = split_sessions(
        events_frame([("u1", i, c) for i, c in enumerate("ABCDE")] + [("u2", 0, "X"), ("u2", 1, "Y")]), 30
    )
    kept, report = keep_recent(sessions, 3)
    assert kept[COMMAND].to_list() == ["C", "D", "E", "X", "Y"]
    assert report["sessions_truncated"] == 1


def test_process_events_reports_every_step_and_accounts_for_every_event():
    events = events_frame(
        [
            ("u1", 0, "A"),
            ("u1", 1, "N"),
            ("u1", 2, "A"),
            ("u1", 3, "B"),
            ("u1", 100, "C"),
            ("u2", 0, "N"),
            ("u2", 1, "D"),
        ]
    )
    config = ProcessingConfig(noise_commands=("N",), collapse_repeats=True, min_session_length=2, max_session_length=2)
    sessions, reports = process_events(events, config)
    assert [r["step"].split(" ")[0] for r in reports] == ["split", "drop", "collapse", "drop", "keep"]
    assert sum(r["events_removed"] for r in reports) == events.height - sessions.height
    assert sessions[COMMAND].to_list() == ["A", "B"]


def test_statistics():
    sessions = split_sessions(
        events_frame([("u1", 0, "A"), ("u1", 1, "A"), ("u1", 2, "B"), ("u2", 0, "B"), ("u2", 1, "C")]), 30
    )
    stats = session_statistics(sessions)
    assert stats["events"] == 5 and stats["sessions"] == 2
    assert stats["session_length"]["max"] == 3
    assert stats["repeat_rate"] == round(1 / 3, 4)  # one repeat among 3 consecutive pairs
    assert stats["top_commands"]["A"] == 0.4
    assert stats["top_session_ends"] == {"B": 0.5, "C": 0.5}

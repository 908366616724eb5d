import numpy as np
import polars as pl
import pytest

from cmdrec.config import SplitConfig
from cmdrec.data.readers import COMMAND, USER
from cmdrec.data.sessions import SESSION, split_sessions
from cmdrec.data.splits import split_sessions_table
from cmdrec.errors import InputError
from tests.data.helpers import events_frame


def many_sessions(users=10, per_user=10):
    rows = []
    for u in range(users):
        for s in range(per_user):
            rows += [(f"u{u}", s * 100 + u * 7 + i, f"c{(u + s + i) % 5}") for i in range(3)]
    return split_sessions(events_frame(rows), 30)


def session_sets(parts):
    return {name: set(frame[SESSION].unique().to_list()) for name, frame in parts.items()}


def test_random_session_split_is_disjoint_seeded_and_complete():
    sessions = many_sessions()
    config = SplitConfig(method="random_session", valid_fraction=0.1, test_fraction=0.2, seed=1)
    parts, report = split_sessions_table(sessions, config)
    sets = session_sets(parts)
    assert (
        not (sets["train"] & sets["test"])
        and not (sets["train"] & sets["valid"])
        and not (sets["valid"] & sets["test"])
    )
    assert sum(len(s) for s in sets.values()) == 100
    assert (len(sets["valid"]), len(sets["test"])) == (10, 20)
    assert session_sets(split_sessions_table(sessions, config)[0]) == sets
    other = session_sets(split_sessions_table(sessions, SplitConfig(valid_fraction=0.1, test_fraction=0.2, seed=2))[0])
    assert other["test"] != sets["test"]
    assert report["test"]["sessions"] == 20


def test_time_split_puts_latest_sessions_in_test():
    parts, _ = split_sessions_table(many_sessions(), SplitConfig(method="time", valid_fraction=0.1, test_fraction=0.2))
    starts = {
        name: frame.group_by(SESSION).agg(pl.col("timestamp").min())["timestamp"] for name, frame in parts.items()
    }
    assert starts["train"].max() <= starts["valid"].min() <= starts["valid"].max() <= starts["test"].min()
    assert (starts["valid"].len(), starts["test"].len()) == (10, 20)


def test_time_split_needs_timestamps():
    sessions = split_sessions(events_frame([("u1", None, "A"), ("u1", None, "B"), ("u2", None, "C")]), 30)
    with pytest.raises(InputError, match="needs timestamps"):
        split_sessions_table(sessions, SplitConfig(method="time"))


def test_user_split_holds_out_whole_users():
    parts, _ = split_sessions_table(
        many_sessions(), SplitConfig(method="user", valid_fraction=0.1, test_fraction=0.2, seed=3)
    )
    users = {name: set(frame[USER].unique().to_list()) for name, frame in parts.items()}
    assert not (users["train"] & users["test"]) and not (users["train"] & users["valid"])
    assert (len(users["valid"]), len(users["test"])) == (1, 2)


def test_leave_one_out():
    sessions = split_sessions(
        events_frame([("u1", None, c) for c in "ABCDE"] + [("u2", None, "X"), ("u2", None, "Y")]), 30
    )
    parts, report = split_sessions_table(sessions, SplitConfig(method="leave_one_out"))
    by_user = {
        name: {u: frame.filter(frame[USER] == u)[COMMAND].to_list() for u in ("u1", "u2")}
        for name, frame in parts.items()
    }
    assert by_user["train"] == {"u1": ["A", "B", "C"], "u2": ["X", "Y"]}
    assert by_user["valid"] == {"u1": ["A", "B", "C", "D"], "u2": []}
    assert by_user["test"] == {"u1": ["A", "B", "C", "D", "E"], "u2": []}
    assert report["users_too_short_for_valid_and_test"] == 1


def test_leave_one_out_joins_a_users_sessions_into_one_sequence():
    sessions = split_sessions(events_frame([("u1", 0, "A"), ("u1", 1, "B"), ("u1", 100, "C"), ("u1", 101, "D")]), 30)
    parts, _ = split_sessions_table(sessions, SplitConfig(method="leave_one_out"))
    assert parts["test"][SESSION].n_unique() == 1
    assert parts["test"][COMMAND].to_list() == ["A", "B", "C", "D"]


def test_balanced_split_puts_every_shared_command_in_train_and_valid(tmp_path):
    import dataclasses

    rng = np.random.default_rng(0)
    rows = []
    for session in range(1, 61):
        for position in range(5):
            # a few rare commands occur in only two or three sessions
            command = f"rare{session % 7}" if position == 0 and session % 5 == 0 else f"c{rng.integers(0, 8)}"
            rows.append({"user_id": f"u{session}", "session_id": session, "command": command, "event_index": position})
    sessions = pl.DataFrame(rows).with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("timestamp"))
    plain_config = SplitConfig(valid_fraction=0.1, test_fraction=0.2, seed=3)
    plain, _ = split_sessions_table(sessions, plain_config)
    parts, report = split_sessions_table(sessions, dataclasses.replace(plain_config, balance_commands=True))
    shared = sessions.group_by("command").agg(pl.col("session_id").n_unique()).filter(pl.col("session_id") >= 2)
    for name in ("train", "valid"):
        missing = set(shared["command"]) - set(parts[name]["command"])
        assert not missing, (name, missing)
    assert set(shared["command"]) - set(plain["valid"]["command"])  # the plain split lacks some in valid
    balance = report["balance_commands"]
    assert balance["sessions_moved_to_valid"] > 0 and balance["commands_not_in_valid"] == 0
    assert sum(report[name]["sessions"] for name in ("train", "valid", "test")) == 60

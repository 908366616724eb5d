"""Train / valid / test splits of session tables, none of which leaks test data into fitting.

- `random_session`: sessions shuffled with a seed and cut by fraction.
- `time`: the latest sessions (by start time) are test, the ones before them valid.
- `user`: held-out users; all sessions of a user fall in one split.
- `leave_one_out`: per user, one sequence of the whole history (session cuts ignored): test
  predicts the last event, valid the one before, train holds the rest (the published protocol
  for Amazon Beauty). Users with fewer than 3 events stay in train only, and are counted.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cmdrec.config import SplitConfig
from cmdrec.data.readers import COMMAND, ORDER, TIME, USER
from cmdrec.data.sessions import SESSION
from cmdrec.errors import InputError

SPLITS = ("train", "valid", "test")
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}


def split_sessions_table(sessions: pl.DataFrame, config: SplitConfig) -> tuple[dict[str, pl.DataFrame], dict]:
    if config.method == "leave_one_out":
        return _leave_one_out(sessions)
    assignment, balance = assign_splits([split_keys(sessions, config)], config)
    parts = apply_split(sessions, assignment, config)
    return parts, split_report([part_counts(parts)], config.method) | balance


def split_keys(sessions: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """The keys one partition contributes to the assignment (session ids, session starts, users):
    small, even for a large log."""
    if config.method == "time":
        return sessions.group_by(SESSION).agg(pl.col(TIME).min())
    if config.balance_commands:
        return sessions.select(SESSION, COMMAND).unique()
    key = USER if config.method == "user" else SESSION
    return sessions.select(pl.col(key).unique())


def assign_splits(keys: list[pl.DataFrame], config: SplitConfig) -> tuple[pl.DataFrame, dict]:
    """key -> `_split` for every key of every partition, as the whole log would be split, and a
    report of the command balancing (when asked)."""
    keys = pl.concat(keys)
    if config.method == "random_session":
        order = _shuffled(keys[SESSION].unique().sort().to_numpy(), config.seed)
        assignment = _assign(order, config, SESSION)
        if config.balance_commands:
            return balance_commands(assignment, keys, order)
    elif config.method == "time":
        if keys[TIME].null_count() == keys.height:
            raise InputError("split.method 'time' needs timestamps; this log has none")
        starts = keys.sort([TIME, SESSION])
        assignment = _assign(starts[SESSION].to_numpy(), config, SESSION)
    elif config.method == "user":
        assignment = _assign(_shuffled(keys[USER].unique().sort().to_numpy(), config.seed), config, USER)
    else:  # guarded by the config's Literal type
        raise InputError(f"unknown split method {config.method!r}")
    return assignment, {}


def balance_commands(assignment: pl.DataFrame, pairs: pl.DataFrame, order: np.ndarray) -> tuple[pl.DataFrame, dict]:
    """Move sessions so that every command found in at least two sessions is in train and in valid:
    first into train (from valid or test) where train lacks a command, then into valid, from test
    if possible, else from train when that leaves every command it holds in train. Sessions are
    taken in the seeded order of the split, so the result is as reproducible as the split."""
    split = dict(zip(assignment[SESSION].to_list(), assignment["_split"].to_list(), strict=True))
    rank = {int(s): n for n, s in enumerate(order)}
    commands_of: dict[int, set[str]] = {}
    sessions_of: dict[str, list[int]] = {}
    for session, command in pairs.select(SESSION, COMMAND).iter_rows():
        commands_of.setdefault(session, set()).add(command)
        sessions_of.setdefault(command, []).append(session)
    counts = {name: {} for name in SPLITS}
    for session, commands in commands_of.items():
        for command in commands:
            counts[split[session]][command] = counts[split[session]].get(command, 0) + 1

    def move(session: int, to: str) -> None:
        for command in commands_of[session]:
            counts[split[session]][command] -= 1
            counts[to][command] = counts[to].get(command, 0) + 1
        split[session] = to

    shared = sorted(c for c, sessions in sessions_of.items() if len(sessions) >= 2)
    for command in shared:
        sessions_of[command].sort(key=rank.__getitem__)
    moved = {"to_train": 0, "to_valid": 0}
    for command in shared:
        if not counts["train"].get(command):
            move(next(s for s in sessions_of[command] if split[s] != "train"), "train")
            moved["to_train"] += 1
    impossible = []
    for command in shared:
        if counts["valid"].get(command):
            continue
        candidates = [s for s in sessions_of[command] if split[s] == "test"]
        candidates += [
            s
            for s in sessions_of[command]
            if split[s] == "train" and all(counts["train"][c] >= 2 for c in commands_of[s])
        ]
        if candidates:
            move(candidates[0], "valid")
            moved["to_valid"] += 1
        else:
            impossible.append(command)
    balanced = pl.DataFrame({SESSION: list(split), "_split": list(split.values())}, schema=assignment.schema)
    report = {
        "balance_commands": {
            "commands_in_two_or_more_sessions": len(shared),
            "sessions_moved_to_train": moved["to_train"],
            "sessions_moved_to_valid": moved["to_valid"],
            "commands_not_in_valid": len(impossible),
            "examples_not_in_valid": impossible[:10],
        }
    }
    return balanced, report


def apply_split(
    sessions: pl.DataFrame, assignment: pl.DataFrame | None, config: SplitConfig
) -> dict[str, pl.DataFrame]:
    """The three parts of one partition (leave_one_out needs no assignment: it is per user)."""
    if config.method == "leave_one_out":
        return _leave_one_out_parts(sessions)
    codes = assignment.with_columns(pl.col("_split").replace_strict(SPLIT_CODES, return_dtype=pl.Int8))
    if config.method == "user":
        labelled = sessions.join(codes, on=USER, how="left", maintain_order="left")
    else:
        # session ids are small integers: a lookup by position costs far less than a join
        table = np.full(int(max(codes[SESSION].max(), sessions[SESSION].max() or 0)) + 1, -1, dtype=np.int8)
        table[codes[SESSION].to_numpy()] = codes["_split"].to_numpy()
        labelled = sessions.with_columns(pl.Series("_split", table).gather(sessions[SESSION]))
    parts = labelled.partition_by("_split", as_dict=True, include_key=False, maintain_order=True)
    empty = labelled.clear().drop("_split")
    return {name: parts.get((code,), empty) for name, code in SPLIT_CODES.items()}


def _shuffled(keys: np.ndarray, seed: int) -> np.ndarray:
    return keys[np.random.default_rng(seed).permutation(len(keys))]


def _assign(ordered_keys: np.ndarray, config: SplitConfig, key: str) -> pl.DataFrame:
    """The last `test_fraction` of keys to test, the `valid_fraction` before them to valid."""
    n = len(ordered_keys)
    n_test = int(round(n * config.test_fraction))
    n_valid = int(round(n * config.valid_fraction))
    if n - n_test - n_valid < 1:
        raise InputError(f"split: {n} {key} values are too few for the fractions asked")
    labels = np.array(["train"] * (n - n_test - n_valid) + ["valid"] * n_valid + ["test"] * n_test)
    return pl.DataFrame({key: ordered_keys, "_split": labels})


def _leave_one_out(sessions: pl.DataFrame) -> tuple[dict[str, pl.DataFrame], dict]:
    parts = _leave_one_out_parts(sessions)
    return parts, split_report([part_counts(parts)], "leave_one_out")


def _leave_one_out_parts(sessions: pl.DataFrame) -> dict[str, pl.DataFrame]:
    history = sessions.sort([USER, TIME, ORDER], nulls_last=False)
    # One sequence per user: its id is the user's first session id.
    history = history.with_columns(
        pl.col(SESSION).first().over(USER).alias(SESSION),
        pl.int_range(pl.len(), 0, -1).over(USER).alias("_from_end"),  # N..1
        pl.len().over(USER).alias("_length"),
    )
    evaluable = pl.col("_length") >= 3
    parts = {
        "train": history.filter(~evaluable | (pl.col("_from_end") > 2)),
        "valid": history.filter(evaluable & (pl.col("_from_end") > 1)),
        "test": history.filter(evaluable),
    }
    return {name: frame.drop("_from_end", "_length") for name, frame in parts.items()}


def part_counts(parts: dict[str, pl.DataFrame]) -> dict:
    """Sessions, events and users of each part of one partition of users (they add up across partitions)."""
    counts = {
        name: {"sessions": frame[SESSION].n_unique(), "events": frame.height, "users": frame[USER].n_unique()}
        for name, frame in parts.items()
    }
    train, test = parts["train"], parts["test"]
    # leave_one_out: users too short for valid and test are in train only
    counts["train_only_users"] = train.filter(~pl.col(USER).is_in(test[USER].unique().implode()))[USER].n_unique()
    return counts


def split_report(partials: list[dict], method: str) -> dict:
    report = {
        "method": method,
        **{
            name: {key: sum(p[name][key] for p in partials) for key in ("sessions", "events", "users")}
            for name in SPLITS
        },
    }
    if method == "leave_one_out":
        report["users_too_short_for_valid_and_test"] = sum(p["train_only_users"] for p in partials)
    return report

"""Undo/redo reconstruction on hand-made sessions, in processing and in serving alike."""

import polars as pl
import pytest

from cmdrec.config import ProcessingConfig, UndoConfig
from cmdrec.data.sessions import SESSION, clean_history, process_events
from cmdrec.data.undo import reconstruct, resolve_rules
from cmdrec.errors import InputError

RULES = resolve_rules(UndoConfig(undo=("Undo",), redo=("Redo",)), None)


def standing(commands, rules=RULES):
    kept, counts = reconstruct(commands, rules)
    return [commands[i] for i in kept], counts


def test_an_undo_cancels_the_last_command_and_a_redo_restores_it():
    assert standing(["Wall", "Door", "Undo"])[0] == ["Wall"]
    assert standing(["Wall", "Door", "Undo", "Redo"])[0] == ["Wall", "Door"]
    kept, counts = standing(["Wall", "Door", "Window", "Undo", "Undo", "Redo", "Move"])
    assert kept == ["Wall", "Door", "Move"]  # nested: Window and Door undone, Door redone
    assert counts == {"undos_applied": 2, "undos_unmatched": 0, "redos_applied": 1, "redos_unmatched": 0}


def test_undo_at_session_start_and_redo_after_a_new_change_are_unmatched():
    kept, counts = standing(["Undo", "Wall", "Undo", "Door", "Redo"])
    assert kept == ["Door"]  # the first undo has nothing before it; Door ends what could be redone
    assert counts == {"undos_applied": 1, "undos_unmatched": 1, "redos_applied": 0, "redos_unmatched": 1}


def test_only_undoable_commands_by_name_or_category_are_cancelled():
    catalogue = pl.DataFrame({"command": ["Wall", "Orbit", "Door"], "category": ["Modeling", "View", "Openings"]})
    rules = resolve_rules(UndoConfig(undo=("Undo",), undoable=("Modeling", "Door")), catalogue)
    assert rules.undoable == {"Wall", "Door", "Modeling"}
    assert standing(["Wall", "Orbit", "Orbit", "Undo"], rules)[0] == ["Orbit", "Orbit"]  # navigation is not undone
    near = resolve_rules(UndoConfig(undo=("Undo",), undoable=("Wall",), max_distance=1), None)
    kept, counts = standing(["Wall", "Orbit", "Undo", "Wall", "Wall", "Undo", "Undo"], near)
    assert kept == ["Wall", "Orbit"] and counts["undos_unmatched"] == 1


def test_named_undos_cancel_the_command_they_name():
    rules = resolve_rules(UndoConfig(pattern=r"Undo Event: (.+)"), None)
    kept, _ = standing(["Wall", "Door", "Window", "Undo Event: Door"], rules)
    assert kept == ["Wall", "Window"]
    with pytest.raises(InputError, match="needs a group"):
        resolve_rules(UndoConfig(pattern="Undo Event"), None)
    with pytest.raises(InputError, match="unknown 'nope'"):
        resolve_rules(UndoConfig(preset="nope"), None)


def test_the_processing_step_counts_and_serving_repeats_it():
    sessions = [["Wall", "Wall", "Undo", "Door"], ["Orbit", "Pan"], ["Undo", "Wall", "Door", "Undo", "Undo", "Redo"]]
    events = pl.DataFrame(
        {
            "user_id": [f"u{n}" for n, s in enumerate(sessions) for _ in s],
            "timestamp": [None] * sum(map(len, sessions)),
            "command": [c for s in sessions for c in s],
            "event_index": list(range(sum(map(len, sessions)))),
        },
        schema_overrides={"timestamp": pl.Datetime("us")},
    )
    config = ProcessingConfig(
        undo=UndoConfig(undo=("Undo",), redo=("Redo",)), collapse_repeats=True, min_session_length=1
    )
    cleaned, steps = process_events(events, config, undo=resolve_rules(config.undo, None))
    step = next(s for s in steps if s["step"] == "undo/redo reconstruction")
    assert step["events_removed"] == 7 and step["undos_applied"] == 3 and step["undos_unmatched"] == 1
    by_session = cleaned.group_by(SESSION, maintain_order=True).agg("command")["command"].to_list()
    assert by_session == [["Wall", "Door"], ["Orbit", "Pan"], ["Wall"]]
    rules = resolve_rules(config.undo, None)
    for session, expected in zip(sessions, by_session, strict=True):
        kept, removed = clean_history(session, config, frozenset(), rules)
        assert [session[i] for i in kept] == expected

"""Undo/redo reconstruction: what the person actually did, with undone commands cancelled.

Per session, in order: an undo cancels the most recent not-yet-cancelled undoable command (the one
it names, when the log names it: `pattern`) and is removed itself; a redo restores the command the
last undo cancelled (and is removed); a new undoable command ends what can be redone. An undo or
redo with nothing to act on is removed and counted as unmatched.

The VS preset: Visual Studio's `Edit.Undo` names nothing, and most of what it undoes is typing,
which the log does not record. So only commands that change the document are undoable (paste,
cut, delete, formatting, commenting, refactorings), never navigation, builds, debugging or window
changes, and an undo cancels one only when it is the event just before (`max_distance: 1`, counted
over the events still kept, so "paste, paste, undo, undo" cancels both pastes); an undo after
anything else most likely undid typing and is dropped as unmatched.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from cmdrec.config import UndoConfig
from cmdrec.errors import InputError

UNDO_PRESETS: dict[str, UndoConfig] = {
    "vs": UndoConfig(
        undo=("Edit.Undo",),
        redo=("Edit.Redo",),
        undoable=(
            "Edit.Paste",
            "Edit.Cut",
            "Edit.Delete",
            "Edit.LineDelete",
            "Edit.LineCut",
            "Edit.BreakLine",
            "Edit.InsertTab",
            "Edit.InsertSnippet",
            "Edit.CompleteWord",
            "Edit.CommentSelection",
            "Edit.UncommentSelection",
            "Edit.FormatDocument",
            "Edit.FormatSelection",
            "Edit.IncreaseLineIndent",
            "Edit.DecreaseLineIndent",
            "Edit.RemoveUnusedUsings",
            "Edit.Remove",
            "Edit.Addappropriateusingstatement",
            "Edit.Fullyqualifyname",
            "EditorContextMenus.CodeWindow.OrganizeUsings.RemoveAndSort",
            "EditorContextMenus.CodeWindow.OrganizeUsings.RemoveUnusedUsings",
            "EditorContextMenus.CodeWindow.ImplementInterface.ImplementInterface",
            "EditorContextMenus.CodeWindow.Generate.GenerateMethodStub",
        ),
        max_distance=1,
    ),
    # the bundled sample application's Undo and Redo, which can undo any modelling or edit command
    "sample": UndoConfig(undo=("Undo",), redo=("Redo",), undoable=("Modeling", "Openings", "Edit")),
}


@dataclass(frozen=True)
class UndoRules:
    """Undo settings resolved to command names (categories looked up in the catalogue)."""

    undo: frozenset[str]
    redo: frozenset[str]
    undoable: frozenset[str] | None  # None: every command
    pattern: re.Pattern | None
    max_distance: int | None

    def undone(self, command: str) -> tuple[bool, str | None]:
        """(is an undo, the command it names if any)."""
        if command in self.undo:
            return True, None
        if self.pattern is not None and (match := self.pattern.fullmatch(command)):
            return True, match.group(1)
        return False, None

    def to_dict(self) -> dict:
        return {
            "undo": sorted(self.undo),
            "redo": sorted(self.redo),
            "undoable": None if self.undoable is None else sorted(self.undoable),
            "pattern": None if self.pattern is None else self.pattern.pattern,
            "max_distance": self.max_distance,
        }

    @classmethod
    def from_dict(cls, data: dict) -> UndoRules:
        return cls(
            frozenset(data["undo"]),
            frozenset(data["redo"]),
            None if data["undoable"] is None else frozenset(data["undoable"]),
            None if data["pattern"] is None else re.compile(data["pattern"]),
            data["max_distance"],
        )


def resolve_rules(config: UndoConfig, catalogue: pl.DataFrame | None) -> UndoRules | None:
    if not config.enabled:
        return None
    if config.preset is not None:
        if config.preset not in UNDO_PRESETS:
            raise InputError(f"processing.undo.preset: unknown {config.preset!r}; known: {sorted(UNDO_PRESETS)}")
        given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "preset"}
        preset = UNDO_PRESETS[config.preset]
        # explicit settings beside a preset replace its own
        config = dataclasses.replace(preset, **{k: v for k, v in given.items() if v not in ((), None)})
    try:
        pattern = re.compile(config.pattern) if config.pattern else None
    except re.error as error:
        raise InputError(f"processing.undo.pattern {config.pattern!r}: not a regular expression ({error})") from None
    if pattern is not None and pattern.groups < 1:
        raise InputError(f"processing.undo.pattern {config.pattern!r} needs a group naming the undone command")
    if config.max_distance is not None and config.max_distance < 1:
        raise InputError("processing.undo.max_distance must be at least 1, or null")
    undoable = None
    if config.undoable:
        names = set(config.undoable)
        if catalogue is not None and "category" in catalogue.columns:
            in_categories = catalogue.filter(pl.col("category").is_in(list(config.undoable)))["command"]
            names |= set(in_categories.to_list())
        undoable = frozenset(names)
    return UndoRules(frozenset(config.undo), frozenset(config.redo), undoable, pattern, config.max_distance)


def reconstruct(commands: Sequence[str], rules: UndoRules) -> tuple[list[int], dict]:
    """Indices of the events of one session that remain, and what was applied."""
    live: list[int] = []  # events that stand, in order
    redoable: list[int] = []  # cancelled events, the last cancelled last
    counts = {"undos_applied": 0, "undos_unmatched": 0, "redos_applied": 0, "redos_unmatched": 0}
    for index, command in enumerate(commands):
        is_undo, named = rules.undone(command)
        if is_undo:
            found = None
            for depth in range(len(live)):
                if rules.max_distance is not None and depth >= rules.max_distance:
                    break
                candidate = live[-1 - depth]
                name = commands[candidate]
                if (rules.undoable is None or name in rules.undoable) and (named is None or name == named):
                    found = len(live) - 1 - depth
                    break
            if found is None:
                counts["undos_unmatched"] += 1
                continue
            redoable.append(live.pop(found))
            counts["undos_applied"] += 1
        elif command in rules.redo:
            if not redoable:
                counts["redos_unmatched"] += 1
                continue
            bisect.insort(live, redoable.pop())
            counts["redos_applied"] += 1
        else:
            live.append(index)
            if rules.undoable is None or command in rules.undoable:
                redoable.clear()  # a new change: what was undone can no longer be redone
    return live, counts


def reconstruct_sessions(
    events: pl.DataFrame, rules: UndoRules, session: str, command: str
) -> tuple[pl.DataFrame, dict]:
    """Apply `reconstruct` to every session that holds an undo or a redo; other sessions pass as they are."""
    markers = pl.col(command).is_in(list(rules.undo | rules.redo))
    if rules.pattern is not None:
        markers = markers | pl.col(command).str.contains(rules.pattern.pattern)
    numbered = events.with_row_index("_row")
    touched = numbered.filter(markers.any().over(session)).select("_row", session, command)
    counts = {"undos_applied": 0, "undos_unmatched": 0, "redos_applied": 0, "redos_unmatched": 0}
    dropped: list[int] = []
    for part in touched.partition_by(session, maintain_order=True):
        rows, names = part["_row"].to_list(), part[command].to_list()
        kept, applied = reconstruct(names, rules)
        keep = set(kept)
        dropped.extend(row for position, row in enumerate(rows) if position not in keep)
        for key, value in applied.items():
            counts[key] += value
    kept = numbered.filter(~pl.col("_row").is_in(dropped)).drop("_row") if dropped else events
    return kept, counts

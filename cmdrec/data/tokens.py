"""Workflow tokens (`features.workflows`): byte-pair-encoding merges of consecutive commands, learned
on the training split with Hugging Face `tokenizers` over command ids (one character per id), so a
frequent run such as `Edit.Copy > Edit.Paste` becomes one token with an id of its own.

A token's side features are those of its first event, and its first command is what it predicts:
evaluation and serving score a command by the summed probability of every token that starts with it
(see cmdrec.models.tokens). Training reads each training session tokenized whole; a valid or test
session becomes the tokens of every event before its last, then the last event itself (the target
command), which is exactly how serving tokenizes the history it is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cmdrec.config import WorkflowsConfig
from cmdrec.data.dataset import TOKENIZER_FILE
from cmdrec.errors import InputError
from cmdrec.io import write_text_atomic

FIRST_CHARACTER = 0xF0000  # command id i is the character FIRST_CHARACTER + i (a private-use plane)
MAX_COMMANDS = 0x10FFFF - FIRST_CHARACTER


def _text(ids) -> str:
    return "".join(chr(FIRST_CHARACTER + i) for i in ids)


@dataclass
class WorkflowTokens:
    tokenizer: object  # tokenizers.Tokenizer
    n_commands: int  # command ids 0..n_commands-1 are tokens of their own
    composites: list[tuple[int, ...]]  # token n_commands + i stands for these command ids

    @classmethod
    def fit(cls, sessions: list[list[int]], n_commands: int, config: WorkflowsConfig) -> WorkflowTokens:
        from tokenizers import Tokenizer, models, trainers

        if n_commands > MAX_COMMANDS:
            raise InputError(f"features.workflows: {n_commands:,} commands are more than {MAX_COMMANDS:,} supported")
        tokenizer = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=n_commands + config.merges,
            min_frequency=config.min_count,
            initial_alphabet=[chr(FIRST_CHARACTER + i) for i in range(n_commands)],
            show_progress=False,
        )
        tokenizer.train_from_iterator((_text(s) for s in sessions), trainer=trainer)
        return cls.from_tokenizer(tokenizer, n_commands)

    @classmethod
    def from_tokenizer(cls, tokenizer, n_commands: int) -> WorkflowTokens:
        merged = sorted((i, t) for t, i in tokenizer.get_vocab().items() if len(t) > 1)  # in the order learned
        composites = [tuple(ord(c) - FIRST_CHARACTER for c in t) for _, t in merged]
        return cls(tokenizer, n_commands, composites)

    def __post_init__(self):
        self._ids = {_text(parts): self.n_commands + i for i, parts in enumerate(self.composites)}

    @property
    def cardinality(self) -> int:
        return self.n_commands + len(self.composites)

    def spans(self, histories: list[list[int]]) -> list[tuple[list[int], list[int]]]:
        """Each history's (token ids, index of each token's first event)."""
        out = []
        for encoding in self.tokenizer.encode_batch([_text(h) for h in histories]):
            ids = [self._ids[t] if len(t) > 1 else ord(t) - FIRST_CHARACTER for t in encoding.tokens]
            out.append((ids, [start for start, _ in encoding.offsets]))
        return out

    def names(self, command_names: list[str]) -> list[str]:
        """Each token's name: a command's own, or its commands joined by ' > '."""
        return [*command_names, *(" > ".join(command_names[i] for i in parts) for parts in self.composites)]

    def save(self, directory: Path) -> None:
        write_text_atomic(directory / TOKENIZER_FILE, self.tokenizer.to_str())

    @classmethod
    def load(cls, directory: Path, n_commands: int) -> WorkflowTokens | None:
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            return None
        from tokenizers import Tokenizer

        return cls.from_tokenizer(Tokenizer.from_str(path.read_text()), n_commands)


def first_command_ids(schema) -> np.ndarray | None:
    """The first command of each item id of a schema's data, or None when it has no workflow tokens."""
    properties = schema.item_id.properties
    if not properties.get("workflow_tokens"):
        return None
    return np.array([*range(properties["commands"]), *(p[0] for p in properties["workflow_tokens"])], dtype=np.int64)


def token_extensions(schema) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(shorter token, longer token, the command after the shorter one's) for every token of a schema's
    data that another extends; None without workflow tokens or without such pairs."""
    first = first_command_ids(schema)
    if first is None:
        return None
    properties = schema.item_id.properties
    n_commands = properties["commands"]
    parts = [tuple(p) for p in properties["workflow_tokens"]]
    ids = {(i,): i for i in range(n_commands)} | {p: n_commands + j for j, p in enumerate(parts)}
    triples = [
        (ids[p[:m]], n_commands + j, p[m]) for j, p in enumerate(parts) for m in range(1, len(p)) if p[:m] in ids
    ]
    if not triples:
        return None
    return tuple(np.array(column, dtype=np.int64) for column in zip(*triples, strict=True))


def tokenize_sequences(
    sequences: pl.DataFrame, tokens: WorkflowTokens, item: str, list_columns: list[str], mode: str
) -> tuple[pl.DataFrame, dict]:
    """Sessions (one row each, list columns) as workflow tokens: `mode` "train" tokenizes whole
    sessions; "eval" tokenizes each session's events before its last and keeps the last as it is."""
    sessions = sequences[item].to_list()
    histories = sessions if mode == "train" else [s[:-1] for s in sessions]
    spans = tokens.spans(histories)
    kept, ids = [], []
    for session, (token_ids, starts) in zip(sessions, spans, strict=True):
        if mode == "train":
            kept.append(starts)
            ids.append(token_ids)
        else:
            kept.append([*starts, len(session) - 1])
            ids.append([*token_ids, session[-1]])
    others = [c for c in list_columns if c != item]
    tokenized = sequences.with_columns(pl.Series("_kept", kept, dtype=pl.List(pl.Int64))).with_columns(
        *[pl.col(c).list.gather(pl.col("_kept")) for c in others],
        pl.Series(item, ids, dtype=sequences.schema[item]),
        pl.col("_kept").list.len().cast(pl.Int32).alias("length"),
    )
    events = sum(len(s) for s in sessions)
    n_tokens = sum(len(i) for i in ids)
    used = {t for row in ids for t in row if t >= tokens.n_commands}
    report = {"events": events, "tokens": n_tokens, "composite_tokens_used": len(used)}
    if mode == "train":  # a session merged into one token has no transition left to train on
        report["sessions_of_one_token"] = sum(len(i) == 1 for i in ids)
    return tokenized.drop("_kept"), report


def describe(tokens: WorkflowTokens, command_names: list[str], top: int = 10) -> list[dict]:
    """The first learned composite tokens, for the preprocess report."""
    names = tokens.names(command_names)
    first = range(tokens.n_commands, tokens.n_commands + min(top, len(tokens.composites)))
    return [{"id": i, "name": names[i]} for i in first]

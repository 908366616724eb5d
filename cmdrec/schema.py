"""Column specifications of the preprocessed data: the contract between preprocessing and models.

Each column carries tags saying what it is (the item id, a categorical or continuous feature,
a label for an auxiliary head, a text field); models are built from these tags, so a column
added in preprocessing reaches the model without code changes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from cmdrec.io import write_text_atomic


class Tag(str, Enum):
    ITEM_ID = "item_id"
    CATEGORICAL = "categorical"
    CONTINUOUS = "continuous"
    LABEL = "label"
    TEXT = "text"
    SESSION_ID = "session_id"
    USER_ID = "user_id"
    LIST = "list"


# Reserved ids of every categorified column (as NVTabular's Categorify): 0 pads, 1 is out-of-vocabulary.
PAD_ID = 0
OOV_ID = 1
FIRST_VALUE_ID = 2


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    tags: tuple[Tag, ...]
    dtype: str
    cardinality: int | None = None  # number of ids including the reserved ones
    properties: dict = field(default_factory=dict)

    def has(self, tag: Tag) -> bool:
        return tag in self.tags

    def to_dict(self) -> dict:
        data = asdict(self)
        data["tags"] = [tag.value for tag in self.tags]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ColumnSpec:
        return cls(
            name=data["name"],
            tags=tuple(Tag(tag) for tag in data["tags"]),
            dtype=data["dtype"],
            cardinality=data.get("cardinality"),
            properties=dict(data.get("properties", {})),
        )


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnSpec, ...]

    def __post_init__(self):
        names = [column.name for column in self.columns]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"schema has duplicate columns: {sorted(duplicates)}")
        if len(self.select(Tag.ITEM_ID)) > 1:
            raise ValueError("schema has more than one item id column")

    def __getitem__(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"no column '{name}' in schema (columns: {self.names})")

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def select(self, tag: Tag) -> list[ColumnSpec]:
        return [column for column in self.columns if column.has(tag)]

    @property
    def item_id(self) -> ColumnSpec:
        found = self.select(Tag.ITEM_ID)
        if not found:
            raise KeyError("schema has no item id column")
        return found[0]

    def to_json(self, path: str | Path) -> None:
        payload = {"columns": [column.to_dict() for column in self.columns]}
        write_text_atomic(path, json.dumps(payload, indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> Schema:
        payload = json.loads(Path(path).read_text())
        return cls(tuple(ColumnSpec.from_dict(column) for column in payload["columns"]))

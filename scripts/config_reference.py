"""Write docs/config.md, the reference of every config key, from the dataclasses in cmdrec/config/
(types, defaults and the comments beside each field), so it cannot drift from the code.

    python scripts/config_reference.py [--check]
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "cmdrec" / "config").glob("*.py"))
TARGET = ROOT / "docs" / "config.md"
# the top-level configs and the section name each nested config appears under
ROOTS = {
    "DataConfig": "data config (`cmdrec process/preprocess/embed --config`)",
    "RunConfig": "run config (`cmdrec train --config`)",
    "ServingConfig": "serving config (`cmdrec serve`)",
}


def dataclasses_of(text: str) -> dict[str, dict]:
    tree, lines = ast.parse(text), text.splitlines()
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        doc = ast.get_docstring(node) or ""
        fields = []
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                annotation = ast.get_source_segment(text, statement.annotation)
                default = "" if statement.value is None else ast.get_source_segment(text, statement.value)
                comment = _comment(lines, statement)
                fields.append((statement.target.id, annotation, default, comment))
        if fields:
            found[node.name] = {"doc": doc.split("\n\n")[0].replace("\n", " "), "fields": fields}
    return found


def _comment(lines: list[str], statement: ast.AnnAssign) -> str:
    trailing = [
        line.split("  # ", 1)[1].strip()
        for line in lines[statement.lineno - 1 : statement.end_lineno]
        if "  # " in line
    ]
    above, number = [], statement.lineno - 2
    while number >= 0 and lines[number].strip().startswith("#"):
        above.insert(0, lines[number].strip().lstrip("#").strip())
        number -= 1
    return " ".join(above + trailing)


def nested(annotation: str, classes: dict) -> str | None:
    name = annotation.replace(" | None", "")
    return name if name in classes else None


def render() -> str:
    classes = {}
    for source in SOURCES:
        classes |= dataclasses_of(source.read_text())
    out = [
        "# Configuration reference",
        "",
        "Generated from `cmdrec/config/` by `python scripts/config_reference.py` (the test suite checks it is "
        "current). Every key can be set in the YAML file or on the command line as `section.key=value`; an unknown "
        "key is an error.",
        "",
    ]

    def section(name: str, prefix: str, title: str) -> None:
        spec = classes[name]
        out.extend([f"## {title}", "", *([spec["doc"], ""] if spec["doc"] else [])])
        out.extend(["| key | type | default | meaning |", "| --- | --- | --- | --- |"])
        later = []
        for field, annotation, default, comment in spec["fields"]:
            inner = nested(annotation, classes)
            if inner:
                later.append((inner, f"{prefix}{field}."))
                out.append(f"| `{prefix}{field}` | section | | see `{prefix}{field}.*` below |")
                continue
            default = re.sub(r"^field\(default_factory=(\w+)\)$", r"\1()", default) if default else "required"
            kind, value, meaning = (cell.replace("|", "\\|") for cell in (annotation, default, comment))
            out.append(f"| `{prefix}{field}` | `{kind}` | `{value}` | {meaning} |")
        out.append("")
        for inner, inner_prefix in later:
            section(inner, inner_prefix, f"`{inner_prefix.rstrip('.')}` ({inner})")

    for name, title in ROOTS.items():
        section(name, "", f"The {title}")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    fresh = render()
    if sys.argv[1:] == ["--check"]:
        if not TARGET.is_file() or TARGET.read_text() != fresh:
            sys.exit("docs/config.md is stale: run python scripts/config_reference.py")
    else:
        TARGET.write_text(fresh)
        print(f"wrote {TARGET}")

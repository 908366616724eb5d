"""The figures in the README and docs are the measured ones: every generated table block matches
what benchmarks/tables.py prints from benchmarks/results/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_tables_in_the_docs_are_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_table_is_caught():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.pop(0)
    text = "before\n<!-- table: preprocess -->\nan old figure\n<!-- /table -->\nafter\n"
    fresh = tables.regenerate(text)
    assert "an old figure" not in fresh and fresh.startswith("before\n") and fresh.endswith("after\n")
    assert tables.regenerate(fresh) == fresh


def test_the_config_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_relative_link_of_the_readme_and_docs_resolves():
    import re

    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken

"""The package's layers: nothing imports upward (schema/config -> data, features, losses, text ->
models -> artifacts -> training -> serving -> experiments -> cli), and no module grows without bound."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cmdrec"
LAYERS = {
    "errors": 0,
    "schema": 0,
    "config": 0,
    "io": 0,
    "plugins": 0,
    "batch": 0,
    "data": 1,
    "features": 1,
    "losses": 1,
    "text": 1,
    "models": 2,
    "artifacts": 3,
    "training": 4,
    "serving": 5,
    "report": 6,
    "experiments": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 0,
}
# STYLE.md: a module over ~400 lines holds more than one job; split it
MAX_LINES = 400


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cmdrec."):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("cmdrec.")}
    return names


def test_nothing_imports_from_a_layer_above_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mine = layer_of(module)
        upward += [f"{module} imports {name}" for name in sorted(imported(path)) if layer_of(name) > mine]
    assert not upward, upward


def test_every_top_level_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert parts - {"__pycache__"} <= set(LAYERS), parts - set(LAYERS)


def test_no_module_is_longer_than_the_limit():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_no_string_is_left_dangling_after_a_split_line():
    """A long f-string split over two lines without parentheses leaves its second half as a statement
    of its own, silently dropped (ruff does not flag it)."""
    dangling = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            body = getattr(node, "body", None)
            for position, statement in enumerate(body if isinstance(body, list) else []):
                if not isinstance(statement, ast.Expr):
                    continue
                value = statement.value
                if isinstance(value, ast.JoinedStr) or (
                    position > 0 and isinstance(value, ast.Constant) and isinstance(value.value, str)
                ):
                    dangling.append(f"{path.relative_to(PACKAGE)}:{statement.lineno}")
    assert not dangling, dangling


def test_training_serving_and_the_cli_do_not_load_the_research_harness_or_optional_engines():
    import subprocess
    import sys

    heavy = ["matplotlib", "optuna", "distributed", "faiss", "cmdrec.experiments"]
    code = (
        "import sys, cmdrec, cmdrec.training.loop, cmdrec.serving.service, cmdrec.cli; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded

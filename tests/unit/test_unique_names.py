"""Every class in `performance_agent/` has a name of its own, so a name in a log, a traceback or a
review means one thing (two `WindowFigures` once meant two different shapes)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "performance_agent"


def class_names(root: Path) -> dict[str, list[str]]:
    """Each class name defined under `root` and where (`path:line`)."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                found[node.name].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return found


def test_class_names_are_unique() -> None:
    repeated = {name: places for name, places in class_names(PACKAGE).items() if len(places) > 1}
    assert repeated == {}


def test_a_repeated_name_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "a").mkdir(parents=True)
    (package / "a" / "one.py").write_text("class Figures:\n    pass\n")
    (package / "two.py").write_text("def f() -> None:\n    class Figures:\n        pass\n")
    assert class_names(package)["Figures"] == ["pkg/a/one.py:1", "pkg/two.py:2"]

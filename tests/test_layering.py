"""bench/ is not a package, so import-linter (``[tool.importlinter]``, run by scripts/test) cannot see it: the same
rule, that nothing outside tests/ imports the test tree, checked over its source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((REPO / "bench").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_bench_imports_no_tests(path: Path) -> None:
    offending = sorted(m for m in imported_modules(path) if m == "tests" or m.startswith("tests."))
    assert not offending, f"{path.relative_to(REPO)} imports the test tree: {offending}; use devstack instead"


def test_checker_sees_from_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom tests.fixtures import kube\nfrom . import local\n")
    assert imported_modules(sample) == {"os", "tests.fixtures"}

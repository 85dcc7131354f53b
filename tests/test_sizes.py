"""scripts/sizes: modules at most 500 lines, classes at most 200 (issue 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SIZES = Path(__file__).resolve().parent.parent / "scripts" / "sizes"


def run_sizes(root: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SIZES)] + ([str(root)] if root is not None else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_repository_is_within_the_limits() -> None:
    done = run_sizes()
    assert done.returncode == 0, done.stdout + done.stderr


def test_oversized_class_and_module_are_named(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "small.py").write_text("class Fine:\n" + "    x = 1\n" * 199)
    (pkg / "big_class.py").write_text("import os\n\n\nclass Huge:\n" + "    x = 1\n" * 200)
    (pkg / "long.py").write_text("x = 1\n" * 501)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "ignored.py").write_text("x = 1\n" * 1000)
    done = run_sizes(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines == [
        "pkg/big_class.py:4: class Huge has 201 lines (limit 200)",
        "pkg/long.py:1: module has 501 lines (limit 500)",
    ]
    assert "2 over the limit" in done.stderr


def test_clean_tree_passes(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("class Fine:\n" + "    x = 1\n" * 199 + "y = 2\n" * 299)
    done = run_sizes(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "1 files" in done.stdout

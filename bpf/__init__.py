"""BPF C sources, shipped as package data and compiled by BCC at load time."""

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent


def source_path(name: str) -> Path:
    """Path of a C source shipped in this package, e.g. ``source_path("denied.c")``."""
    path = SOURCE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"BPF source {name!r} is not in {SOURCE_DIR}")
    return path

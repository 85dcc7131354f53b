"""Wildcard patterns of set members: ``*`` any run of characters, ``?`` exactly one; nothing else special."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=4096)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern]
    return re.compile("".join(parts), re.DOTALL)


def matches_pattern(text: str, pattern: str) -> bool:
    return pattern_regex(pattern).fullmatch(text) is not None


def has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text

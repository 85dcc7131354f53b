"""The one error type of the query language: what was wrong, where, and what would be right."""

from __future__ import annotations

import re


class QueryError(ValueError):
    """A query that cannot be parsed, validated or compiled.

    ``position`` is a 0-based character offset into ``query`` (None when the error is not tied to one
    place), ``expected`` lists what would have been accepted there, ``suggestion`` is a corrected key
    or value when one is close enough to guess. ``str(error)`` is one human-readable line.
    """

    def __init__(
        self,
        message: str,
        *,
        position: int | None = None,
        query: str = "",
        expected: tuple[str, ...] = (),
        suggestion: str | None = None,
        syntax: bool = False,
    ) -> None:
        super().__init__(message)
        self.syntax = syntax  # raised by the grammar (not the lexer or validation)
        self.message = message
        self.position = position
        self.query = query
        self.expected = expected
        self.suggestion = suggestion

    def with_query(self, query: str) -> QueryError:
        """The same error, attached to the text it was found in (validation errors learn it late)."""
        self.query = query
        return self

    def __str__(self) -> str:
        parts = [self.message]
        if self.position is not None:
            parts.append(f"at position {self.position}")
        line = " ".join(parts)
        if self.expected and len(self.expected) <= _MAX_SHOWN and not _SAYS_EXPECTED.search(self.message):
            line += f"; expected {_one_of(self.expected)}"
        if self.suggestion is not None:
            line += f'; did you mean "{self.suggestion}"?'
        return line

    def caret(self) -> str:
        """The query on one line and a caret under the error's position (for terminals)."""
        text = self.query.replace("\n", " ").replace("\t", " ")
        if self.position is None:
            return text
        return f"{text}\n{' ' * min(self.position, len(text))}^"


_MAX_SHOWN = 10
_SAYS_EXPECTED = re.compile(r"\bexpected\b")


def _one_of(options: tuple[str, ...]) -> str:
    return options[0] if len(options) == 1 else "one of " + ", ".join(options)

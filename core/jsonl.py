"""JSON lines: one JSON value per line (labelled PII sets, knowledge bases, query files, StackFAQ threads)."""

from __future__ import annotations

from collections.abc import Iterator


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a JSON-lines text, each with its number (from 1, blank lines counted).

    Lines end at ``"\\n"`` only: ``str.splitlines()`` also breaks at U+2028, U+2029, U+0085 and other characters that
    a JSON string may hold unescaped, which would cut a record in two.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield number, line

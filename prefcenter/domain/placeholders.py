"""The campaign content language: literal text and three placeholders, nothing more (API.md "Campaigns").

- ``{{ customer_id }}``, ``{{ manage_url }}`` and ``{{ unsubscribe_url }}``, with any number of spaces or
  tabs (or none) between the braces and the name, are placeholders.
- Anything else that opens a Jinja construct is an error at PUT, with its line and column (1-based, the
  column counted in characters, lines separated by ``\\n``): ``{{`` followed by anything but one of the
  three names and ``}}`` (filters, expressions, attribute access, unknown names, whitespace control
  ``{{-``, an unclosed ``{{``), a statement ``{%`` and a comment ``{#``.
- There is no escape for the literal two-character sequences ``{{``, ``{%`` and ``{#``: they are not
  allowed in content. Write ``{ {``, ``{ %``, ``{ #`` instead, or in HTML ``&#123;{``. A single ``{``
  followed by anything else and ``}``/``}}`` anywhere are plain text (``a{color:red}``,
  ``@media print{a{color:red}}``).
- Rendering is a linear substitution: no expression is ever evaluated, so a render costs time
  proportional to the size of the content plus the values and cannot loop. ``escape`` is applied to each
  value (not to the literal text), e.g. ``markupsafe.escape`` for HTML parts.

Pure: no I/O, no framework; parsed forms are cached by source, so parsing at every render is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

PLACEHOLDERS = frozenset({"customer_id", "manage_url", "unsubscribe_url"})
_USE = ", ".join("{{ " + name + " }}" for name in sorted(PLACEHOLDERS))
_OPEN = re.compile(r"\{[{%#]")
_PLACEHOLDER = re.compile(r"\{\{[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}")
_NAME_ONLY = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_]*)[ \t]*")
_SHOWN = 40  # at most this many characters of the offending text are quoted in an error


class PlaceholderError(ValueError):
    """Content that is not the placeholder language: where (1-based line and column) and why."""

    def __init__(self, line: int, column: int, reason: str) -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.line = line
        self.column = column
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Template:
    """Parsed content: ``literals[0] names[0] literals[1] ... names[-1] literals[-1]``."""

    literals: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def used(self) -> frozenset[str]:
        """The placeholder names the content uses."""
        return frozenset(self.names)

    def render(self, values: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
        """The literal text with each placeholder replaced by ``escape(values[name])`` (each value escaped
        once per render)."""
        try:
            quoted = {name: str(escape(values[name])) for name in self.used}
        except KeyError as exc:
            raise ValueError(f"no value for the placeholder {exc.args[0]}") from None
        out = [self.literals[0]]
        for name, literal in zip(self.names, self.literals[1:], strict=True):
            out.append(quoted[name])
            out.append(literal)
        return "".join(out)


def _position(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _reason(source: str, start: int) -> str:
    """Why the construct opening at ``start`` is not a placeholder."""
    opener = source[start : start + 2]
    if opener == "{%":
        return (
            "'{%' opens a template statement (if, for, set, ...), which content does not allow; "
            "content may only use " + _USE + " (for a literal '{%' write '{ %')"
        )
    if opener == "{#":
        return "'{#' opens a template comment, which content does not allow (for a literal '{#' write '{ #')"
    end = source.find("}}", start + 2)
    if end < 0:
        return (
            "'{{' is not closed by '}}'; content may only use " + _USE + " (for a literal '{{' write '{ {')"
        )
    inner = source[start + 2 : end]
    name = _NAME_ONLY.fullmatch(inner)
    if name is not None:
        return f"unknown placeholder {_shown(name.group(1))}; use {_USE}"
    return (
        f"{_shown('{{' + inner + '}}')} is not a placeholder: filters, expressions and other template "
        f"syntax are not allowed; content may only use {_USE}"
    )


def _parse(source: str) -> Template:
    literals: list[str] = []
    names: list[str] = []
    pos = 0
    while (found := _OPEN.search(source, pos)) is not None:
        start = found.start()
        match = _PLACEHOLDER.match(source, start)
        if match is None or match.group(1) not in PLACEHOLDERS:
            line, column = _position(source, start)
            raise PlaceholderError(line, column, _reason(source, start))
        literals.append(source[pos:start])
        names.append(match.group(1))
        pos = match.end()
    literals.append(source[pos:])
    return Template(tuple(literals), tuple(names))


@lru_cache(maxsize=256)
def parse(source: str) -> Template:
    """The parsed form of ``source`` (cached); ``PlaceholderError`` (a ``ValueError``) if it is not the
    placeholder language. Time and memory are linear in ``len(source)``."""
    return _parse(source)


def render(source: str, values: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
    """``parse(source).render(values, escape)``."""
    return parse(source).render(values, escape)


__all__ = ["PLACEHOLDERS", "PlaceholderError", "Template", "parse", "render"]

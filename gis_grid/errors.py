"""The error types, one per kind of failure.

``InputError`` carries every problem found in one piece of input (a file, an upload, a
layer), so a user fixes them all in one go rather than one per run. Each problem names
where it is (the file, the row or feature, the field) and what is wrong.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one piece of input.

    ``where`` is the row or feature as a user finds it: ``row 17`` for a CSV (the line
    number a spreadsheet shows, the header being row 1), ``feature 3 (id=O-17)`` for a
    GeoJSON / GeoPackage / Shapefile feature counted from 1.
    """

    source: str
    where: str | None
    field: str | None
    message: str
    #: What kind of problem, without the row's value (``is not one of 营业, 停业, 筹建``),
    #: for the summary by field and kind; None: the message with its values blanked.
    kind: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        loc = self.source
        if self.where:
            loc += f" {self.where}"
        text = f"{self.field} {self.message}" if self.field else self.message
        return f"{loc}: {text}"

    def as_dict(self) -> dict:
        return {"source": self.source, "where": self.where, "field": self.field,
                "message": self.message}

    @property
    def kind_text(self) -> str:
        """The kind of problem: ``kind``, else the message with quoted values and numbers
        replaced by ``…``."""
        if self.kind is not None:
            return self.kind
        return _VALUES.sub("…", self.message)


#: Quoted values and numbers in a message, blanked to find its kind.
_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![\w\[-])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


def summarize(problems: list[Problem]) -> list[tuple[str | None, str, int]]:
    """(field, kind, count) of ``problems``, most frequent first (ties in first-seen
    order): what a user fixes column by column before reading row by row."""
    counts = Counter((p.field, p.kind_text) for p in problems)
    return sorted(((f, k, n) for (f, k), n in counts.items()), key=lambda item: -item[2])


class GisGridError(Exception):
    """Base of every error the product raises on purpose. The CLI prints these plainly."""

    exit_code = 1


class InputError(GisGridError):
    """Input failed its checks; nothing was stored. Holds every problem found."""

    exit_code = 3

    def __init__(self, problems: list[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source or (self.problems[0].source if self.problems else "input")
        super().__init__(self.report())

    #: More problems than this get a summary by field and kind before the list.
    SUMMARY_FROM = 5

    def report(self, limit: int | None = 50) -> str:
        n = len(self.problems)
        head = f"{self.source}: {n} problem{'s' if n != 1 else ''}; nothing was stored"
        lines = [head]
        if n > self.SUMMARY_FROM:
            lines.append("  by kind (field: problem × how many):")
            lines += [f"    {f or '(file)'}: {k} × {c}" for f, k, c in summarize(self.problems)]
            lines.append("  by row:")
        shown = self.problems if limit is None else self.problems[:limit]
        lines += [f"  {p}" for p in shown]
        if limit is not None and n > limit:
            lines.append(f"  … and {n - limit} more (--problems FILE lists every one)")
        return "\n".join(lines)


class StoreError(GisGridError):
    """A store could not be opened, read or written (connection, missing layer, …)."""

    exit_code = 4


class LayerNotFound(StoreError):
    def __init__(self, layer: str, store: str):
        super().__init__(f"{store}: no layer named {layer!r}")
        self.layer = layer


class ConflictError(StoreError):
    """A row-level update found the row at another version than the writer read: someone
    else changed it first. Nothing was written; read the row again and decide anew."""

    def __init__(self, layer: str, key: str, value: object, expected: int,
                 actual: int | None):
        super().__init__(
            f"{layer} {key}={value}: changed by someone else meanwhile (now version "
            f"{actual}, this change was made against version {expected}); nothing was "
            "written — read it again and retry")
        self.layer, self.key, self.value = layer, key, value
        self.expected, self.actual = expected, actual


class TransitionRefused(GisGridError):
    """An event was asked to move along a path its kind does not allow (or without what
    the step needs, such as a note). Names the transitions that are allowed."""

    exit_code = 1

    def __init__(self, message: str, allowed: list[str] | None = None):
        self.allowed = list(allowed or [])
        tail = f"; allowed: {', '.join(self.allowed)}" if self.allowed else \
            "; no transition is allowed from here"
        super().__init__(message + tail)

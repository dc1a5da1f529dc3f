"""The one error type of the rspec library.

Every problem carries the line and element it was found at, so a client can fix its request
without guessing. `geni_code` is the GENI AM API code the AM answers with (`am.errors` maps it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

BADARGS = 1      # malformed, schema-invalid, dangling references, duplicates
BADVERSION = 4   # wrong namespace, RSpec version or document type
TOOBIG = 6       # over the size limit


@dataclass(frozen=True)
class Problem:
    line: int | None
    element: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line ?"
        if self.element:
            where += f", <{self.element}>"
        return f"{where}: {self.message}"


class RSpecError(Exception):
    """A document was refused; `problems` lists every reason found (at least one)."""

    def __init__(self, problems: Iterable[Problem], geni_code: int = BADARGS):
        self.problems: list[Problem] = list(problems) or [Problem(None, None, "invalid RSpec")]
        self.geni_code = geni_code
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return f"invalid RSpec: {self.problems[0]}"
        return "invalid RSpec ({} problems):\n".format(len(self.problems)) + "\n".join(
            f"  {p}" for p in self.problems)

    @classmethod
    def one(cls, message: str, *, line: int | None = None, element: str | None = None,
            geni_code: int = BADARGS) -> "RSpecError":
        return cls([Problem(line, element, message)], geni_code)


def at_start_tags(problems: Iterable[Problem], source: str | bytes) -> list[Problem]:
    """Move each problem's line to where its element's start tag begins.

    libxml2 reports the line on which a start tag *ends*; a tag spread over several lines
    (common in hand-written RSpecs) would otherwise be reported at its last line.
    """
    import re

    if isinstance(source, (bytes, bytearray)):
        source = bytes(source).decode("utf-8", errors="replace")
    lines = source.splitlines()
    fixed = []
    for p in problems:
        line = p.line
        if line and p.element and not p.element.startswith("!") and line <= len(lines):
            local = p.element.rsplit(":", 1)[-1]
            pattern = re.compile(r"<(?:[\w.-]+:)?" + re.escape(local) + r"(?=[\s/>]|$)")
            for candidate in range(line, max(0, line - 50), -1):
                if pattern.search(lines[candidate - 1]):
                    line = candidate
                    break
        fixed.append(Problem(line, p.element, p.message) if line != p.line else p)
    return fixed

"""A one-line progress bar on stderr: `[#####.....] 5/10 ready, 1 failed, 4 on the way`.

On a terminal the line is redrawn in place; otherwise (logs, CI, tests) a line is written only
when the figures change, so the output stays readable.
"""
from __future__ import annotations

import sys
from typing import IO

from am.client.wait import Progress


def render(progress: Progress, width: int = 20) -> str:
    total = max(progress.total, 1)
    done = round(width * progress.ready / total)
    bad = round(width * progress.failed / total)
    done = min(done, width)
    bad = min(bad, width - done)
    bar = "#" * done + "!" * bad + "." * (width - done - bad)
    text = f"[{bar}] {progress.ready}/{progress.total} ready"
    if progress.failed:
        text += f", {progress.failed} failed"
    if progress.not_ready:
        text += f", {progress.not_ready} not ready"
    if progress.pending - progress.not_ready:
        text += f", {progress.pending - progress.not_ready} on the way"
    return text


class ProgressBar:
    def __init__(self, stream: IO[str] | None = None, width: int = 20):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = ""

    def __call__(self, progress: Progress) -> None:
        line = render(progress, self.width)
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last)))
        elif line != self._last:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line

    def finish(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()

"""What the demo prints: step headings, each request, answer summaries, and one live progress line.

Output is plain ASCII so it survives any terminal encoding and log file. On a TTY the progress
line is rewritten in place (carriage return + erase line); elsewhere (a pipe, CI, a test) a line
is printed only when its text changes, so a log shows every state the rollout went through
without a line per poll.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ("Console", "short_body")

BODY_WIDTH = 110
ERASE_LINE = "\r\x1b[K"


def short_body(body: object, width: int = BODY_WIDTH) -> str:
    """One line of compact JSON, cut to `width` characters with `...` so long bodies stay readable."""
    if body is None:
        return ""
    text = json.dumps(body, separators=(", ", ": "), ensure_ascii=True)
    return text if len(text) <= width else text[: width - 3] + "..."


class Console:
    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self._stream = stream
        self.live = stream.isatty() if live is None else live
        self._progress: str | None = None
        self._progress_key: object = None
        self._step = 0

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _end_progress(self) -> None:
        if self._progress is not None and self.live:
            self._write("\n")
        self._progress = self._progress_key = None

    def line(self, text: str = "") -> None:
        self._end_progress()
        self._write(text + "\n")

    def step(self, title: str) -> None:
        self._step += 1
        self.line()
        self.line(f"== {self._step}. {title}")

    def note(self, text: str) -> None:
        self.line(f"   {text}")

    def request(self, method: str, path: str, body: object = None, *, role: str | None = None) -> None:
        who = f" [as {role}]" if role else ""
        shown = short_body(body)
        self.line(f"   -> {method} {path}{who}" + (f" {shown}" if shown else ""))

    def answer(self, status: int, summary: str) -> None:
        self.line(f"   <- {status} {summary}")

    def detail(self, text: str) -> None:
        self.line(f"        {text}")

    def progress(self, text: str, key: object = None) -> None:
        """Show `text` as the current progress.

        On a TTY the line is rewritten whenever the text changes. Elsewhere a new line is printed
        only when `key` (the state the text describes, without ticking clocks) changes; `None`
        means the text itself is the key.
        """
        state = text if key is None else key
        if self.live:
            if text != self._progress:
                width = max(shutil.get_terminal_size().columns - 7, 20)  # a wrapped line cannot be rewritten
                shown = text if len(text) <= width else text[: width - 3] + "..."
                self._write(f"{ERASE_LINE}   .. {shown}")
        elif state != self._progress_key or self._progress is None:
            self._write(f"   .. {text}\n")
        self._progress, self._progress_key = text, state

    def finish_progress(self) -> None:
        self._end_progress()

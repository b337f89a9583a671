"""A progress line with images/s and ETA, written to stderr, with no dependency (the serving install has no tqdm).

On a terminal it redraws one line a few times a second; in a log (stderr not a terminal) it writes a line every
``log_interval`` seconds instead; ``--quiet`` turns it off.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TextIO

WINDOW_SECONDS = 10.0  # the rate shown: images over the last few seconds, so the ETA follows a change of pace


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool = True,
        interactive: bool | None = None,
        redraw_interval: float = 0.25,
        log_interval: float = 10.0,
    ) -> None:
        self.total = total
        self.done = 0
        self.errors = 0
        self._stream = stream
        self._enabled = enabled
        self._interactive = stream.isatty() if interactive is None else interactive
        self._interval = redraw_interval if self._interactive else log_interval
        self._started = time.perf_counter()
        self._last_shown = float("-inf")
        self._recent: deque[tuple[float, int]] = deque([(self._started, 0)])

    def advance(self, images: int, errors: int = 0) -> None:
        self.done += images
        self.errors += errors
        now = time.perf_counter()
        self._recent.append((now, self.done))
        while len(self._recent) > 2 and now - self._recent[1][0] > WINDOW_SECONDS:
            self._recent.popleft()
        if self._enabled and now - self._last_shown >= self._interval:
            self._show(now)

    def rate(self) -> float:
        (start, before), (now, after) = self._recent[0], self._recent[-1]
        return (after - before) / (now - start) if now > start else 0.0

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        rate = self.rate()
        fraction = self.done / self.total if self.total else 1.0
        width = 24
        filled = int(fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        eta = duration((self.total - self.done) / rate) if rate > 0 else "?"
        errors = f", {self.errors:,} errors" if self.errors else ""
        return (
            f"{self.done:,}/{self.total:,} [{bar}] {fraction:4.0%} {rate:,.1f} img/s, "
            f"elapsed {duration(now - self._started)}, ETA {eta}{errors}"
        )

    def close(self) -> None:
        if self._enabled and self.total:
            self._show(time.perf_counter())
            if self._interactive:
                self._stream.write("\n")
                self._stream.flush()

    def _show(self, now: float) -> None:
        self._last_shown = now
        if self._interactive:
            self._stream.write("\r" + self.line(now) + "\x1b[K")
        else:
            self._stream.write(self.line(now) + "\n")
        self._stream.flush()

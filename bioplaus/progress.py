"""A dependency-free progress bar: images/s and the running loss.

On a terminal it redraws one line; elsewhere (logs, CI) it prints a line
at every tenth of the epoch, so long runs show they are alive.
"""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str, *, enabled: bool = True, start: int = 0,
                 stream=None):
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.time()
        self.last_tenth = (10 * start) // self.total
        self.rate = None

    def update(self, done: int, images_per_s: float, loss: float) -> None:
        if not self.enabled:
            return
        # smoothed throughput
        self.rate = images_per_s if self.rate is None else 0.9 * self.rate + 0.1 * images_per_s
        frac = done / self.total
        width = 24
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        msg = (f"{self.label} [{bar}] {done}/{self.total} "
               f"{self.rate:,.0f} img/s loss={loss:.4f} {time.time() - self.t0:.0f}s")
        if self.tty:
            self.stream.write("\r" + msg)
            self.stream.flush()
        else:
            tenth = (10 * done) // self.total
            if tenth > self.last_tenth:
                self.last_tenth = tenth
                self.stream.write(msg + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

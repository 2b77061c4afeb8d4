"""How far a run is and how long it will take: tqdm bars for the epoch's steps
and for the evaluation, with the run's elapsed and remaining time.

tqdm does the bar, the rate and the epoch's ETA (``tqdm.format_meter``).
What is written here by hand is what tqdm cannot know:

* the run's total and remaining time, across epochs, evaluations and resumes
  (``--max-steps`` counted in: the bar says ``epoch 1/1, 3 steps``, never
  ``epoch 1/400``);
* the estimate of the whole run's length from its first steps, said once at
  the start, loudly when it is long (days);
* output for logs: where the stream is not a terminal tqdm would write
  carriage returns; instead one plain line (tqdm's own meter text) is printed
  at every tenth of the bar, so a log shows the run is alive without a line
  per step.
"""
from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm


def hms(seconds: float) -> str:
    """``H:MM:SS`` (``3 days 4:05:06`` past a day); ``?`` for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    t = f"{h}:{m:02d}:{s:02d}"
    return f"{d} day{'s' if d != 1 else ''} {t}" if d else t


def _isatty(stream) -> bool:
    return bool(getattr(stream, "isatty", None)) and stream.isatty()


class Bar:
    """One bar (the steps of an epoch, or the batches of an evaluation).

    On a terminal a tqdm bar; elsewhere a line of tqdm's meter at every tenth.
    ``postfix`` (a string) follows the meter.
    """

    def __init__(self, total: int, desc: str, *, unit: str, initial: int = 0,
                 enabled: bool = True, stream=None, leave: bool = True):
        self.total = max(int(total), 1)
        self.desc, self.unit = desc, unit
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = _isatty(self.stream)
        self.n = int(initial)
        self.initial = int(initial)
        self.t0 = time.time()
        self.postfix = ""
        self.last_tenth = (10 * self.n) // self.total
        self._bar = None
        if enabled and self.tty:
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=unit,
                             file=self.stream, dynamic_ncols=True, leave=leave,
                             mininterval=0.5, smoothing=0.1)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)
            return
        tenth = (10 * self.n) // self.total
        if tenth > self.last_tenth:
            self.last_tenth = tenth
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """tqdm's meter for a log: ``desc: 30%|### | 3/10 [00:05<00:12, 1.6step/s]``."""
        done = self.n - self.initial
        elapsed = time.time() - self.t0
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        meter = tqdm.format_meter(self.n, self.total, elapsed, ncols=80, prefix=self.desc,
                                  unit=self.unit, rate=rate, initial=self.initial)
        return meter + (f", {self.postfix}" if self.postfix else "")

    def write(self, text: str) -> None:
        """A message that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def wrap(iterable, total: int, desc: str, *, unit: str, enabled: bool = True, stream=None,
         stop=None):
    """Yield from ``iterable`` under a :class:`Bar` (cleared from a terminal when
    done); ``stop()`` true ends it early (the caller finds out through its own flag)."""
    bar = Bar(total, desc, unit=unit, enabled=enabled, stream=stream, leave=False)
    try:
        for item in iterable:
            yield item
            bar.update(1)
            if stop is not None and stop():
                return
    finally:
        bar.close()


class RunClock:
    """The run's total and remaining time.

    ``total_steps`` is the run's real total: ``epochs * steps_per_epoch``, or
    ``--max-steps`` where that is less. Time per step is measured on this
    process's steps (the first, slow one left out once there are others);
    each evaluation's time is added once per epoch still to come.
    """

    ESTIMATE_AFTER_STEPS = 5    # estimate after this many steps,
    ESTIMATE_AFTER_S = 20.0     # or after 2 steps once this long has passed

    def __init__(self, *, epochs: int, steps_per_epoch: int, max_steps: int = 0,
                 step: int = 0, wall_before: float = 0.0):
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        full = int(epochs) * self.steps_per_epoch
        self.total_steps = min(full, int(max_steps)) if max_steps else full
        self.last_epoch = math.ceil(self.total_steps / self.steps_per_epoch)
        self.epochs_total = int(epochs)
        self.start_step = int(step)
        self.step = int(step)
        self.wall_before = float(wall_before)
        self.t0 = time.time()
        self.first_step_s = None
        self.t_after_first = None
        self.eval_s = None
        self.estimated = False

    def steps_in_epoch(self, epoch: int) -> int:
        """How many steps epoch ``epoch`` runs (the last may be cut by --max-steps)."""
        before = (epoch - 1) * self.steps_per_epoch
        return max(min(self.steps_per_epoch, self.total_steps - before), 0)

    def stepped(self) -> None:
        self.step += 1
        if self.first_step_s is None:
            self.first_step_s = time.time() - self.t0
            self.t_after_first = time.time()

    def evaluated(self, seconds: float) -> None:
        self.eval_s = seconds if self.eval_s is None else 0.5 * (self.eval_s + seconds)

    def step_s(self):
        done = self.step - self.start_step
        if done <= 0:
            return None
        if done == 1:
            return self.first_step_s
        return (time.time() - self.t_after_first) / (done - 1)

    def elapsed(self) -> float:
        """The run's wall time, this process's and earlier ones' (resumes)."""
        return self.wall_before + time.time() - self.t0

    def remaining(self, epoch: int) -> float | None:
        s = self.step_s()
        if s is None:
            return None
        left_steps = max(self.total_steps - self.step, 0)
        left_evals = max(self.last_epoch - epoch + 1, 0)  # this epoch's evaluation too
        return left_steps * s + left_evals * (self.eval_s or 0.0)

    def postfix(self, epoch: int, loss: float | None = None) -> str:
        txt = f"run {hms(self.elapsed())}, {hms(self.remaining(epoch))} left"
        if loss is not None:
            txt = f"loss={loss:.4f}, " + txt
        return txt

    def estimate_line(self) -> str | None:
        """Once, after the first steps: the whole run's expected length."""
        done = self.step - self.start_step
        if self.estimated or done == 0:
            return None
        want = min(self.ESTIMATE_AFTER_STEPS, self.total_steps - self.start_step)
        slow = time.time() - self.t0 >= self.ESTIMATE_AFTER_S
        # the first step (start-up: allocation, caches) is left out where a second follows
        if done < want and not (slow and done >= min(2, want)):
            return None
        self.estimated = True
        if self.step >= self.total_steps:
            return None  # the run is over already: nothing to estimate
        s = self.step_s()
        left = max(self.total_steps - self.step, 0) * s
        epochs = self.last_epoch - (self.start_step // self.steps_per_epoch)
        line = (f"estimate from the first {done} step{'s' if done != 1 else ''}: "
                f"{s:.2f} s/step, {self.total_steps - self.step:,} steps to go "
                f"({self.steps_per_epoch:,} per epoch, {epochs} epoch{'s' if epochs != 1 else ''}"
                f" with their evaluations) -> about {hms(left)} of training")
        if left >= 86400:
            line += (f"\nNOTE: this run will take about {left / 86400:.1f} days on this machine; "
                     "--epochs N or --max-steps N make it shorter, --device gpu faster")
        return line

"""SIGINT, SIGTERM and SIGHUP stop a run the way Ctrl-C does.

Schedulers and containers stop jobs with SIGTERM (SIGHUP when the terminal
goes away). The handler only sets a flag; the training loop checks it after
each step, writes a checkpoint and ends with a message (no work is done in
the handler). :func:`stop_on_signals` installs the handlers around a run and
restores the previous ones after it. A sweep's driver, which waits on Ray
rather than looping over steps, uses :func:`interrupt_on_signals`: SIGTERM
and SIGHUP raise KeyboardInterrupt there, as Ctrl-C does.
"""
from __future__ import annotations

import contextlib
import signal

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


@contextlib.contextmanager
def _handled(handler, signals):
    """``handler`` for each of ``signals`` within the block, the previous handlers after it.
    Outside the main thread nothing is installed."""
    previous = {}
    try:
        for s in signals:
            try:
                previous[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: signals are not ours to handle
                break
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stop_on_signals(stop: dict, signals=STOP_SIGNALS):
    """Within the block, each of ``signals`` sets ``stop["flag"] = True`` and
    ``stop["signal"]`` to its name. Outside the main thread nothing is installed."""

    def handler(signum, frame):
        stop["flag"] = True
        stop["signal"] = signal.Signals(signum).name

    with _handled(handler, signals):
        yield stop


@contextlib.contextmanager
def interrupt_on_signals(stop: dict, signals=STOP_SIGNALS[1:]):
    """Within the block, each of ``signals`` (SIGTERM and SIGHUP) records its name in
    ``stop["signal"]`` and raises KeyboardInterrupt, so that the code that answers
    Ctrl-C answers it. SIGINT keeps Python's own handler (which raises
    KeyboardInterrupt), unless it was ignored when the process started (a command
    started with ``&`` by a non-interactive shell): then the process keeps ignoring it.
    """

    def handler(signum, frame):
        stop["signal"] = signal.Signals(signum).name
        raise KeyboardInterrupt

    with _handled(handler, signals):
        yield stop


def describe(stop: dict) -> str:
    """``'Ctrl-C'`` or the signal's name, for messages."""
    name = stop.get("signal")
    return "Ctrl-C" if name in (None, "SIGINT") else name

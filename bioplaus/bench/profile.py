r"""Where a training step's time goes: every hand-written op timed, self time only.

:func:`profile_step` wraps every function of the step's kernels
(``model.k``, :class:`bioplaus.kernels.Kernels`: the forward/backward
pairs, the similarity matrix, the losses and the optimizer step, reference
or fast) and the ops' own helpers listed in :data:`INTERNALS` with a
timer, runs whole steps (as :class:`~bioplaus.bench.steps.BioplausStep`
does) and reports per op its calls and *self* time per step: the time
inside the op less the time of the timed ops it calls (``im2col`` inside
``conv2d_forward`` is counted once, under ``im2col``). Ops are named
``<family>.<function>`` after :data:`bioplaus.kernels.TABLE`. On a GPU the
device is synchronised before and after every timed call, so each op's time
is its device time plus its launch cost; the sum is then larger than an
unprofiled step, whose kernels overlap Python's work, and the difference
shows what asynchrony already hides.

The wrappers are removed when :func:`profile_step` returns; the step's
results are the same with and without them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time

import numpy as np

from bioplaus import backend, kernels
from bioplaus.fast import conv as fast_conv
from bioplaus.ops import conv

# (module, function names): helpers the ops call through their module, timed
# there (where the module has them); the reference's and the fast twin's
INTERNALS = (
    (conv, ("im2col", "col2im")),
    (fast_conv, ("im2col", "col2im")),
)


class _Timers:
    """Self time and calls per op; a stack subtracts nested timed calls."""

    def __init__(self, sync):
        self.sync = sync
        self.total = {}
        self.calls = {}
        self._stack = []  # [name, time spent in nested timed calls]

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.sync()
            self._stack.append([name, 0.0])
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sync()
                dt = time.perf_counter() - t0
                _, nested = self._stack.pop()
                self.total[name] = self.total.get(name, 0.0) + dt - nested
                self.calls[name] = self.calls.get(name, 0) + 1
                if self._stack:
                    self._stack[-1][1] += dt

        timed.__wrapped__ = fn
        return timed


@contextlib.contextmanager
def _timed_ops(timers, model):
    """Give ``model`` timed kernels and time the :data:`INTERNALS`; undone on exit."""
    saved = []
    old_k = model.k
    try:
        for mod, names in INTERNALS:
            for name in names:
                fn = getattr(mod, name, None)
                if fn is None:
                    continue
                saved.append((mod, name, fn))
                setattr(mod, name, timers.wrap(f"{mod.__name__.rsplit('.', 1)[-1]}.{name}", fn))
        model.k = dataclasses.replace(old_k, **{
            field: timers.wrap(f"{family}.{attr}", getattr(old_k, field))
            for field, (family, attr) in kernels.TABLE.items()})
        yield
    finally:
        model.k = old_k
        for mod, name, fn in saved:
            setattr(mod, name, fn)


def profile_step(step, xp, steps: int = 2) -> dict:
    """Profile ``steps`` calls of ``step`` (a warmed-up BioplausStep).

    Returns ``{"step_ms": median unprofiled step, "ops": [(name, calls per
    step, self ms per step)], sorted by time, "sum_ms": their sum per step,
    "profiled_ms": mean profiled step}``.
    """
    sync = (lambda: backend.synchronize(xp)) if xp is not np else (lambda: None)
    plain = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        plain.append(time.perf_counter() - t0)
    timers = _Timers(sync)
    with _timed_ops(timers, step.model):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        profiled = (time.perf_counter() - t0) / steps
    ops = sorted(((name, timers.calls[name] / steps, 1e3 * t / steps)
                  for name, t in timers.total.items()), key=lambda r: -r[2])
    return {"step_ms": 1e3 * statistics.median(plain), "ops": ops,
            "sum_ms": sum(r[2] for r in ops), "profiled_ms": 1e3 * profiled}


def run_profile(net: str, rule: str, *, batch: int = 128, steps: int = 2, device: str = "cpu",
                num_hidden: int = 1024, feat_mult: float = 1.0, dim_in_decoder: int = 4096,
                dropout: float = 0.0, top: int = 25, out=print) -> dict:
    """Print where one (net, rule) training step spends its time."""
    from bioplaus.bench import steps as st
    from bioplaus.runinfo import machine_description

    xp = backend.get_xp(device)
    cfg = st.bench_config(net, rule, batch=batch, num_hidden=num_hidden, feat_mult=feat_mult,
                          dim_in_decoder=dim_in_decoder, dropout=dropout, device=device)
    x, y, _, _ = st.make_batch(xp, batch)
    step = st.BioplausStep(cfg, xp, x, y)
    step()  # warm-up: optimizer moments, host pool, GPU kernels
    res = profile_step(step, xp, steps)
    out(f"profile of one {net} {rule} training step: device {device} "
        f"({machine_description(xp)}), float32, batch {batch}, 28x28x1 inputs, mean of {steps} "
        f"steps after 1 warm-up")
    sync_note = "; each op synchronises the GPU before and after" if xp is not np else ""
    out(f"self time per op (time inside it, less the timed ops it calls){sync_note}")
    out(f"step without timers: {res['step_ms']:.1f} ms (median); with timers "
        f"{res['profiled_ms']:.1f} ms, of which the timed ops {res['sum_ms']:.1f} ms and the "
        f"rest (Python between ops, untimed array work) "
        f"{res['profiled_ms'] - res['sum_ms']:.1f} ms")
    out("")
    out(f"{'op':<40}{'calls':>7}{'ms/step':>11}{'share':>8}")
    for name, calls, ms in res["ops"][:top]:
        out(f"{name:<40}{calls:>7.0f}{ms:>11.2f}{100 * ms / res['profiled_ms']:>7.1f}%")
    if len(res["ops"]) > top:
        rest = sum(r[2] for r in res["ops"][top:])
        label = f"({len(res['ops']) - top} more ops)"
        out(f"{label:<40}{'':>7}{rest:>11.2f}{100 * rest / res['profiled_ms']:>7.1f}%")
    return res

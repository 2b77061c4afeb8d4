"""ReLU and LeakyReLU, fast twins of :mod:`bioplaus.ops.act`: one compiled pass on the host.

The same signatures, the same cache (:class:`bioplaus.ops.act.ActCache`) and
the same values as the reference, non-finite values included
(``tests/fast/test_fast_act.py``). What differs: the results go into
buffers from the host pool (:mod:`bioplaus.fast.memory`, keeping the
input's memory order), and

* a NumPy array that is one dense block (:func:`bioplaus.fast.jit.flat`) takes
  one compiled loop of :mod:`bioplaus.fast.jit` on the host threads, which
  writes the output and the mask in the same pass and selects exactly as the
  reference does;
* other arrays work on groups of channels of about :data:`GROUP_VALUES`
  values spread over the host threads
  (:func:`bioplaus.fast.threads.channel_groups`), and on NumPy

* ReLU's mask is taken from the output (``y != 0``, the same as
  ``not x <= 0``); its backward multiplies by the mask (ten times faster
  than a masked copy) and falls back to the selection only in a group whose
  product holds a NaN, which happens only when a NaN or inf upstream
  gradient meets an inactive unit;
* LeakyReLU's forward for slopes in [0, 1] is ``max(x, slope x)``.
"""
from __future__ import annotations

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import jit, memory, threads
from bioplaus.ops.act import ActCache

# ReLU and LeakyReLU work on groups of channels of about this many values (1 MiB of float32),
# spread over the host threads (bioplaus.fast.threads.channel_groups); elementwise,
# so the result is the same for any grouping. An (n, d) batch of the mlp is a
# single group.
GROUP_VALUES = 1 << 18


def _in_groups(x, fn):
    """Call ``fn(index)`` for groups of channels (axis 1) of ``x``; ``index`` selects
    a group in any array of ``x``'s shape. One call with ``...`` below 2-D."""
    if x.ndim < 2:
        fn(...)
        return
    c = x.shape[1]
    threads.channel_groups(lambda s: fn((slice(None), s)), c, x.size // max(c, 1), GROUP_VALUES,
                           on_host=array_module(x) is np)


def relu_forward(x):
    """Fast :func:`bioplaus.ops.act.relu_forward` (same arguments and results)."""
    xp = array_module(x)
    positive, y = memory.empty_like(x, dtype=bool), memory.empty_like(x)
    flat = jit.flat(x, y, positive)
    if flat is not None:
        jit.call(jit.relu_forward, *flat)
        return y, ActCache(positive=positive, slope=0.0, dtype=x.dtype)
    zero = x.dtype.type(0)

    def rectify(i):
        xp.maximum(x[i], zero, out=y[i])
        xp.not_equal(y[i], zero, out=positive[i])  # not x <= 0: x > 0, or x NaN

    _in_groups(x, rectify)
    return y, ActCache(positive=positive, slope=0.0, dtype=x.dtype)


def relu_backward(dy, cache):
    """Fast :func:`bioplaus.ops.act.relu_backward` (same arguments and results)."""
    xp = array_module(dy)
    if xp is not np:  # one fused selection on the device
        return xp.where(cache.positive, dy, dy.dtype.type(0))
    dx = memory.empty_like(dy)
    flat = jit.flat(dy, cache.positive, dx)
    if flat is not None:
        jit.call(jit.relu_backward, *flat)
        return dx

    def mask(i):
        with np.errstate(invalid="ignore"):
            xp.multiply(dy[i], cache.positive[i], out=dx[i])  # 0 * NaN or 0 * inf gives NaN:
            finite = np.isfinite(dx[i].sum())
        if not finite:  # then select, as the reference
            dx[i] = np.where(cache.positive[i], dy[i], dy.dtype.type(0))

    _in_groups(dy, mask)
    return dx


def leaky_relu_forward(x, slope=0.01):
    """Fast :func:`bioplaus.ops.act.leaky_relu_forward` (same arguments and results)."""
    xp = array_module(x)
    slope = float(slope)
    positive, y = memory.empty_like(x, dtype=bool), memory.empty_like(x)
    s = x.dtype.type(slope)
    flat = jit.flat(x, y, positive)
    if flat is not None:
        jit.call(jit.leaky_relu_forward, flat[0], s, flat[1], flat[2])
        return y, ActCache(positive=positive, slope=slope, dtype=x.dtype)

    def leak(i):  # slope * x, then x where positive
        xp.greater(x[i], 0, out=positive[i])
        xp.multiply(x[i], s, out=y[i])
        if 0.0 <= slope <= 1.0:  # then x > 0 iff x > s x: the same values, faster
            xp.maximum(y[i], x[i], out=y[i])
        else:
            xp.copyto(y[i], x[i], where=positive[i])

    _in_groups(x, leak)
    return y, ActCache(positive=positive, slope=slope, dtype=x.dtype)


def leaky_relu_backward(dy, cache):
    """Fast :func:`bioplaus.ops.act.leaky_relu_backward` (same arguments and results)."""
    xp = array_module(dy)
    dx, s = memory.empty_like(dy), dy.dtype.type(cache.slope)
    flat = jit.flat(dy, cache.positive, dx)
    if flat is not None:
        jit.call(jit.leaky_relu_backward, flat[0], flat[1], s, flat[2])
        return dx

    def leak(i):  # slope * dy, then dy where positive
        xp.multiply(dy[i], s, out=dx[i])
        xp.copyto(dx[i], dy[i], where=cache.positive[i])

    _in_groups(dy, leak)
    return dx

"""ReLU and LeakyReLU as one CuPy kernel each way: twins of :mod:`bioplaus.ops.act`.

The reference's forward is three kernels (the maximum or the leak, the
comparison, the selection) and its LeakyReLU backward two; here each is one
pass writing the output and the sign pattern together. The papers' result
for non-finite values is kept, as the reference has it (see
:mod:`bioplaus.ops.act`): the backward *selects*, so a NaN or inf ``dy`` at
an inactive ReLU unit gives 0 and at an inactive LeakyReLU unit
``slope * dy``; a NaN input counts as active for ReLU (``!(a <= 0)``) and
inactive for LeakyReLU (``a > 0``). ReLU's output is the selection
``positive ? a : 0``, which equals ``maximum(a, 0)`` everywhere, NaN
included (CUDA's ``fmaxf`` would drop the NaN); only the sign of a zero
output for the input -0.0 may differ from CuPy's ``maximum``.
"""
from __future__ import annotations

from bioplaus.fast.cuda import elementwise
from bioplaus.ops.act import ActCache


def relu_forward(x):
    """CUDA :func:`bioplaus.ops.act.relu_forward` (same arguments and results)."""
    k = elementwise("T x", "T y, bool positive",
                    "positive = !(x <= (T)0); y = positive ? x : (T)0;", "bioplaus_relu_fwd")
    y, positive = k(x)
    return y, ActCache(positive=positive, slope=0.0, dtype=x.dtype)


def relu_backward(dy, cache):
    """CUDA :func:`bioplaus.ops.act.relu_backward` (same arguments and results)."""
    k = elementwise("T dy, bool positive", "T dx", "dx = positive ? dy : (T)0;",
                    "bioplaus_relu_bwd")
    return k(dy, cache.positive)


def leaky_relu_forward(x, slope=0.01):
    """CUDA :func:`bioplaus.ops.act.leaky_relu_forward` (same arguments and results)."""
    slope = float(slope)
    k = elementwise("T x, T s", "T y, bool positive",
                    "positive = x > (T)0; y = positive ? x : s * x;", "bioplaus_leaky_fwd")
    y, positive = k(x, x.dtype.type(slope))
    return y, ActCache(positive=positive, slope=slope, dtype=x.dtype)


def leaky_relu_backward(dy, cache):
    """CUDA :func:`bioplaus.ops.act.leaky_relu_backward` (same arguments and results)."""
    k = elementwise("T dy, bool positive, T s", "T dx", "dx = positive ? dy : s * dy;",
                    "bioplaus_leaky_bwd")
    return k(dy, cache.positive, dy.dtype.type(cache.slope))

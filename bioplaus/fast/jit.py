"""Compiled elementwise kernels of the fast wing (Numba), one pass over memory each.

Adam, AMSGrad, SGD and the ReLU/LeakyReLU pairs make several passes over
their arrays when written with NumPy operators (Adam makes twelve); on the
mlp the optimizer's passes alone took a third of a step. Here each is one
loop over the flattened arrays, compiled by Numba, with its compiled code
cached on disk (``cache=True``, in ``__pycache__`` beside this file, or
Numba's user cache where that is read-only), so only the first run on a
machine compiles.

Measured on this project's 2-core CPU (``bioplaus bench steps --nets mlp
--no-torch``, median of 15; the column ``upd ms``), the loops are compiled as
``parallel=True`` loops but run on one thread (:func:`call`):

* on two threads, Numba's pool competing with OpenBLAS's and the fast wing's
  host threads made whole mlp steps about twice as slow (backprop 54 ms
  against 30, pred-bio 67 against 28), and the updates were no faster;
* compiled without ``parallel=True`` (plain serial loops) the same updates
  took 13.3 ms of an mlp backprop step against 3.1 ms.

Each loop performs, per element, the reference's own operations in the
reference's order and in the arrays' dtype (every constant is passed in
that dtype, computed as the reference computes it), so the results equal
the reference's bitwise in float32 and float64, non-finite values included
(``tests/fast/test_fast_optim.py``, ``tests/fast/test_fast_act.py``). Numba
is the fast wing's dependency; the reference path never imports it.

The callers (:mod:`bioplaus.fast.optim`, :mod:`bioplaus.fast.act`) use these
loops for NumPy arrays whose memory is one dense block (:func:`flat`) and
keep their NumPy formulation for the rest (CuPy arrays, strided views).
"""
from __future__ import annotations

import math
import threading

import numba
import numpy as np
from numba import njit, prange


_LAUNCH = threading.Lock()


def call(kernel, *args) -> None:
    """Run the compiled loop ``kernel(*args)`` on one thread, one launch at a time
    (Numba's default thread pool, ``workqueue``, aborts the process on
    concurrent launches from several Python threads)."""
    with _LAUNCH:
        numba.set_num_threads(1)
        kernel(*args)


def flat(*arrays):
    """One-dimensional views of ``arrays`` in which element ``i`` of each is the same
    entry: NumPy arrays of one shape, each one dense block with its axes in the
    same memory order (C order, or a transpose of it such as the fast
    convolution's channel-major maps); None when they are not (then a caller
    keeps its NumPy formulation). No copies."""
    first = arrays[0]
    if any(type(a) is not np.ndarray or a.shape != first.shape for a in arrays):
        return None
    # the axes from the slowest-varying to the fastest in the first array
    perm = tuple(sorted(range(first.ndim), key=lambda ax: -first.strides[ax]))
    out = []
    for a in arrays:
        t = a.transpose(perm)
        if not t.flags.c_contiguous:
            return None
        out.append(t.reshape(-1))
    return out


# ------------------------------------------------------------------ optimizers
@njit(parallel=True, cache=True)
def adam(p, g, m, v, v_max, beta1, beta2, one_m_beta1, one_m_beta2, bias1, bias2, lr, eps,
         weight_decay, use_weight_decay, amsgrad):
    """:func:`bioplaus.optim.step`'s Adam/AMSGrad update, element by element, in place.

    All scalars are in the arrays' dtype: ``one_m_beta* = 1 - beta*`` and
    ``bias* = 1 - beta*^t`` as the reference computes them (in Python floats).
    ``v_max`` is AMSGrad's running maximum (any array of the right size when
    not ``amsgrad``)."""
    for i in prange(p.size):
        gi = g[i]
        if use_weight_decay:
            gi = gi + weight_decay * p[i]  # L2 term added to the gradient
        mi = beta1 * m[i] + one_m_beta1 * gi  # first moment
        vi = beta2 * v[i] + one_m_beta2 * (gi * gi)  # second moment
        m[i] = mi
        v[i] = vi
        if amsgrad:  # running maximum, as numpy.maximum: NaN if either is NaN
            a = v_max[i]
            if a != a or (a > vi and vi == vi):  # (a NaN vi stays NaN)
                vi = a
            v_max[i] = vi
        m_hat = mi / bias1  # bias corrections
        v_hat = vi / bias2
        p[i] = p[i] - lr * m_hat / (math.sqrt(v_hat) + eps)


@njit(parallel=True, cache=True)
def sgd(p, g, b, lr, momentum, weight_decay, use_weight_decay, use_momentum, first):
    """:func:`bioplaus.optim.step`'s SGD update (with momentum buffer ``b`` when
    ``use_momentum``; ``first``: the parameter's first step), in place."""
    for i in prange(p.size):
        gi = g[i]
        if use_weight_decay:
            gi = gi + weight_decay * p[i]
        if use_momentum:
            if first:
                b[i] = gi  # torch: buffer = clone(g) at the first step
            else:
                b[i] = momentum * b[i] + gi
            gi = b[i]
        p[i] = p[i] - lr * gi


# ------------------------------------------------------------------ activations
@njit(parallel=True, cache=True)
def relu_forward(x, y, positive):
    """``y = maximum(x, 0)`` (NaN stays NaN) and ``positive = not x <= 0``."""
    for i in prange(x.size):
        xi = x[i]
        if xi > 0 or xi != xi:
            y[i] = xi
            positive[i] = True
        else:
            y[i] = 0
            positive[i] = False


@njit(parallel=True, cache=True)
def relu_backward(dy, positive, dx):
    """``dx = where(positive, dy, 0)``: 0 at an inactive unit, even for a NaN ``dy``."""
    for i in prange(dy.size):
        if positive[i]:
            dx[i] = dy[i]
        else:
            dx[i] = 0


@njit(parallel=True, cache=True)
def leaky_relu_forward(x, slope, y, positive):
    """``positive = x > 0``; ``y = where(positive, x, slope * x)`` (``slope`` in x's dtype)."""
    for i in prange(x.size):
        xi = x[i]
        if xi > 0:
            y[i] = xi
            positive[i] = True
        else:
            y[i] = slope * xi
            positive[i] = False


@njit(parallel=True, cache=True)
def leaky_relu_backward(dy, positive, slope, dx):
    """``dx = where(positive, dy, slope * dy)``."""
    for i in prange(dy.size):
        if positive[i]:
            dx[i] = dy[i]
        else:
            dx[i] = slope * dy[i]


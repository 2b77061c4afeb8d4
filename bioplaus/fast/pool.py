"""Fast twin of :mod:`bioplaus.ops.pool`: separable max, branch-free winners, any memory order.

The same functions and signatures as the reference :mod:`bioplaus.ops.pool`,
tested equal to it bit for bit (``tests/fast/test_fast_pool.py``).

Max pooling takes its maximum along window rows, then over the rows, and
finds the winners with ``kh*kw`` strided slices of the input, one per
window offset ``(i, j)``, each covering every example, channel and
output pixel at once: no Python loop over examples or pixels, one code
path for NumPy and CuPy, any window and stride, and the memory order of
the input is kept (a channel-major activation from
:func:`bioplaus.fast.conv.conv2d_forward` stays channel-major). For
non-overlapping windows (``k == stride``, the usual case) the backward
assigns instead of accumulating. A reshape-based path (``max`` over the
two window axes of a ``(n, c, oh, kh, ow, kw)`` view) was measured and is
several times slower in NumPy than these elementwise passes, so there is
none.

Output sizes follow PyTorch with ``ceil_mode=False``:
``(size + 2 pad - k) // stride + 1``; a remainder that no window covers is
dropped.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import memory
from bioplaus.ops.conv import _pair, conv_output_size
from bioplaus.ops.pool import _window_views


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs.

    Attributes
    ----------
    winner : array of uint8/int, shape (n, c, oh, ow), or None
        Row-major index ``i*kw + j`` of each window's (first) maximum; None
        when the forward was told no backward would follow.
    x_shape : tuple (n, c, h, w)
    k, stride : (int, int)
    """

    winner: object
    x_shape: tuple
    k: tuple
    stride: tuple


def _max_of(xp, views):
    """Elementwise maximum of equally shaped views, in the memory order of the first."""
    out = xp.empty_like(views[0])
    if len(views) == 1:
        xp.copyto(out, views[0])
        return out
    xp.maximum(views[0], views[1], out=out)
    for v in views[2:]:
        xp.maximum(out, v, out=out)
    return out


def _first_equal(xp, views, m, dtype):
    """Index of the first view equal to ``m`` at each position (the last one if none is).

    Branch-free: with :math:`e_t = [v_t \\ne m]`, the index is
    :math:`e_0 (1 + e_1 (1 + \\dots (1 + e_{T-2})))`.
    """
    t = xp.zeros_like(m, dtype=dtype)
    for v in reversed(views[:-1]):  # t = e_t * (1 + t), from the last entry back
        t += 1
        t *= v != m
    return t


def _first_nan(xp, views, dtype):
    """Index of the first view holding NaN at each position (the last one if none does)."""
    t = xp.zeros(views[0].shape, dtype=dtype)
    for v in reversed(views[:-1]):  # as _first_equal, with e_t = [v_t is not NaN]
        t += 1
        t *= ~xp.isnan(v)
    return t


def maxpool2d_forward(x, k=2, stride=2, winner=True):
    """Max pooling over ``k`` windows (no padding, floor mode).

    Parameters
    ----------
    x : array, shape (n, c, h, w)
    k, stride : int or (int, int)
        Window size and stride per axis (PyTorch's default stride is ``k``).
    winner : bool
        Whether to find each window's winner for :func:`maxpool2d_backward`.
        False when no error will come back through the pooling (the output
        of a block trained by a local loss is detached; evaluation): the
        cache then holds no winner and the backward refuses it.

    Returns
    -------
    y : array, shape (n, c, oh, ow)
        ``oh = (h - kh) // sh + 1``; likewise ``ow``. Same memory order as ``x``.
    cache : MaxPoolCache
        The index of each window's winner (None when ``winner`` is False).

    Notes
    -----
    .. math:: y_{n,c,p,q} = \\max_{i,j}\\; x_{n,c,\\,p s_h + i,\\, q s_w + j}

    On ties the winner is the first maximum in row-major window order, as
    in PyTorch's ``max_pool2d``; the backward sends the error to that one
    entry only (as in the feedback-alignment baseline of Mostafa et al.,
    2018, where max-pool routes the error to the winner).

    The maximum is separable, and taken so: first along each window row,
    :math:`r_{n,c,a,q} = \\max_j x_{n,c,a,q s_w + j}`, then over the rows,
    :math:`y_{n,c,p,q} = \\max_i r_{n,c,p s_h + i,q}`: the input is read once
    instead of ``kh*kw`` times (for 2x2 windows of a vgg8b activation about
    twice as fast as the maximum of the four window offsets). The winner,
    the first window entry :math:`t = i k_w + j` equal to :math:`y`, takes
    one comparison per entry (:func:`_first_equal`); without a backward to
    come it is skipped, which makes the forward about four times faster.
    """
    xp = array_module(x)
    k, stride = _pair(k, "k"), _pair(stride, "stride")
    (kh, kw), (sh, sw) = k, stride
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, 0), conv_output_size(w, kw, sw, 0)
    rows = sh * (oh - 1) + kh  # input rows that some window reads
    cols = [x[:, :, :rows, j: j + sw * (ow - 1) + 1: sw] for j in range(kw)]  # kw x (n, c, rows, ow)
    r = _max_of(xp, cols)  # row maxima (n, c, rows, ow), x's memory order
    r_rows = [r[:, :, i: i + sh * (oh - 1) + 1: sh] for i in range(kh)]  # kh x (n, c, oh, ow)
    y = _max_of(xp, r_rows)  # (n, c, oh, ow)
    if not winner:
        return y, MaxPoolCache(None, tuple(x.shape), k, stride)
    views = list(_window_views(x, k, stride, (oh, ow)))  # kh*kw x (n, c, oh, ow)
    dtype = xp.uint8 if len(views) <= 256 else xp.int64
    winners = _first_equal(xp, views, y, dtype)
    # A window holding a NaN has y = NaN (xp.maximum propagates it), and no
    # entry equals NaN, so _first_equal names its last entry; the reference
    # (NumPy's argmax) names its first NaN. Those windows are found and given
    # the reference's winner: on NumPy only when there is one (the check reads
    # y, a quarter of x), on CuPy always (no host sync).
    nan = xp.isnan(y)
    if xp is not np or nan.any():
        winners = xp.where(nan, _first_nan(xp, views, dtype), winners)
    return y, MaxPoolCache(winners, tuple(x.shape), k, stride)


def _zeros_in_memory_order_of(ref, shape):
    """Zeros of 4-D ``shape``, channel-major in memory when ``ref`` is, else C order."""
    xp = array_module(ref)
    if not ref.flags.c_contiguous and ref.transpose(1, 0, 2, 3).flags.c_contiguous:
        n, c, h, w = shape
        return memory.zeros(xp, (c, n, h, w), ref.dtype).transpose(1, 0, 2, 3)
    return memory.zeros(xp, shape, ref.dtype)


def maxpool2d_backward(dy, cache):
    """Route each output's error to its window's winner.

    Parameters
    ----------
    dy : array, shape (n, c, oh, ow)
    cache : MaxPoolCache

    Returns
    -------
    dx : array, shape (n, c, h, w)
        ``dy`` at each winner's position, zero elsewhere (summed where
        overlapping windows share a winner). Channel-major in memory when
        ``dy`` is.

    Notes
    -----
    .. math:: \\delta x_{n,c,\\,p s_h + i,\\, q s_w + j}
              \\mathrel{+}= \\delta y_{n,c,p,q}\\,[\\,i k_w + j = t^*_{n,c,p,q}\\,]
    """
    if not isinstance(cache, MaxPoolCache):
        raise TypeError(f"maxpool2d_backward: cache must come from bioplaus.fast.pool, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    winner, x_shape, k, stride = cache
    if winner is None:
        raise ValueError("maxpool2d_backward: the forward ran with winner=False (no error was "
                         "meant to come back through this pooling); run it with winner=True")
    if dy.shape != winner.shape:
        raise ValueError(f"maxpool2d_backward: dy must be {winner.shape}, got {dy.shape}")
    xp = array_module(dy)
    dx = _zeros_in_memory_order_of(dy, x_shape)
    views = _window_views(dx, k, stride, winner.shape[2:])  # views of dx
    # dy * [winner == t] is the reference's where(winner == t, dy, 0) except
    # where dy is not finite (NaN * 0 = NaN); it is about 1.7x faster than
    # copyto(..., where=) on NumPy, so it is taken when every dy is finite
    product = xp is np and k == stride and bool(xp.isfinite(dy).all())
    for t, v in enumerate(views):
        if product:  # non-overlapping windows: each entry of dx is written once
            xp.multiply(dy, winner == t, out=v)
        elif k == stride:
            xp.copyto(v, dy, where=winner == t)
        else:
            v += xp.where(winner == t, dy, 0)
    return dx


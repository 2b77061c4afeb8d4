"""Max pooling (average pooling: :mod:`bioplaus.ops.avgpool`).

Each output takes the maximum of its window; the backward sends the
output's error to the window's winner (its argmax) only. The windows are
gathered as ``kh*kw`` strided slices of the input, one per window offset
``(i, j)``, stacked on a last axis: ``(n, c, oh, ow, kh*kw)``.

Output sizes follow PyTorch with ``ceil_mode=False``:
``(size - k) // stride + 1``; a remainder that no window covers is dropped.

This is the reference (docs/paths.md: the two paths).
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus.backend import array_module
from bioplaus.ops.conv import _pair, conv_output_size


def _window_views(x, k, stride, out):
    """The ``kh*kw`` strided views ``x[:, :, p*sh + i, q*sw + j]``, row-major in ``(i, j)``.

    Each view has shape ``(n, c, oh, ow)``; the ``t``-th is window entry
    ``t = i*kw + j``.
    """
    (kh, kw), (sh, sw), (oh, ow) = k, stride, out
    return [x[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)]


class MaxPoolCache(NamedTuple):
    """What :func:`maxpool2d_backward` needs.

    Attributes
    ----------
    winner : int array, shape (n, c, oh, ow), or None
        Row-major index ``t = i*kw + j`` of each window's winner; None when
        the forward was told no backward would follow.
    x_shape : tuple (n, c, h, w)
    k, stride : (int, int)
    """

    winner: object
    x_shape: tuple
    k: tuple
    stride: tuple


def maxpool2d_forward(x, k=2, stride=2, winner=True):
    """Max pooling over ``k`` windows (no padding, floor mode).

    Parameters
    ----------
    x : array, shape (n, c, h, w)
    k, stride : int or (int, int)
        Window size and stride per axis (PyTorch's default stride is ``k``).
    winner : bool
        Whether to keep each window's winner for :func:`maxpool2d_backward`.
        False when no error will come back through the pooling (the output
        of a block trained by a local loss is detached; evaluation): the
        cache then holds no winner and the backward refuses it.

    Returns
    -------
    y : array, shape (n, c, oh, ow)
        ``oh = (h - kh) // sh + 1``; likewise ``ow``.
    cache : MaxPoolCache

    Notes
    -----
    .. math:: y_{n,c,p,q} = \\max_{i,j}\\; x_{n,c,\\,p s_h + i,\\, q s_w + j},
              \\qquad t^*_{n,c,p,q} = \\operatorname{argmax}_{i k_w + j}(\\dots)

    On ties the winner is the first maximum in row-major window order, as
    in PyTorch's ``max_pool2d``; the backward sends the error to that one
    entry only (as in the feedback-alignment baseline of Mostafa et al.,
    2018, where max-pool routes the error to the winner). A window that
    holds a NaN gives NaN, and its winner is its first NaN (NumPy's
    ``max`` and ``argmax``; PyTorch does the same).
    """
    xp = array_module(x)
    k, stride = _pair(k, "k"), _pair(stride, "stride")
    n, c, h, w = x.shape
    oh = conv_output_size(h, k[0], stride[0], 0)
    ow = conv_output_size(w, k[1], stride[1], 0)
    windows = xp.stack(_window_views(x, k, stride, (oh, ow)), axis=-1)  # (n, c, oh, ow, kh*kw)
    y = windows.max(axis=-1)
    t = windows.argmax(axis=-1) if winner else None
    return y, MaxPoolCache(t, tuple(x.shape), k, stride)


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
        overlapping windows share a winner). An entry that is no winner
        gets exactly 0, whatever ``dy`` holds (no ``NaN * 0``).

    Notes
    -----
    .. math:: \\delta x_{n,c,\\,p s_h + i,\\, q s_w + j}
              \\mathrel{+}= \\delta y_{n,c,p,q}\\,[\\,i k_w + j = t^*_{n,c,p,q}\\,]
    """
    if not isinstance(cache, MaxPoolCache):
        raise TypeError(f"maxpool2d_backward: cache must come from bioplaus.ops.pool, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    winner, x_shape, k, stride = cache
    if winner is None:
        raise ValueError("maxpool2d_backward: the forward ran with winner=False (no error was "
                         "meant to come back through this pooling); run it with winner=True")
    if dy.shape != winner.shape:
        raise ValueError(f"maxpool2d_backward: dy must be {winner.shape}, got {dy.shape}")
    xp = array_module(dy)
    dx = xp.zeros(x_shape, dtype=dy.dtype)
    for t, view in enumerate(_window_views(dx, k, stride, winner.shape[2:])):
        view += xp.where(winner == t, dy, 0)
    return dx

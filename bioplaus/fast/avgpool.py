"""Fast twin of :mod:`bioplaus.ops.avgpool`: average pooling as two matrix products.

The same functions and signatures as the reference
:mod:`bioplaus.ops.avgpool` (tested equal: ``tests/fast/test_fast_avgpool.py``);
the decoders' pooling geometry stays in the reference module.

Average pooling is separable: it is two small matrix products with 0/1
window-membership matrices (:func:`pooling_matrix`), which also takes
care of zero padding without copying the input. Where the memory allows,
each is one 2-D matrix product (:func:`_last_axis_product`).

Output sizes follow PyTorch with ``ceil_mode=False``:
``(size + 2 pad - k) // stride + 1``; a remainder that no window covers is
dropped.
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus.backend import array_module
from bioplaus.fast import memory
from bioplaus.ops.conv import _pair, conv_output_size


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs.

    Attributes
    ----------
    x_shape : tuple (n, c, h, w)
    A_h : array, shape (oh, h)
        Row pooling matrix, scaled by ``1 / (kh*kw)``; None if the row axis
        is not pooled (``kh = sh = 1``, ``ph = 0``).
    A_w : array, shape (ow, w)
        Column pooling matrix (0/1); None if the column axis is not pooled.
    """

    x_shape: tuple
    A_h: object
    A_w: object


def pooling_matrix(xp, size, k, stride, pad, dtype, scale=1.0):
    """The 0/1 window-membership matrix of one axis, times ``scale``.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    size, k, stride, pad : int
        Input length, window, stride and zero padding of the axis.

    Returns
    -------
    A : array, shape (out, size)
        ``A[o, j] = scale`` if input ``j`` lies in window ``o``, i.e.
        ``o*stride - pad <= j < o*stride - pad + k``, else 0. Padding
        positions have no column: they contribute zeros to the sums.
    """
    out = conv_output_size(size, k, stride, pad)
    start = xp.arange(out)[:, None] * stride - pad  # (out, 1)
    j = xp.arange(size)[None, :]  # (1, size)
    return (((j >= start) & (j < start + k)) * scale).astype(dtype)


def _last_axis_product(xp, a, M, out=None):
    """``a @ M`` over the last axis of a 4-D ``a``: ``(p, q, r, s) @ (s, t) -> (p, q, r, t)``.

    As one 2-D matrix product of the ``p*q*r`` rows when ``a`` is C-ordered
    or channel-major in memory (many times faster in NumPy than ``matmul``'s
    ``p*q`` small products); the result keeps ``a``'s memory order. ``out``
    (C-ordered, shape ``(p, q, r, t)``) needs a C-ordered ``a``.
    """
    p, q, r, s = a.shape
    t = M.shape[1]
    if a.flags.c_contiguous:
        flat = None if out is None else out.reshape(p * q * r, t)
        return xp.matmul(a.reshape(p * q * r, s), M, out=flat).reshape(p, q, r, t)
    swapped = a.transpose(1, 0, 2, 3)  # (q, p, r, s)
    if out is None and swapped.flags.c_contiguous:
        y = xp.matmul(swapped.reshape(q * p * r, s), M)  # (q*p*r, t)
        return y.reshape(q, p, r, t).transpose(1, 0, 2, 3)
    return xp.matmul(a, M, out=out)


def avgpool2d_forward(x, kernel=(2, 2), pad=(0, 0), stride=None):
    """Average pooling with zero padding counted in the mean (floor mode).

    Parameters
    ----------
    x : array, shape (n, c, h, w)
    kernel : int or (int, int)
        Window ``(kh, kw)``.
    pad : int or (int, int)
        Zeros added on each side, ``(ph, pw)``.
    stride : int or (int, int), optional
        Defaults to ``kernel``.

    Returns
    -------
    y : array, shape (n, c, oh, ow)
        ``oh = (h + 2 ph - kh) // sh + 1``; likewise ``ow``.
    cache : AvgPoolCache

    Notes
    -----
    .. math:: y_{n,c,p,q} = \\frac{1}{k_h k_w} \\sum_{i,j}
              x^{\\text{pad}}_{n,c,\\,p s_h + i,\\, q s_w + j}
              \\quad\\Longleftrightarrow\\quad
              y_{n,c} = \\frac{1}{k_h k_w} A_h\\, x_{n,c}\\, A_w^\\top

    PyTorch's ``AvgPool2d(kernel, stride, padding, ceil_mode=False,
    count_include_pad=True)``: the pooling before the local decoder of
    Nøkland & Eidnes (2019; geometry from
    :func:`bioplaus.ops.avgpool.decoder_pool_geometry`). The window sum is separable, so it is
    computed as two matrix products with the membership matrices of
    :func:`pooling_matrix` (padding needs no copy, and a product is much
    faster than a reduction over short axes); the divisor is always
    ``kh*kw``, padding included.
    """
    xp = array_module(x)
    k, pad = _pair(kernel, "kernel"), _pair(pad, "pad")
    stride = k if stride is None else _pair(stride, "stride")
    if min(k) < 1:
        raise ValueError(f"avgpool2d: kernel must be positive, got {kernel!r}")
    n, c, h, w = x.shape
    dtype = x.dtype.type
    pool_h = (k[0], stride[0], pad[0]) != (1, 1, 0)
    pool_w = (k[1], stride[1], pad[1]) != (1, 1, 0)
    scale = 1.0 / (k[0] * k[1])
    A_h = pooling_matrix(xp, h, k[0], stride[0], pad[0], dtype, scale) if pool_h else None
    scale_w = 1.0 if pool_h else scale  # the 1 / (kh*kw) goes into one of the two
    A_w = pooling_matrix(xp, w, k[1], stride[1], pad[1], dtype, scale_w) if pool_w else None
    y = x
    if A_w is not None:
        y = _last_axis_product(xp, y, A_w.T)  # (n, c, h, ow)
    if A_h is not None:
        y = xp.matmul(A_h, y)  # (n, c, oh, ow)
    if y is x:
        y = x.copy()
    return y, AvgPoolCache(tuple(x.shape), A_h, A_w)


def avgpool2d_backward(dy, cache):
    """Spread each output's error evenly over its window (padding drops its share).

    Parameters
    ----------
    dy : array, shape (n, c, oh, ow)
    cache : AvgPoolCache

    Returns
    -------
    dx : array, shape (n, c, h, w)
        Channel-major in memory, like a convolution's output (see
        :mod:`bioplaus.fast.conv`), so that it adds to the conv path's errors
        and flows back through the block without a layout change.

    Notes
    -----
    .. math:: \\delta x_{n,c} = \\frac{1}{k_h k_w} A_h^\\top\\, \\delta y_{n,c}\\, A_w
    """
    if not isinstance(cache, AvgPoolCache):
        raise TypeError(f"avgpool2d_backward: cache must come from bioplaus.fast.avgpool, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    xp = array_module(dy)
    x_shape, A_h, A_w = cache
    n, c, h, w = x_shape
    expected = (n, c, h if A_h is None else A_h.shape[0], w if A_w is None else A_w.shape[0])
    if dy.shape != expected:
        raise ValueError(f"avgpool2d_backward: dy must be {expected}, got {dy.shape}")
    # (c, n, oh, ow), a channel-major copy of the small end: the products run in
    # that order, the last one as a single 2-D product into the full-size result
    dx = dy.transpose(1, 0, 2, 3).copy()
    if A_h is not None:
        dx = xp.matmul(A_h.T, dx)  # (c, n, h, ow)
    if A_w is not None:
        dx = _last_axis_product(xp, dx, A_w, out=memory.empty(xp, (c, n, h, w), dy.dtype))
    return dx.transpose(1, 0, 2, 3)


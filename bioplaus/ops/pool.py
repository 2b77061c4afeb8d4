"""Max pooling, average pooling (with the local decoder's geometry) and flatten.

Max pooling takes its maximum along window rows, then over the rows, and
finds the winners with ``kh*kw`` strided slices of the input, one per
window offset ``(i, j)``, each covering every example, channel and
output pixel at once: no Python loop over examples or pixels, one code
path for NumPy and CuPy, any window and stride, and the memory order of
the input is kept (a channel-major activation from
:func:`bioplaus.ops.conv.conv2d_forward` stays channel-major). For
non-overlapping windows (``k == stride``, the usual case) the backward
assigns instead of accumulating. A reshape-based path (``max`` over the
two window axes of a ``(n, c, oh, kh, ow, kw)`` view) was measured and is
several times slower in NumPy than these elementwise passes, so there is
none.

Average pooling is separable: it is two small matrix products with 0/1
window-membership matrices (:func:`pooling_matrix`), which also takes
care of zero padding without copying the input.

Output sizes follow PyTorch with ``ceil_mode=False``:
``(size + 2 pad - k) // stride + 1``; a remainder that no window covers is
dropped.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from bioplaus import backend
from bioplaus.backend import array_module
from bioplaus.ops.conv import _pair, conv_output_size


def _window_views(x, k, stride, out):
    """The ``kh*kw`` strided views ``x[..., i + sh*p, j + sw*q]``, row-major in ``(i, j)``.

    Each view has shape ``(n, c, oh, ow)``; the ``t``-th is window entry
    ``t = i*kw + j``.
    """
    (kh, kw), (sh, sw), (oh, ow) = k, stride, out
    for i in range(kh):
        rows = slice(i, i + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield x[:, :, rows, slice(j, j + sw * (ow - 1) + 1, sw)]


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
    winners = _first_equal(xp, views, y, xp.uint8 if len(views) <= 256 else xp.int64)
    return y, MaxPoolCache(winners, tuple(x.shape), k, stride)


def _zeros_in_memory_order_of(ref, shape):
    """Zeros of 4-D ``shape``, channel-major in memory when ``ref`` is, else C order."""
    xp = array_module(ref)
    if not ref.flags.c_contiguous and ref.transpose(1, 0, 2, 3).flags.c_contiguous:
        n, c, h, w = shape
        return backend.zeros(xp, (c, n, h, w), ref.dtype).transpose(1, 0, 2, 3)
    return backend.zeros(xp, shape, ref.dtype)


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
    winner, x_shape, k, stride = cache
    if winner is None:
        raise ValueError("maxpool2d_backward: the forward ran with winner=False (no error was "
                         "meant to come back through this pooling); run it with winner=True")
    if dy.shape != winner.shape:
        raise ValueError(f"maxpool2d_backward: dy must be {winner.shape}, got {dy.shape}")
    xp = array_module(dy)
    dx = _zeros_in_memory_order_of(dy, x_shape)
    views = _window_views(dx, k, stride, winner.shape[2:])  # views of dx
    for t, v in enumerate(views):
        if k == stride:  # non-overlapping windows: each entry of dx is written once
            xp.multiply(dy, winner == t, out=v)
        else:
            v += dy * (winner == t)
    return dx


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
    :func:`decoder_pool_geometry`). The window sum is separable, so it is
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
        :mod:`bioplaus.ops.conv`), so that it adds to the conv path's errors
        and flows back through the block without a layout change.

    Notes
    -----
    .. math:: \\delta x_{n,c} = \\frac{1}{k_h k_w} A_h^\\top\\, \\delta y_{n,c}\\, A_w
    """
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
        dx = _last_axis_product(xp, dx, A_w, out=backend.empty(xp, (c, n, h, w), dy.dtype))
    return dx.transpose(1, 0, 2, 3)


def decoder_pool_geometry(channels, size, dim_in_decoder):
    """Average-pooling geometry that fits a conv block's output to its local decoder.

    Parameters
    ----------
    channels : int
        Channels ``c`` of the block's output.
    size : int
        Its spatial size (square maps, ``size x size``).
    dim_in_decoder : int
        Bound on the flattened pooled size (the reference's
        ``--dim-in-decoder``, default 4096).

    Returns
    -------
    kernel : (int, int)
        ``(kh, kw)``; ``(1, 1)`` means no pooling.
    pad : (int, int)
        ``(ph, pw)`` zeros on each side.
    out : (int, int)
        ``(oh, ow)``: the size :func:`avgpool2d_forward` really produces with
        this kernel and padding (stride = kernel); the decoder's input has
        ``channels * oh * ow`` features.

    Notes
    -----
    Nøkland & Eidnes (2019), reference code (``LocalLossBlockConv``):
    start from a 1x1 kernel; while :math:`c\\,o_h o_w` exceeds the bound and
    :math:`k_h` is below the size, double :math:`k_h`
    (:math:`o_h = \\lceil size / k_h \\rceil`) and, if still too large,
    double :math:`k_w` likewise; pad by
    :math:`\\lfloor k (o - \\lfloor size / k \\rfloor) / 2 \\rfloor` per axis.
    The loop sizes the map with :math:`\\lceil size / k \\rceil`; the
    returned ``out`` is instead what the pooling computes,
    :math:`\\lfloor (size + 2p - k) / k \\rfloor + 1`. With power-of-two
    kernels and this padding the two agree (the tests check it, and check
    the shape against ``torch.nn.AvgPool2d``); returning the real size
    keeps the decoder's input size right even if they did not.
    """
    if channels < 1 or size < 1 or dim_in_decoder < 1:
        raise ValueError("decoder_pool_geometry: channels, size and dim_in_decoder "
                         "must be positive")
    kh = kw = 1
    oh = ow = size
    while channels * oh * ow > dim_in_decoder and kh < size:
        kh *= 2
        oh = math.ceil(size / kh)
        if channels * oh * ow > dim_in_decoder:
            kw *= 2
            ow = math.ceil(size / kw)
    kernel = (kh, kw)
    pad = ((kh * (oh - size // kh)) // 2, (kw * (ow - size // kw)) // 2)
    out = (conv_output_size(size, kh, kh, pad[0]), conv_output_size(size, kw, kw, pad[1]))
    return kernel, pad, out


def flatten_forward(x):
    """Flatten all but the batch axis: ``(n, c, h, w) -> (n, c*h*w)``.

    Returns
    -------
    y : array, shape (n, prod(x.shape[1:]))
        In C order over ``(c, h, w)``, as ``torch.flatten(x, 1)``; copied only
        if ``x``'s memory is not C-ordered.
    shape : tuple
        ``x.shape``, for :func:`flatten_backward`.
    """
    return x.reshape(x.shape[0], -1), tuple(x.shape)


def flatten_backward(dy, shape):
    """Inverse of :func:`flatten_forward`: ``dy`` (n, d) back to ``shape``."""
    return dy.reshape(shape)

"""Average pooling, and the geometry of the local decoders' pooling.

Each output is the mean of its window of the zero-padded input; zero
padding counts in the mean (the divisor is always ``kh*kw``). The windows
are the ``kh*kw`` strided slices of the padded input, one per window offset
``(i, j)``. Output sizes follow PyTorch with ``ceil_mode=False``:
``(size + 2 pad - k) // stride + 1``; a remainder that no window covers is
dropped.

This is the reference (docs/paths.md: the two paths).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from bioplaus.backend import array_module
from bioplaus.ops.conv import _pair, conv_output_size
from bioplaus.ops.pool import _window_views


class AvgPoolCache(NamedTuple):
    """What :func:`avgpool2d_backward` needs: the input's shape and the geometry.

    Attributes
    ----------
    x_shape : tuple (n, c, h, w)
    kernel, pad, stride : (int, int)
    """

    x_shape: tuple
    kernel: tuple
    pad: tuple
    stride: tuple


def _geometry(kernel, pad, stride):
    k, pad = _pair(kernel, "kernel"), _pair(pad, "pad")
    stride = k if stride is None else _pair(stride, "stride")
    if min(k) < 1:
        raise ValueError(f"avgpool2d: kernel must be positive, got {kernel!r}")
    return k, pad, stride


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

    PyTorch's ``AvgPool2d(kernel, stride, padding, ceil_mode=False,
    count_include_pad=True)``: the pooling before the local decoder of
    Nøkland & Eidnes (2019; geometry from :func:`decoder_pool_geometry`).
    """
    xp = array_module(x)
    k, (ph, pw), stride = _geometry(kernel, pad, stride)
    n, c, h, w = x.shape
    oh = conv_output_size(h, k[0], stride[0], ph)
    ow = conv_output_size(w, k[1], stride[1], pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = sum(_window_views(xpad, k, stride, (oh, ow))) / (k[0] * k[1])
    return y, AvgPoolCache(tuple(x.shape), k, (ph, pw), stride)


def avgpool2d_backward(dy, cache):
    """Spread each output's error evenly over its window (padding drops its share).

    Parameters
    ----------
    dy : array, shape (n, c, oh, ow)
    cache : AvgPoolCache

    Returns
    -------
    dx : array, shape (n, c, h, w)

    Notes
    -----
    .. math:: \\delta x_{n,c,\\,p s_h + i,\\, q s_w + j}
              \\mathrel{+}= \\frac{\\delta y_{n,c,p,q}}{k_h k_w}
    """
    if not isinstance(cache, AvgPoolCache):
        raise TypeError(f"avgpool2d_backward: cache must come from bioplaus.ops.avgpool, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    xp = array_module(dy)
    (n, c, h, w), k, (ph, pw), stride = cache
    expected = (n, c, conv_output_size(h, k[0], stride[0], ph),
                conv_output_size(w, k[1], stride[1], pw))
    if dy.shape != expected:
        raise ValueError(f"avgpool2d_backward: dy must be {expected}, got {dy.shape}")
    share = dy / (k[0] * k[1])
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
    for view in _window_views(dxpad, k, stride, expected[2:]):
        view += share
    return xp.ascontiguousarray(dxpad[:, :, ph: ph + h, pw: pw + w])


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

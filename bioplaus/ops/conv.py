"""2-D convolution as im2col and one matrix product, with an explicit feedback matrix.

``im2col`` unrolls every receptive field of the (zero-padded) input into a
column: for each example ``n``, ``cols[n]`` has shape
``(c_in*kh*kw, oh*ow)``, rows ordered ``(c, i, j)`` as in
``W.reshape(c_out, -1)``. The convolution is then one (batched) product

.. math:: Y_n = W_2 \\, \\mathrm{cols}_n, \\qquad
          W_2: (c_{out}, c_{in} k_h k_w), \\;
          Y_n: (c_{out}, o_h o_w),

which is already the output in NCHW order. The backward is two more
products, ``dW = sum_n dY_n cols_n^T`` and ``dcols_n = B_2^T dY_n``, and
``col2im`` (the adjoint of ``im2col``) folds ``dcols`` back into ``dx``.

This is the reference: the equations as written, in plain NumPy/CuPy
(docs/paths.md: the two paths).
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus.backend import array_module


def _pair(v, name):
    """``v`` as a pair of non-negative ints (an int means the same on both axes)."""
    p = (int(v), int(v)) if not isinstance(v, (tuple, list)) else tuple(int(a) for a in v)
    if len(p) != 2 or min(p) < 0:
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {v!r}")
    return p


def conv_output_size(size, k, stride, pad):
    """Output length of a convolution or pooling axis: ``(size + 2 pad - k) // stride + 1``."""
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    out = (size + 2 * pad - k) // stride + 1
    if out < 1:
        raise ValueError(f"window {k} with padding {pad} does not fit an input of size {size}")
    return out


def _window(a, i, j, oh, ow, stride):
    """``a[:, :, p*sh + i, q*sw + j]`` for all output pixels ``(p, q)``: shape (n, c, oh, ow)."""
    sh, sw = stride
    return a[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]


def im2col(x, kh, kw, stride=1, pad=0):
    """Unroll every ``kh x kw`` receptive field of ``x`` into a column.

    Parameters
    ----------
    x : array, shape (n, c, h, w)
    kh, kw : int
        Kernel height and width.
    stride, pad : int or (int, int)
        Stride and zero padding, per axis (height, width).

    Returns
    -------
    cols : array, shape (n, c*kh*kw, oh*ow)
        ``cols[n, (c, i, j), (p, q)] = xpad[n, c, p*sh + i, q*sw + j]``, where
        ``xpad`` is ``x`` zero-padded by ``pad``.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    stride, (ph, pw) = _pair(stride, "stride"), _pair(pad, "pad")
    oh = conv_output_size(h, kh, stride[0], ph)
    ow = conv_output_size(w, kw, stride[1], pw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = _window(xpad, i, j, oh, ow, stride)
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """Sum columns back into an image: the adjoint (transpose) of :func:`im2col`.

    Parameters
    ----------
    cols : array, shape (n, c*kh*kw, oh*ow)
        Values per receptive-field entry, laid out as :func:`im2col` returns.
    x_shape : tuple (n, c, h, w)
        Shape of the image that was unrolled.
    kh, kw, stride, pad
        As for :func:`im2col`.

    Returns
    -------
    dx : array, shape (n, c, h, w)
        ``dx[n, c, y, x]`` = the sum of the ``cols`` entries that
        :func:`im2col` read from there; entries that fell on padding are
        dropped.

    Notes
    -----
    ``<im2col(x), cols> = <x, col2im(cols)>`` for every ``x`` and ``cols``;
    hence ``col2im(dcols)`` is the gradient of a loss with respect to ``x``
    given its gradient ``dcols`` with respect to ``im2col(x)``.
    """
    xp = array_module(cols)
    n, c, h, w = x_shape
    stride, (ph, pw) = _pair(stride, "stride"), _pair(pad, "pad")
    oh = conv_output_size(h, kh, stride[0], ph)
    ow = conv_output_size(w, kw, stride[1], pw)
    if cols.shape != (n, c * kh * kw, oh * ow):
        raise ValueError(f"col2im: cols must be {(n, c * kh * kw, oh * ow)}, got {cols.shape}")
    cols6 = cols.reshape(n, c, kh, kw, oh, ow)
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            _window(dxpad, i, j, oh, ow, stride)[...] += cols6[:, :, i, j]
    return xp.ascontiguousarray(dxpad[:, :, ph: ph + h, pw: pw + w])


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass.

    Attributes
    ----------
    cols : array, shape (n, c_in*kh*kw, oh*ow)
        The unrolled input (:func:`im2col`); the memory cost of the cache.
    x_shape : tuple (n, c_in, h, w)
    W : array, shape (c_out, c_in, kh, kw)
        The weight used in the forward pass.
    stride, pad : (int, int)
    has_bias : bool
        Whether the forward added a bias (then ``db`` is returned).
    """

    cols: object
    x_shape: tuple
    W: object
    stride: tuple
    pad: tuple
    has_bias: bool


def conv2d_forward(x, W, b=None, stride=1, pad=0):
    """2-D cross-correlation (PyTorch's ``conv2d``) with zero padding.

    Parameters
    ----------
    x : array, shape (n, c_in, h, w)
    W : array, shape (c_out, c_in, kh, kw)
        Filters, laid out as PyTorch's ``nn.Conv2d.weight``.
    b : array, shape (c_out,), optional
        Bias; None for a convolution without bias.
    stride, pad : int or (int, int)
        Stride and zero padding per axis.

    Returns
    -------
    y : array, shape (n, c_out, oh, ow)
        ``oh = (h + 2 ph - kh) // sh + 1`` (likewise ``ow``).
    cache : ConvCache

    Notes
    -----
    .. math::

        y_{n, o, p, q} = b_o + \\sum_{c, i, j} W_{o, c, i, j}\\,
            x^{\\text{pad}}_{n, c,\\, p s_h + i,\\, q s_w + j}

    computed as :math:`Y_n = W_2\\,\\mathrm{cols}_n` with
    :math:`W_2` = ``W.reshape(c_out, -1)``: the convolution encoder of
    every conv block in Nøkland & Eidnes (2019) and in Mostafa et al.
    (2018). The dtype follows the inputs.
    """
    xp = array_module(x)
    if x.ndim != 4 or W.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ValueError(
            f"conv2d_forward: x must be (n, c_in, h, w) and W (c_out, c_in, kh, kw); "
            f"got x {x.shape}, W {W.shape}"
        )
    n, _, h, w = x.shape
    c_out, _, kh, kw = W.shape
    stride, pad = _pair(stride, "stride"), _pair(pad, "pad")
    oh = conv_output_size(h, kh, stride[0], pad[0])
    ow = conv_output_size(w, kw, stride[1], pad[1])
    cols = im2col(x, kh, kw, stride, pad)  # (n, c_in*kh*kw, oh*ow)
    Y = xp.matmul(W.reshape(c_out, -1), cols)  # (n, c_out, oh*ow)
    if b is not None:
        if b.shape != (c_out,):
            raise ValueError(f"conv2d_forward: b must have shape ({c_out},), got {b.shape}")
        Y = Y + b[:, None]
    y = Y.reshape(n, c_out, oh, ow)
    return y, ConvCache(cols, tuple(x.shape), W, stride, pad, b is not None)


def conv2d_backward(dy, cache, B=None, need_dx=True):
    """Gradients of :func:`conv2d_forward`; the error reaches ``x`` through ``B``.

    Parameters
    ----------
    dy : array, shape (n, c_out, oh, ow)
        Upstream gradient at the output.
    cache : ConvCache
        From :func:`conv2d_forward`.
    B : array, shape (c_out, c_in, kh, kw), optional
        The filters that carry the error back to the input. None (default)
        uses the forward ``W`` (backpropagation); a fixed random array of
        ``W``'s shape gives feedback alignment.
    need_dx : bool
        If False, ``dx`` is not computed (no product, no ``col2im``) and
        None is returned for it: the first layer, or a detached block input.

    Returns
    -------
    dx : array, shape (n, c_in, h, w), or None
        The error at the input, computed with ``B``; None if not ``need_dx``.
    dW : array, shape (c_out, c_in, kh, kw)
        The exact gradient with respect to ``W``.
    db : array, shape (c_out,), or None
        ``sum over n, oh, ow of dy``; None when the forward had no bias.

    Notes
    -----
    With :math:`dY_n` = ``dy[n]`` reshaped to :math:`(c_{out}, o_h o_w)`,

    .. math::

        \\frac{\\partial L}{\\partial W_2} = \\sum_n dY_n\\,\\mathrm{cols}_n^\\top, \\qquad
        \\frac{\\partial L}{\\partial b} = \\sum_n dY_n\\,\\mathbf{1}, \\qquad
        \\delta_x = \\mathrm{col2im}(B_2^\\top dY_n),

    :math:`B = W` for backpropagation, a fixed random :math:`B` for feedback
    alignment (Lillicrap et al. 2016; the ``-bio`` rules of Nøkland & Eidnes
    2019). The ``dx`` of backpropagation equals the transposed convolution
    of ``dy`` with ``W``.
    """
    if not isinstance(cache, ConvCache):
        raise TypeError(f"conv2d_backward: cache must come from bioplaus.ops.conv.conv2d_forward, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    xp = array_module(dy)
    cols, x_shape, W, stride, pad, has_bias = cache
    n = x_shape[0]
    c_out, _, kh, kw = W.shape
    oh = conv_output_size(x_shape[2], kh, stride[0], pad[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], pad[1])
    if dy.shape != (n, c_out, oh, ow):
        raise ValueError(f"conv2d_backward: dy must be {(n, c_out, oh, ow)}, got {dy.shape}")
    dY = dy.reshape(n, c_out, oh * ow)
    dW = xp.tensordot(dY, cols, axes=([0, 2], [0, 2])).reshape(W.shape)  # sum_n dY_n cols_n^T
    db = dY.sum(axis=(0, 2)) if has_bias else None  # (c_out,)
    if not need_dx:
        return None, dW, db
    if B is None:
        B = W
    elif B.shape != W.shape:
        raise ValueError(f"conv2d_backward: B must have W's shape {W.shape}, got {B.shape}")
    dcols = xp.matmul(B.reshape(c_out, -1).T, dY)  # (n, c_in*kh*kw, oh*ow)
    dx = col2im(dcols, x_shape, kh, kw, stride, pad)
    return dx, dW, db

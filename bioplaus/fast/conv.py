"""Fast twin of :mod:`bioplaus.ops.conv`: im2col/col2im on channel groups over the host threads.

The same functions and signatures as the reference :mod:`bioplaus.ops.conv`
(the same equations; ``tests/fast/test_fast_conv.py`` checks the results
equal); what differs is only how they are computed.

Layout
------
``im2col`` unrolls every receptive field of the input into a column:
``cols`` has shape ``(c_in*kh*kw, n*oh*ow)``, rows ordered ``(c, i, j)``
(the order of ``W.reshape(c_out, -1)``, so the weight needs no copy) and
columns ordered ``(n, oh, ow)``. The forward pass is then one product

.. math:: Y = W_{2} \\, \\mathrm{cols}, \\qquad
          W_{2}: (c_{out}, c_{in} k_h k_w), \\;
          Y: (c_{out}, n\\, o_h o_w),

and the backward is two more, ``dW = dY cols^T`` and ``dcols = B^T dY``,
followed by ``col2im`` (the adjoint of ``im2col``) for ``dx``.

Because ``Y`` is channel-major, ``conv2d_forward`` returns ``y`` as a
*view* of logical shape ``(n, c_out, oh, ow)`` whose memory is ordered
``(c_out, n, oh, ow)``; ``col2im`` does the same for ``dx``. No transpose is
ever copied: NumPy's elementwise ops keep that memory order, the next
convolution reads it as fast as (or faster than) NCHW, and an upstream
gradient with the same order reshapes to ``dY`` without a copy. Callers
that need C order can call ``ascontiguousarray``; any input layout is
accepted.

Memory
------
The forward keeps ``cols`` in the cache so the backward does not unroll
the input again: ``c_in*kh*kw * n*oh*ow`` values, i.e. ``kh*kw`` times the
input for a stride-1 'same' convolution. For vgg8b on 28x28 inputs at
batch 128 in float32 that is 462 MB for the second conv layer and about
1.07 GB for all six. ``cols``, the output and the backward's ``dcols`` and
``dx`` are taken from the host pool (:class:`bioplaus.fast.memory.HostPool`):
a training step reuses the same buffers every time instead of asking the
kernel for fresh, page-faulting memory.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import memory, threads
from bioplaus.ops.conv import _pair, conv_output_size


def _window_slices(out_size, offset, stride, pad, in_size):
    """Where kernel offset ``offset`` reads real (unpadded) input on one axis.

    Output positions ``o`` in ``[o_lo, o_hi)`` read input position
    ``offset + stride*o - pad``, which lies inside ``[0, in_size)``; the
    other outputs read zero padding. Returns ``(out slice, input slice)``,
    or None when the offset only ever reads padding.
    """
    o_lo = max(0, -(-(pad - offset) // stride))  # ceil((pad - offset) / stride)
    o_hi = min(out_size, (in_size - 1 + pad - offset) // stride + 1)
    if o_hi <= o_lo:
        return None
    start = offset + stride * o_lo - pad
    stop = start + stride * (o_hi - o_lo - 1) + 1
    return slice(o_lo, o_hi), slice(start, stop, stride)


def _offsets(kh, kw, oh, ow, stride, pad, h, w):
    """Each kernel offset ``(i, j)`` with its (output, input) slices on both axes."""
    sh, sw = stride
    ph, pw = pad
    for i in range(kh):
        rows = _window_slices(oh, i, sh, ph, h)
        if rows is None:
            continue
        for j in range(kw):
            cols = _window_slices(ow, j, sw, pw, w)
            if cols is None:
                continue
            yield i, j, rows, cols


def _covers(sl, size):
    """Whether the input slice ``sl`` reads each of ``size`` positions once."""
    return sl.start == 0 and sl.stop == size and sl.step == 1


def im2col(x, kh, kw, stride=1, pad=0):
    """Unroll every ``kh x kw`` receptive field of ``x`` into a column.

    Parameters
    ----------
    x : array, shape (n, c, h, w)
        Input, any memory layout.
    kh, kw : int
        Kernel height and width.
    stride, pad : int or (int, int)
        Stride and zero padding, per axis (height, width).

    Returns
    -------
    cols : array, shape (c*kh*kw, n*oh*ow)
        ``cols[(c, i, j), (n, p, q)] = xpad[n, c, p*sh + i, q*sw + j]`` where
        ``xpad`` is ``x`` zero-padded by ``pad``; C-contiguous.

    Notes
    -----
    One strided copy per kernel offset ``(i, j)`` and group of channels
    (each over all examples and output pixels of the group at once; the
    groups, sized to stay in cache, spread over the host threads); padding
    is never materialised: the copy is clipped to the real input and only
    the entries that read padding are set to zero. ``cols`` comes from the host
    pool (:func:`bioplaus.fast.memory.empty`), so no memory is zeroed twice. The
    same code runs on NumPy and CuPy.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    stride, pad = _pair(stride, "stride"), _pair(pad, "pad")
    oh = conv_output_size(h, kh, stride[0], pad[0])
    ow = conv_output_size(w, kw, stride[1], pad[1])
    cols = memory.empty(xp, (c, kh, kw, n, oh, ow), x.dtype)
    x_t = x.transpose(1, 0, 2, 3)  # (c, n, h, w) view
    offsets = list(_offsets(kh, kw, oh, ow, stride, pad, h, w))
    covered = {(i, j) for i, j, _, _ in offsets}
    pad_only = [(i, j) for i in range(kh) for j in range(kw) if (i, j) not in covered]

    def unroll(chans):  # the rows of channels ``chans`` (a slice)
        for i, j, (o_r, i_r), (o_c, i_c) in offsets:
            blk = cols[chans, i, j]  # (c', n, oh, ow)
            blk[:, :, o_r, o_c] = x_t[chans, :, i_r, i_c]
            # outputs whose window puts this offset on the padding read zero
            blk[:, :, :o_r.start] = 0
            blk[:, :, o_r.stop:] = 0
            blk[:, :, o_r, :o_c.start] = 0
            blk[:, :, o_r, o_c.stop:] = 0
        for i, j in pad_only:
            cols[chans, i, j] = 0

    _by_channels(xp, unroll, c, n * h * w)
    return cols.reshape(c * kh * kw, n * oh * ow)


# im2col and col2im work on this many input values at a time (512 KiB of
# float32: a group of channels whose image stays in a core's L2 cache while
# each kernel offset copies from it or adds into it), the groups spread over
# the host threads. Measured on this project's 2-core CPU for vgg8b's second
# layer (128 channels, 28x28, batch 128): im2col 102 ms as one copy per
# offset, 66 ms by single channels on one thread, 39 ms on two.
CHANNEL_GROUP_VALUES = 1 << 17


def _by_channels(xp, fn, c, per_channel):
    """Call ``fn(slice)`` for groups of about :data:`CHANNEL_GROUP_VALUES` image
    values, on the host threads (:func:`bioplaus.fast.threads.channel_groups`; one
    call over all channels on CuPy)."""
    threads.channel_groups(fn, c, per_channel, CHANNEL_GROUP_VALUES, on_host=xp is np)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """Sum columns back into an image: the adjoint (transpose) of :func:`im2col`.

    Parameters
    ----------
    cols : array, shape (c*kh*kw, n*oh*ow)
        Values per receptive-field entry, laid out as :func:`im2col` returns.
    x_shape : tuple (n, c, h, w)
        Shape of the image that was unrolled.
    kh, kw, stride, pad
        As for :func:`im2col`.

    Returns
    -------
    dx : array, shape (n, c, h, w)
        ``dx[n, c, y, x] = sum of cols entries that im2col read from there``;
        entries that fell on padding are dropped. A view whose memory is
        ordered ``(c, n, h, w)``.

    Notes
    -----
    ``<im2col(x), cols> = <x, col2im(cols)>`` for every ``x`` and ``cols``;
    hence ``col2im(dcols)`` is the gradient of a loss with respect to ``x``
    given its gradient ``dcols`` with respect to ``im2col(x)``.
    """
    xp = array_module(cols)
    n, c, h, w = x_shape
    stride, pad = _pair(stride, "stride"), _pair(pad, "pad")
    oh = conv_output_size(h, kh, stride[0], pad[0])
    ow = conv_output_size(w, kw, stride[1], pad[1])
    if cols.shape != (c * kh * kw, n * oh * ow):
        raise ValueError(f"col2im: cols must be {(c * kh * kw, n * oh * ow)}, got {cols.shape}")
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    dx_t = memory.empty(xp, (c, n, h, w), cols.dtype)  # (c, n, h, w)
    offsets = list(_offsets(kh, kw, oh, ow, stride, pad, h, w))
    # an offset that reads every input pixel exactly once (the centre of a
    # stride-1 'same' convolution) initialises dx; otherwise start from zero
    full = [k for k, (_, _, (_, i_r), (_, i_c)) in enumerate(offsets)
            if _covers(i_r, h) and _covers(i_c, w)]
    first = offsets.pop(full[0]) if full else None

    def fold(chans):  # the image of channels ``chans`` (a slice)
        if first is not None:
            i, j, (o_r, _), (o_c, _) = first
            dx_t[chans] = cols6[chans, i, j, :, o_r, o_c]
        else:
            dx_t[chans] = 0
        for i, j, (o_r, i_r), (o_c, i_c) in offsets:
            dx_t[chans, :, i_r, i_c] += cols6[chans, i, j, :, o_r, o_c]

    _by_channels(xp, fold, c, n * h * w)
    return dx_t.transpose(1, 0, 2, 3)


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from the forward pass.

    Attributes
    ----------
    cols : array, shape (c_in*kh*kw, n*oh*ow)
        The unrolled input (:func:`im2col`); the memory cost of the cache.
    x_shape : tuple (n, c_in, h, w)
        Shape of the input.
    W : array, shape (c_out, c_in, kh, kw)
        The weight used in the forward pass.
    stride, pad : (int, int)
        Stride and zero padding per axis.
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
        Input batch, any memory layout.
    W : array, shape (c_out, c_in, kh, kw)
        Filters, laid out as PyTorch's ``nn.Conv2d.weight``.
    b : array, shape (c_out,), optional
        Bias; None for a convolution without bias.
    stride, pad : int or (int, int)
        Stride and zero padding per axis.

    Returns
    -------
    y : array, shape (n, c_out, oh, ow)
        ``oh = (h + 2 ph - kh) // sh + 1`` (likewise ``ow``). A view whose
        memory is ordered ``(c_out, n, oh, ow)`` (see the module notes).
    cache : ConvCache
        The unrolled input, the weight and the geometry.

    Notes
    -----
    .. math::

        y_{n, o, p, q} = b_o + \\sum_{c, i, j} W_{o, c, i, j}\\,
            x^{\\text{pad}}_{n, c,\\, p s_h + i,\\, q s_w + j}

    computed as :math:`Y = W_2\\,\\mathrm{cols}` with
    :math:`W_2` = ``W.reshape(c_out, -1)``: the convolution encoder of
    every conv block in Nøkland & Eidnes (2019) and in Mostafa et al.
    (2018). The dtype follows the inputs (float32 for training).
    """
    xp = array_module(x)
    if x.ndim != 4 or W.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ValueError(
            f"conv2d_forward: x must be (n, c_in, h, w) and W (c_out, c_in, kh, kw); "
            f"got x {x.shape}, W {W.shape}"
        )
    n = x.shape[0]
    c_out, _, kh, kw = W.shape
    stride, pad = _pair(stride, "stride"), _pair(pad, "pad")
    cols = im2col(x, kh, kw, stride, pad)  # (c_in*kh*kw, n*oh*ow)
    oh = conv_output_size(x.shape[2], kh, stride[0], pad[0])
    ow = conv_output_size(x.shape[3], kw, stride[1], pad[1])
    Y = xp.matmul(W.reshape(c_out, -1), cols,
                  out=memory.empty(xp, (c_out, cols.shape[1]), cols.dtype))  # (c_out, n*oh*ow)
    if b is not None:
        if b.shape != (c_out,):
            raise ValueError(f"conv2d_forward: b must have shape ({c_out},), got {b.shape}")
        Y += b[:, None]
    y = Y.reshape(c_out, n, oh, ow).transpose(1, 0, 2, 3)  # (n, c_out, oh, ow) view
    return y, ConvCache(cols, tuple(x.shape), W, stride, pad, b is not None)


def conv2d_backward(dy, cache, B=None, need_dx=True):
    """Gradients of :func:`conv2d_forward`; the error reaches ``x`` through ``B``.

    Parameters
    ----------
    dy : array, shape (n, c_out, oh, ow)
        Upstream gradient at the output, any memory layout (channel-major
        memory, as :func:`conv2d_forward` returns, avoids one copy).
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
        The error at the input, computed with ``B``; a view with memory
        ordered ``(c_in, n, h, w)``. None if not ``need_dx``.
    dW : array, shape (c_out, c_in, kh, kw)
        The exact gradient with respect to ``W``.
    db : array, shape (c_out,), or None
        ``sum over n, oh, ow of dy``; None when the forward had no bias.

    Notes
    -----
    With :math:`\\delta` = ``dy`` reshaped to :math:`dY: (c_{out}, n o_h o_w)`,

    .. math::

        \\frac{\\partial L}{\\partial W_2} = dY\\,\\mathrm{cols}^\\top, \\qquad
        \\frac{\\partial L}{\\partial b} = dY\\,\\mathbf{1}, \\qquad
        \\delta_x = \\mathrm{col2im}(B_2^\\top dY),

    :math:`B = W` for backpropagation, a fixed random :math:`B` for feedback
    alignment (Lillicrap et al. 2016; the ``-bio`` rules of Nøkland & Eidnes
    2019). The ``dx`` of backpropagation equals the transposed convolution
    of ``dy`` with ``W``.
    """
    if not isinstance(cache, ConvCache):
        raise TypeError(f"conv2d_backward: cache must come from bioplaus.fast.conv.conv2d_forward, "
                        f"got {type(cache).__module__}.{type(cache).__name__}")
    xp = array_module(dy)
    cols, x_shape, W, stride, pad, has_bias = cache
    n = x_shape[0]
    c_out, _, kh, kw = W.shape
    oh = conv_output_size(x_shape[2], kh, stride[0], pad[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], pad[1])
    if dy.shape != (n, c_out, oh, ow):
        raise ValueError(f"conv2d_backward: dy must be {(n, c_out, oh, ow)}, got {dy.shape}")
    # (c_out, n*oh*ow); copies only if dy is not channel-major in memory
    dY = dy.transpose(1, 0, 2, 3).reshape(c_out, n * oh * ow)
    # dW = dY cols^T, computed as (cols dY^T)^T: the same sums, but BLAS
    # streams the long n*oh*ow axis far faster in this order (measured 1.1-5x)
    dW = xp.ascontiguousarray(xp.matmul(cols, dY.T).T).reshape(W.shape)  # (c_out, c_in, kh, kw)
    db = dY.sum(axis=1) if has_bias else None  # (c_out,)
    if not need_dx:
        return None, dW, db
    if B is None:
        B = W
    elif B.shape != W.shape:
        raise ValueError(f"conv2d_backward: B must have W's shape {W.shape}, got {B.shape}")
    dcols = xp.matmul(B.reshape(c_out, -1).T, dY,
                      out=memory.empty(xp, (cols.shape[0], dY.shape[1]), dY.dtype))  # (c_in*kh*kw, n*oh*ow)
    dx = col2im(dcols, x_shape, kh, kw, stride, pad)
    return dx, dW, db

"""Convolution by im2col: naive-loop twins, finite differences, torch autograd, feedback B."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.conv import col2im, conv2d_backward, conv2d_forward, conv_output_size, im2col
from helpers import check_grad, rel_error

# (n, c_in, c_out, h, w, k, stride, pad): 3x3 'same', the STL-10 stem (7x7 s2 p3),
# 1x1, 5x5 s2 without padding, and per-axis stride/padding on a non-square input.
GEOMETRIES = [
    (2, 3, 4, 6, 6, 3, 1, 1),
    (2, 2, 3, 11, 9, 7, 2, 3),
    (2, 3, 4, 5, 7, 1, 1, 0),
    (2, 2, 3, 9, 8, 5, 2, 0),
    (1, 2, 3, 8, 7, 3, (2, 1), (0, 2)),
]
IDS = ["3x3s1p1", "7x7s2p3", "1x1", "5x5s2p0", "3x3s21p02"]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _data(rng, n, c_in, c_out, h, w, k):
    x = rng.standard_normal((n, c_in, h, w))
    W = rng.standard_normal((c_out, c_in, k, k))
    b = rng.standard_normal(c_out)
    return x, W, b


def _pad(x, pad):
    ph, pw = _pair(pad)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def naive_conv2d(x, W, b, stride, pad):
    """Explicit loops over examples, output channels and output pixels."""
    (sh, sw), xpad = _pair(stride), _pad(x, pad)
    n, _, h, w = x.shape
    c_out, _, kh, kw = W.shape
    ph, pw = _pair(pad)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c_out, oh, ow))
    for m in range(n):
        for o in range(c_out):
            for p in range(oh):
                for q in range(ow):
                    window = xpad[m, :, p * sh : p * sh + kh, q * sw : q * sw + kw]
                    y[m, o, p, q] = np.sum(window * W[o]) + (0.0 if b is None else b[o])
    return y


def naive_im2col(x, kh, kw, stride, pad):
    """cols[n, (c, i, j), (p, q)] = xpad[n, c, p*sh + i, q*sw + j], by loops."""
    (sh, sw), xpad = _pair(stride), _pad(x, pad)
    n, c, h, w = x.shape
    ph, pw = _pair(pad)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = np.zeros((n, c * kh * kw, oh * ow))
    for m in range(n):
        for ci in range(c):
            for i in range(kh):
                for j in range(kw):
                    for p in range(oh):
                        for q in range(ow):
                            cols[m, (ci * kh + i) * kw + j, p * ow + q] = \
                                xpad[m, ci, p * sh + i, q * sw + j]
    return cols


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_im2col_matches_loops_and_col2im_is_its_adjoint(geom):
    n, c_in, _, h, w, k, stride, pad = geom
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, w))
    cols = im2col(x, k, k, stride, pad)
    np.testing.assert_array_equal(cols, naive_im2col(x, k, k, stride, pad))
    # <im2col(x), C> == <x, col2im(C)> for a random C
    C = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * C)
    rhs = np.sum(x * col2im(C, x.shape, k, k, stride, pad))
    assert abs(lhs - rhs) <= 1e-12 * np.abs(cols * C).sum()


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_naive_loops(geom, bias):
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(1)
    x, W, b = _data(rng, n, c_in, c_out, h, w, k)
    b = b if bias else None
    y, _ = conv2d_forward(x, W, b, stride, pad)
    np.testing.assert_allclose(y, naive_conv2d(x, W, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_backward_finite_differences(geom):
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(2)
    x, W, b = _data(rng, n, c_in, c_out, h, w, k)
    y, cache = conv2d_forward(x, W, b, stride, pad)
    dy = rng.standard_normal(y.shape)
    dx, dW, db = conv2d_backward(dy, cache)
    f = lambda: conv2d_forward(x, W, b, stride, pad)[0]  # noqa: E731
    check_grad(f, x, dy, dx, max_entries=60)
    check_grad(f, W, dy, dW, max_entries=60)
    check_grad(f, b, dy, db)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_matches_torch_autograd(geom):
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(3)
    x, W, b = _data(rng, n, c_in, c_out, h, w, k)
    y, cache = conv2d_forward(x, W, b, stride, pad)
    dy = rng.standard_normal(y.shape)
    dx, dW, db = conv2d_backward(dy, cache)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    ty = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=pad)
    ty.backward(torch.tensor(dy))
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-12
    assert rel_error(dW, tW.grad.numpy()) < 1e-12
    assert rel_error(db, tb.grad.numpy()) < 1e-12


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_feedback_filters_carry_the_error(geom):
    """With B != W, dx is the transposed convolution of dy with B; dW and db do not change."""
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(4)
    x, W, b = _data(rng, n, c_in, c_out, h, w, k)
    B = rng.standard_normal(W.shape)
    y, cache = conv2d_forward(x, W, b, stride, pad)
    dy = rng.standard_normal(y.shape)
    dx_fa, dW_fa, db_fa = conv2d_backward(dy, cache, B=B)
    dx_bp, dW_bp, db_bp = conv2d_backward(dy, cache)
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    out_pad = ((h + 2 * ph - k) % sh, (w + 2 * pw - k) % sw)  # rows/cols no window reached
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(dy), torch.tensor(B), stride=stride, padding=pad, output_padding=out_pad)
    assert ref.shape == x.shape
    assert rel_error(dx_fa, ref.numpy()) < 1e-12
    assert not np.allclose(dx_fa, dx_bp)
    np.testing.assert_array_equal(dW_fa, dW_bp)
    np.testing.assert_array_equal(db_fa, db_bp)
    dx_w, _, _ = conv2d_backward(dy, cache, B=W)  # B = W is backprop
    np.testing.assert_array_equal(dx_w, dx_bp)


def test_optional_outputs_and_layouts():
    rng = np.random.default_rng(5)
    x, W, _ = _data(rng, 3, 2, 4, 5, 6, 3)
    x, W = x.astype(np.float32), W.astype(np.float32)
    y, cache = conv2d_forward(x, W, None, 1, 1)
    assert y.dtype == np.float32 and y.shape == (3, 4, 5, 6) and y.flags.c_contiguous
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dW, db = conv2d_backward(dy, cache, need_dx=False)
    assert dx is None and db is None and dW.dtype == np.float32
    # the result does not depend on the memory order of the input or of dy
    x_cm = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    dy_cm = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    y2, cache2 = conv2d_forward(x_cm, W, None, 1, 1)
    np.testing.assert_array_equal(y2, y)
    dx1, dW1, _ = conv2d_backward(dy, cache2)
    dx2, dW2, _ = conv2d_backward(dy_cm, cache2)
    assert dx1.flags.c_contiguous and dx2.flags.c_contiguous  # NCHW in C order
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dW1, dW2)
    np.testing.assert_array_equal(dW1, dW)


def test_shape_errors():
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError):
        conv2d_forward(x, np.zeros((4, 2, 3, 3)))  # c_in mismatch
    with pytest.raises(ValueError):
        conv2d_forward(x, np.zeros((4, 3, 7, 7)))  # kernel larger than the padded input
    y, cache = conv2d_forward(x, np.zeros((4, 3, 3, 3)), np.zeros(4), 1, 1)
    with pytest.raises(ValueError):
        conv2d_backward(np.zeros((2, 4, 4, 4)), cache)
    with pytest.raises(ValueError):
        conv2d_backward(np.zeros(y.shape), cache, B=np.zeros((4, 3, 1, 1)))
    with pytest.raises(TypeError, match="bioplaus.ops.conv"):
        conv2d_backward(np.zeros(y.shape), tuple(cache))  # not this op's cache
    assert conv_output_size(28, 3, 1, 1) == 28 and conv_output_size(96, 7, 2, 3) == 48


@pytest.mark.parametrize("geom", [GEOMETRIES[0], GEOMETRIES[1]], ids=IDS[:2])
def test_numpy_cupy_parity(xp, geom):
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(6)
    x, W, b = _data(rng, n, c_in, c_out, h, w, k)
    B = rng.standard_normal(W.shape)
    y_ref, cache_ref = conv2d_forward(x, W, b, stride, pad)
    dy = rng.standard_normal(y_ref.shape)
    ref = conv2d_backward(dy, cache_ref, B=B)
    dev = [backend.to_device(a, xp) for a in (x, W, b, B, dy)]
    y, cache = conv2d_forward(dev[0], dev[1], dev[2], stride, pad)
    assert backend.array_module(y) is xp
    out = conv2d_backward(dev[4], cache, B=dev[3])
    assert rel_error(y, y_ref) < 1e-12
    for a, r in zip(out, ref):
        assert rel_error(a, r) < 1e-12

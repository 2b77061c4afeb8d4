"""The fast convolution (bioplaus.fast.conv) equals the reference (bioplaus.ops.conv).

Tolerances: the two compute the same sums of products, but the fast path makes
one 2-D product over all examples (``W_2 cols`` with ``cols`` channel-major) and
the reference one product per example, so BLAS adds the terms in other orders
and blocks; col2im adds the kernel offsets in another order too. The results
then agree to a few float64 (float32) rounding errors of the largest entry,
checked as a max-norm relative error below 1e-12 (float64) or 1e-5 (float32).
"""
import numpy as np
import pytest

from bioplaus import backend, kernels
from bioplaus.fast import conv as fast
from bioplaus.ops import conv as ref
from helpers import rel_error

# (n, c_in, c_out, h, w, k, stride, pad): 3x3 'same'; odd sizes; 7x7 s2 p3; 1x1; 5x5 s2 p0;
# per-axis stride and padding; a kernel offset that only reads padding (5x5 p2 on 1x1)
GEOMETRIES = [
    (2, 3, 4, 6, 6, 3, 1, 1),
    (3, 5, 2, 7, 9, 3, 1, 1),
    (2, 2, 3, 11, 9, 7, 2, 3),
    (2, 3, 4, 5, 7, 1, 1, 0),
    (2, 2, 3, 9, 8, 5, 2, 0),
    (1, 2, 3, 8, 7, 3, (2, 1), (0, 2)),
    (2, 3, 2, 1, 1, 5, 1, 2),
]
IDS = ["3x3s1p1", "3x3odd", "7x7s2p3", "1x1", "5x5s2p0", "3x3s21p02", "5x5p2on1x1"]
TOL = {np.float64: 1e-12, np.float32: 1e-5}  # see the module docstring


def _channel_major(a):
    """``a`` (n, c, h, w) with memory ordered (c, n, h, w), as the fast ops hand arrays on."""
    return np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)


def test_every_conv_and_pool_twin_has_the_reference_signature():
    twins = kernels.fast_twins()
    for field in ("conv2d_forward", "conv2d_backward", "maxpool2d_forward",
                  "maxpool2d_backward", "avgpool2d_forward", "avgpool2d_backward"):
        assert field in twins and twins[field][1].__module__.startswith("bioplaus.fast."), field
    assert kernels.check_signatures() == []
    assert kernels.fast().conv2d_forward is fast.conv2d_forward
    assert kernels.REFERENCE.conv2d_forward is ref.conv2d_forward


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_forward_and_backward_equal_the_reference(geom, dtype):
    n, c_in, c_out, h, w, k, stride, pad = geom
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    W = rng.standard_normal((c_out, c_in, k, k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    B = rng.standard_normal(W.shape).astype(dtype)
    tol = TOL[dtype]
    for bias in (b, None):
        y_r, cache_r = ref.conv2d_forward(x, W, bias, stride, pad)
        dy = rng.standard_normal(y_r.shape).astype(dtype)
        for x_in, dy_in in ((x, dy), (_channel_major(x), _channel_major(dy))):
            y_f, cache_f = fast.conv2d_forward(x_in, W, bias, stride, pad)
            assert y_f.shape == y_r.shape and y_f.dtype == dtype
            assert rel_error(y_f, y_r) < tol
            for fb in (None, B):  # backprop and feedback filters
                got = fast.conv2d_backward(dy_in, cache_f, B=fb)
                want = ref.conv2d_backward(dy, cache_r, B=fb)
                assert got[0].shape == x.shape and got[0].dtype == dtype
                for g, r in zip(got, want):
                    assert (g is None) == (r is None)
                    if r is not None:
                        assert rel_error(g, r) < tol
            dx, dW, db = fast.conv2d_backward(dy_in, cache_f, need_dx=False)
            assert dx is None and (db is None) == (bias is None)
            assert rel_error(dW, ref.conv2d_backward(dy, cache_r, need_dx=False)[1]) < tol


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_im2col_holds_the_reference_columns_and_col2im_is_the_same_sum(geom):
    """The same values in another layout: the fast cols are (c*kh*kw, n*oh*ow)."""
    n, c_in, _, h, w, k, stride, pad = geom
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c_in, h, w))
    cols_r = ref.im2col(x, k, k, stride, pad)  # (n, c*k*k, oh*ow)
    cols_f = fast.im2col(x, k, k, stride, pad)
    np.testing.assert_array_equal(cols_f, cols_r.transpose(1, 0, 2).reshape(cols_f.shape))
    C = rng.standard_normal(cols_f.shape)
    C_r = C.reshape(cols_r.shape[1], n, -1).transpose(1, 0, 2)
    dx_f = fast.col2im(C, x.shape, k, k, stride, pad)
    assert rel_error(dx_f, ref.col2im(C_r, x.shape, k, k, stride, pad)) < 1e-15  # sums of <= k*k
    assert dx_f.swapaxes(0, 1).flags.c_contiguous  # channel-major, see bioplaus.fast.conv


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_channel_groups_on_threads_give_the_same_columns_and_images(monkeypatch, geom):
    n, _, _, h, w, k, stride, pad = geom
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 5, h, w))  # 5 channels: groups of 1, 2, or all
    C = rng.standard_normal(fast.im2col(x, k, k, stride, pad).shape)
    cols = fast.im2col(x, k, k, stride, pad).copy()
    whole = fast.col2im(C, x.shape, k, k, stride, pad).copy()
    kept = []  # every result stays alive: no output lands on memory that already holds one
    for threads, group_channels in (("1", 1), ("3", 1), ("3", 2)):
        monkeypatch.setenv("BIOPLAUS_NUM_THREADS", threads)
        monkeypatch.setattr(fast, "CHANNEL_GROUP_VALUES", group_channels * n * h * w)
        kept += [fast.im2col(x, k, k, stride, pad), fast.col2im(C, x.shape, k, k, stride, pad)]
        np.testing.assert_array_equal(kept[-2], cols)
        np.testing.assert_array_equal(kept[-1], whole)


def test_a_cache_of_the_other_path_is_refused():
    x, W = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    y, cache_r = ref.conv2d_forward(x, W)
    _, cache_f = fast.conv2d_forward(x, W)
    with pytest.raises(TypeError, match="bioplaus.fast.conv"):
        fast.conv2d_backward(y, cache_r)
    with pytest.raises(TypeError, match="bioplaus.ops.conv"):
        ref.conv2d_backward(y, cache_f)


def test_fast_equals_reference_on_the_device(xp):
    n, c_in, c_out, h, w, k, stride, pad = GEOMETRIES[2]
    rng = np.random.default_rng(6)
    host = [rng.standard_normal(s) for s in
            ((n, c_in, h, w), (c_out, c_in, k, k), (c_out,), (c_out, c_in, k, k))]
    x, W, b, B = (backend.to_device(a, xp) for a in host)
    y_r, cache_r = ref.conv2d_forward(x, W, b, stride, pad)
    y_f, cache_f = fast.conv2d_forward(x, W, b, stride, pad)
    assert backend.array_module(y_f) is xp and rel_error(y_f, y_r) < 1e-12
    dy = backend.to_device(rng.standard_normal(y_r.shape), xp)
    for g, r in zip(fast.conv2d_backward(dy, cache_f, B=B), ref.conv2d_backward(dy, cache_r, B=B)):
        assert rel_error(g, r) < 1e-12

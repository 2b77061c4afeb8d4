"""Pooling: naive-loop twins, finite differences, torch, NaN windows, decoder geometry."""
import math

import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.avgpool import avgpool2d_backward, avgpool2d_forward, decoder_pool_geometry
from bioplaus.ops.pool import maxpool2d_backward, maxpool2d_forward
from helpers import check_grad, rel_error

# (h, w, k, stride): the nets' 2x2; floor with odd sizes; non-square windows;
# overlapping windows (k > stride) and gaps (k < stride).
MAX_GEOMETRIES = [(6, 6, 2, 2), (7, 5, 2, 2), (3, 3, 2, 2), (7, 8, (3, 2), (3, 2)),
                  (7, 7, 3, 2), (8, 7, 2, 3)]
MAX_IDS = ["2x2", "2x2odd", "2x2on3", "3x2", "3s2overlap", "2s3gaps"]
# (h, w, kernel, pad, stride)
AVG_GEOMETRIES = [((6, 6), (2, 2), (0, 0), None), ((28, 28), (8, 4), (4, 0), None),
                  ((7, 7), (4, 2), (2, 1), None), ((3, 3), (4, 2), (2, 1), None),
                  ((9, 7), (3, 3), (1, 1), (2, 2)), ((7, 6), (2, 3), (1, 1), (1, 2))]
AVG_IDS = ["2x2", "8x4p40", "4x2p21", "4x2p21on3", "3s2p1", "2x3s12p1"]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def naive_maxpool(x, k, stride):
    """Loops over n, c, output pixels; winner = first max in row-major window order."""
    (kh, kw), (sh, sw) = _pair(k), _pair(stride)
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    arg = np.zeros((n, c, oh, ow, 2), dtype=int)
    for m in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    win = x[m, ch, p * sh : p * sh + kh, q * sw : q * sw + kw]
                    t = int(np.argmax(win))  # numpy's argmax returns the first maximum
                    y[m, ch, p, q] = win.flat[t]
                    arg[m, ch, p, q] = (p * sh + t // kw, q * sw + t % kw)
    return y, arg


def naive_avgpool(x, kernel, pad, stride):
    """Loops over n, c, output pixels; zero padding counts in the mean."""
    (kh, kw), (ph, pw) = kernel, pad
    sh, sw = kernel if stride is None else stride
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, w = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for m in range(n):
        for ch in range(c):
            for p in range(oh):
                for q in range(ow):
                    window = xpad[m, ch, p * sh : p * sh + kh, q * sw : q * sw + kw]
                    y[m, ch, p, q] = window.sum() / (kh * kw)
    return y


@pytest.mark.parametrize("geom", MAX_GEOMETRIES, ids=MAX_IDS)
def test_maxpool_matches_loops_and_routes_to_the_winner(geom):
    h, w, k, stride = geom
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(2, 3, h, w)).astype(np.float64)  # many ties
    y, cache = maxpool2d_forward(x, k, stride)
    y_ref, arg = naive_maxpool(x, k, stride)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    dx = maxpool2d_backward(dy, cache)
    dx_ref = np.zeros_like(x)
    for idx in np.ndindex(*y.shape):
        m, ch = idx[:2]
        dx_ref[m, ch, arg[idx][0], arg[idx][1]] += dy[idx]
    np.testing.assert_allclose(dx, dx_ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize("geom", MAX_GEOMETRIES, ids=MAX_IDS)
def test_maxpool_matches_torch_and_finite_differences(geom):
    h, w, k, stride = geom
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, size=(2, 3, h, w)).astype(np.float64)  # ties: torch picks the first
    y, cache = maxpool2d_forward(x, k, stride)
    dy = rng.standard_normal(y.shape)
    dx = maxpool2d_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, k, stride)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    # same winners; overlapping windows may add a shared winner's errors in another order
    np.testing.assert_array_equal(dx != 0, tx.grad.numpy() != 0)
    assert rel_error(dx, tx.grad.numpy()) < 1e-15
    # distinct values (no ties, no kinks near x): central differences are exact
    x = rng.permutation(x.size).reshape(x.shape) * 0.1
    _, cache = maxpool2d_forward(x, k, stride)
    check_grad(lambda: maxpool2d_forward(x, k, stride)[0], x, dy,
               maxpool2d_backward(dy, cache), eps=1e-4)


def test_maxpool_nan_window_gives_nan_and_routes_to_its_first_nan():
    """A window holding a NaN gives NaN (as torch's max_pool2d) and its winner is its first
    NaN (numpy's argmax). torch routes the error to the window's last NaN instead (its
    kernels keep updating on every NaN): the same y, the error on another NaN entry."""
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = np.nan  # window (0, 0): NaN at entries 1 and 2
    x[1, 2, 3, 3] = np.nan  # window (1, 1): NaN at its last entry
    y, cache = maxpool2d_forward(x, 2, 2)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, 2, 2)
    np.testing.assert_array_equal(y, ty.detach().numpy())  # NaN where torch has NaN
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[1, 2, 1, 1]) and np.isfinite(y).sum() == 22
    assert cache.winner[0, 0, 0, 0] == 1 and cache.winner[1, 2, 1, 1] == 3
    dy = np.arange(1.0, 1.0 + y.size).reshape(y.shape)
    dx = maxpool2d_backward(dy, cache)
    ty.backward(torch.tensor(dy))
    t_dx = tx.grad.numpy()
    assert dx[0, 0, 0, 1] == t_dx[0, 0, 1, 0] == dy[0, 0, 0, 0]  # first NaN here, last in torch
    assert dx[0, 0, 1, 0] == t_dx[0, 0, 0, 1] == 0
    dx[0, 0, :2, :2] = t_dx[0, 0, :2, :2]
    np.testing.assert_array_equal(dx, t_dx)  # everything else as torch


def test_maxpool_backward_gives_zero_off_the_winner_whatever_dy_holds():
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 4))
    _, cache = maxpool2d_forward(x, 2, 2)
    dy = np.full((1, 2, 2, 2), np.inf)
    dy[0, 1, 1, 0] = np.nan
    dx = maxpool2d_backward(dy, cache)
    assert (dx != 0).sum() == 8  # one winner per window gets dy, the others exactly 0
    assert np.isnan(dx).sum() == 1 and np.isinf(dx).sum() == 7


@pytest.mark.parametrize("geom", AVG_GEOMETRIES, ids=AVG_IDS)
def test_avgpool_matches_loops_torch_and_finite_differences(geom):
    (h, w), kernel, pad, stride = geom
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, h, w))
    y, cache = avgpool2d_forward(x, kernel, pad, stride)
    np.testing.assert_allclose(y, naive_avgpool(x, kernel, pad, stride), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx = avgpool2d_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.avg_pool2d(tx, kernel, stride, pad, ceil_mode=False,
                                        count_include_pad=True)
    ty.backward(torch.tensor(dy))
    assert ty.shape == y.shape
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-12
    check_grad(lambda: avgpool2d_forward(x, kernel, pad, stride)[0], x, dy, dx, max_entries=80)


@pytest.mark.parametrize("layout", ["C", "channel-major", "strided"])
def test_avgpool_in_every_memory_layout_matches_loops(layout):
    rng = np.random.default_rng(5)
    base = rng.standard_normal((3, 4, 9, 14))
    x = {"C": base, "channel-major": np.ascontiguousarray(base.swapaxes(0, 1)).swapaxes(0, 1),
         "strided": base[:, :, :, ::2]}[layout]
    for kernel, pad in (((4, 2), (2, 1)), ((1, 3), (0, 1)), ((3, 1), (1, 0))):
        y, cache = avgpool2d_forward(x, kernel, pad)
        np.testing.assert_allclose(y, naive_avgpool(x, kernel, pad, None), rtol=1e-12, atol=1e-14)
        dy = rng.standard_normal(y.shape)
        if layout == "strided":
            dy = np.repeat(dy, 2, axis=3)[:, :, :, ::2]  # a view that is not contiguous
        dx = avgpool2d_backward(dy, cache)
        assert dx.flags.c_contiguous
        tx = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
        torch.nn.functional.avg_pool2d(tx, kernel, kernel, pad).backward(torch.tensor(dy))
        assert rel_error(dx, tx.grad.numpy()) < 1e-12


def test_avgpool_identity_kernel_and_dtype():
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 5)).astype(np.float32)
    y, cache = avgpool2d_forward(x, (1, 1))
    np.testing.assert_array_equal(y, x)
    assert y is not x and y.dtype == np.float32
    y, cache = avgpool2d_forward(x, (2, 1), (1, 0))
    assert y.dtype == np.float32 and y.shape == (2, 3, 3, 5)
    assert avgpool2d_backward(y, cache).dtype == np.float32
    with pytest.raises(ValueError):
        avgpool2d_backward(np.zeros((2, 3, 2, 5), np.float32), cache)


def _reference_geometry(c, size, bound):
    """The reference loop, transcribed: ceil sizes, then the padding formula."""
    ks_h = ks_w = 1
    out_h = out_w = size
    while c * out_h * out_w > bound and ks_h < size:
        ks_h *= 2
        out_h = math.ceil(size / ks_h)
        if c * out_h * out_w > bound:
            ks_w *= 2
            out_w = math.ceil(size / ks_w)
    pad = ((ks_h * (out_h - size // ks_h)) // 2, (ks_w * (out_w - size // ks_w)) // 2)
    return (ks_h, ks_w), pad, (out_h, out_w)


def test_decoder_pool_geometry_hand_worked():
    # 512 x 3 x 3 = 4608 > 4096: kh 2 (oh 2: 3072 <= 4096) -> kernel (2, 1), pad (1, 0)
    assert decoder_pool_geometry(512, 3, 4096) == ((2, 1), (1, 0), (2, 3))
    # 128 x 28 x 28: kh 2,4,8 / kw 2,4 -> 128 * 4 * 7 = 3584
    assert decoder_pool_geometry(128, 28, 4096) == ((8, 4), (4, 0), (4, 7))
    assert decoder_pool_geometry(16, 7, 4096) == ((1, 1), (0, 0), (7, 7))  # small enough already
    assert decoder_pool_geometry(4096, 2, 1024) == ((2, 2), (0, 0), (1, 1))  # stops at the map size


@pytest.mark.parametrize("bound", [1024, 2048, 4096])
def test_decoder_pool_geometry_is_what_pooling_produces(bound):
    """Kernel and padding as the reference loop; ``out`` is the shape torch's AvgPool2d gives."""
    for c in (1, 3, 16, 64, 128, 256, 512, 1024):
        for size in range(1, 33):
            kernel, pad, out = decoder_pool_geometry(c, size, bound)
            ref_kernel, ref_pad, ref_out = _reference_geometry(c, size, bound)
            assert (kernel, pad) == (ref_kernel, ref_pad)
            pool = torch.nn.AvgPool2d(kernel, padding=pad, count_include_pad=True)
            t_out = tuple(pool(torch.zeros(1, 1, size, size)).shape[2:])
            assert out == t_out == ref_out, (c, size, bound)
            y, _ = avgpool2d_forward(np.zeros((1, 1, size, size)), kernel, pad)
            assert y.shape[2:] == out
            # the bound holds unless the kernel height reached the map size
            assert c * out[0] * out[1] <= bound or kernel[0] >= size


def test_decoder_sizes_of_vgg8b_on_28x28():
    """The decoder input sizes for vgg8b's conv blocks (128 256 M 256 512 M 512 M 512 M)."""
    blocks = [(128, 28), (256, 28), (256, 14), (512, 14), (512, 7), (512, 3)]
    dims = [c * math.prod(decoder_pool_geometry(c, s, 4096)[2]) for c, s in blocks]
    assert dims == [3584, 4096, 4096, 4096, 4096, 3072]
    assert all(d <= 4096 for d in dims)


def test_numpy_cupy_parity(xp):
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, size=(2, 3, 7, 6)).astype(np.float64)
    dy_max = rng.standard_normal((2, 3, 3, 3))
    y_ref, c_ref = maxpool2d_forward(x, 2, 2)
    dx_ref = maxpool2d_backward(dy_max, c_ref)
    y, c = maxpool2d_forward(backend.to_device(x, xp), 2, 2)
    assert backend.array_module(y) is xp
    np.testing.assert_array_equal(backend.to_numpy(y), y_ref)
    dx = maxpool2d_backward(backend.to_device(dy_max, xp), c)
    np.testing.assert_array_equal(backend.to_numpy(dx), dx_ref)
    ya_ref, ca_ref = avgpool2d_forward(x, (4, 2), (2, 1))
    dy_avg = rng.standard_normal(ya_ref.shape)
    ya, ca = avgpool2d_forward(backend.to_device(x, xp), (4, 2), (2, 1))
    assert rel_error(ya, ya_ref) < 1e-12
    assert rel_error(avgpool2d_backward(backend.to_device(dy_avg, xp), ca),
                     avgpool2d_backward(dy_avg, ca_ref)) < 1e-12


@pytest.mark.parametrize("geom", MAX_GEOMETRIES, ids=MAX_IDS)
def test_maxpool_without_winner_gives_the_same_output_and_refuses_a_backward(geom):
    h, w, k, stride = geom
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, size=(2, 3, h, w)).astype(np.float32)
    y, cache = maxpool2d_forward(x, k, stride)
    y0, cache0 = maxpool2d_forward(x, k, stride, winner=False)
    np.testing.assert_array_equal(y0, y)
    assert cache.winner is not None and cache0.winner is None
    with pytest.raises(ValueError, match="winner=True"):
        maxpool2d_backward(y0, cache0)

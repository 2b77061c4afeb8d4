"""The fast max pooling (bioplaus.fast.pool) equals the reference (bioplaus.ops.pool) bit for bit.

Both take maxima and copy values (no arithmetic that could round differently),
so the outputs, the winners and the routed errors are compared for equality.

NaN: a window holding a NaN gives NaN on both paths and its winner is its first
NaN. The reference gets that from NumPy's ``argmax``; the fast path's
comparisons with the maximum cannot see a NaN, so it finds those windows
(``isnan(y)``) and names their first NaN explicitly. An error ``dy`` that is not
finite reaches the winner only on both paths (the others get exactly 0).
"""
import numpy as np
import pytest

from bioplaus import backend
from bioplaus.fast import pool as fast
from bioplaus.ops import pool as ref

# (h, w, k, stride): the nets' 2x2; odd sizes; non-square windows; overlaps; gaps
GEOMETRIES = [(6, 6, 2, 2), (7, 5, 2, 2), (3, 3, 2, 2), (7, 8, (3, 2), (3, 2)),
              (7, 7, 3, 2), (8, 7, 2, 3), (5, 9, 3, 1)]
IDS = ["2x2", "2x2odd", "2x2on3", "3x2", "3s2overlap", "2s3gaps", "3s1"]


def _channel_major(a):
    return np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)


def _compare(x, k, stride, dy=None):
    y_r, c_r = ref.maxpool2d_forward(x, k, stride)
    y_f, c_f = fast.maxpool2d_forward(x, k, stride)
    np.testing.assert_array_equal(y_f, y_r)
    assert y_f.dtype == y_r.dtype
    np.testing.assert_array_equal(c_f.winner, c_r.winner)
    if dy is None:
        dy = np.random.default_rng(9).standard_normal(y_r.shape).astype(x.dtype)
    dx_r = ref.maxpool2d_backward(dy, c_r)
    for d in (dy, _channel_major(dy)):
        dx_f = fast.maxpool2d_backward(d, c_f)
        np.testing.assert_array_equal(dx_f, dx_r)
        assert dx_f.dtype == dx_r.dtype
    return y_r, dx_r


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_fast_equals_reference_with_ties_and_in_any_layout(geom, dtype):
    h, w, k, stride = geom
    rng = np.random.default_rng(0)
    ties = rng.integers(-2, 3, size=(2, 3, h, w)).astype(dtype)  # many ties: first max wins
    relu = np.maximum(rng.standard_normal((3, 4, h, w)), 0).astype(dtype)  # zero ties, as nets
    for x in (ties, relu, _channel_major(relu)):
        _compare(x, k, stride)
        y0, c0 = fast.maxpool2d_forward(x, k, stride, winner=False)
        np.testing.assert_array_equal(y0, ref.maxpool2d_forward(x, k, stride)[0])
        assert c0.winner is None
        with pytest.raises(ValueError, match="winner=True"):
            fast.maxpool2d_backward(y0, c0)


@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_nan_windows_route_alike_on_both_paths(geom):
    h, w, k, stride = geom
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, h, w))
    x[rng.random(x.shape) < 0.15] = np.nan  # windows with one, several or no NaN
    x[0, 0] = np.nan  # windows with only NaN
    y, dx = _compare(x, k, stride)
    assert np.isnan(y).any() and np.isfinite(y).any()


def test_non_finite_errors_reach_only_the_winner_on_both_paths():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6))
    for k, stride in ((2, 2), (3, 2)):
        shape = ref.maxpool2d_forward(x, k, stride)[0].shape
        dy = rng.standard_normal(shape)
        dy[0, 0, 0, 0], dy[1, 2, 1, 1], dy[0, 1, 1, 0] = np.nan, np.inf, -np.inf
        _, dx = _compare(x, k, stride, dy)
        assert np.isnan(dx).sum() == 1  # no NaN * 0 on the losers of that window


def test_fast_keeps_channel_major_memory():
    rng = np.random.default_rng(3)
    x = _channel_major(rng.standard_normal((3, 4, 6, 6)))
    y, cache = fast.maxpool2d_forward(x, 2, 2)
    assert y.swapaxes(0, 1).flags.c_contiguous
    dx = fast.maxpool2d_backward(y, cache)
    assert dx.swapaxes(0, 1).flags.c_contiguous


def test_a_cache_of_the_other_path_is_refused():
    x = np.zeros((1, 1, 4, 4))
    y, c_r = ref.maxpool2d_forward(x)
    _, c_f = fast.maxpool2d_forward(x)
    with pytest.raises(TypeError, match="bioplaus.fast.pool"):
        fast.maxpool2d_backward(y, c_r)
    with pytest.raises(TypeError, match="bioplaus.ops.pool"):
        ref.maxpool2d_backward(y, c_f)


def test_fast_equals_reference_on_the_device(xp):
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, size=(2, 3, 7, 6)).astype(np.float64)
    x[0, 1, :2, :2] = np.nan
    dy = rng.standard_normal((2, 3, 3, 3))
    dy[1, 1, 1, 1] = np.nan
    x_d, dy_d = backend.to_device(x, xp), backend.to_device(dy, xp)
    y_r, c_r = ref.maxpool2d_forward(x_d, 2, 2)
    y_f, c_f = fast.maxpool2d_forward(x_d, 2, 2)
    assert backend.array_module(y_f) is xp
    np.testing.assert_array_equal(backend.to_numpy(y_f), backend.to_numpy(y_r))
    np.testing.assert_array_equal(backend.to_numpy(c_f.winner), backend.to_numpy(c_r.winner))
    np.testing.assert_array_equal(backend.to_numpy(fast.maxpool2d_backward(dy_d, c_f)),
                                  backend.to_numpy(ref.maxpool2d_backward(dy_d, c_r)))

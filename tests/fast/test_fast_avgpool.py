"""The fast average pooling (bioplaus.fast.avgpool) equals the reference (bioplaus.ops.avgpool).

Tolerances: the reference adds the window's entries and divides by kh*kw; the
fast path sums them as two matrix products with 0/1 window matrices, one of
them scaled by 1/(kh*kw), so the same terms are added in another order and
the division is a multiplication by a rounded 1/(kh*kw). The results agree to
a few rounding errors: a max-norm relative error below 1e-12 in float64 and
1e-5 in float32.
"""
import numpy as np
import pytest

from bioplaus import backend
from bioplaus.fast import avgpool as fast
from bioplaus.ops import avgpool as ref
from helpers import rel_error

# (h, w, kernel, pad, stride): the decoders' pooling (stride = kernel, with padding) on
# even, odd and too-small maps; overlapping and gapped windows; an axis left alone
GEOMETRIES = [((6, 6), (2, 2), (0, 0), None), ((28, 28), (8, 4), (4, 0), None),
              ((7, 7), (4, 2), (2, 1), None), ((3, 3), (4, 2), (2, 1), None),
              ((9, 7), (3, 3), (1, 1), (2, 2)), ((7, 6), (2, 3), (1, 1), (1, 2)),
              ((5, 9), (1, 3), (0, 1), None), ((9, 5), (3, 1), (1, 0), None),
              ((4, 5), (1, 1), (0, 0), None)]
IDS = ["2x2", "8x4p40", "4x2p21", "4x2p21on3", "3s2p1", "2x3s12p1", "1x3", "3x1", "1x1"]
TOL = {np.float64: 1e-12, np.float32: 1e-5}  # see the module docstring


def _layouts(a):
    """``a`` in C order, channel-major, and as a strided (non-contiguous) view."""
    wide = np.repeat(a, 2, axis=3)[:, :, :, ::2]
    return {"C": a, "channel-major": np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1),
            "strided": wide}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=IDS)
def test_fast_equals_reference_in_every_layout(geom, dtype):
    (h, w), kernel, pad, stride = geom
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, h, w)).astype(dtype)
    y_r, c_r = ref.avgpool2d_forward(x, kernel, pad, stride)
    dy = rng.standard_normal(y_r.shape).astype(dtype)
    dx_r = ref.avgpool2d_backward(dy, c_r)
    for name, x_in in _layouts(x).items():
        y_f, c_f = fast.avgpool2d_forward(x_in, kernel, pad, stride)
        assert y_f.shape == y_r.shape and y_f.dtype == dtype, name
        assert rel_error(y_f, y_r) < TOL[dtype], name
        for dy_in in _layouts(dy).values():
            dx_f = fast.avgpool2d_backward(dy_in, c_f)
            assert dx_f.shape == x.shape and dx_f.dtype == dtype
            assert rel_error(dx_f, dx_r) < TOL[dtype], name


def test_fast_backward_is_channel_major_and_identity_kernel_copies():
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    y, cache = fast.avgpool2d_forward(x, (4, 2), (2, 1))
    assert fast.avgpool2d_backward(y, cache).swapaxes(0, 1).flags.c_contiguous
    y, _ = fast.avgpool2d_forward(x, (1, 1))
    np.testing.assert_array_equal(y, x)
    assert y is not x


def test_a_cache_of_the_other_path_is_refused():
    x = np.zeros((1, 1, 4, 4))
    y, c_r = ref.avgpool2d_forward(x)
    _, c_f = fast.avgpool2d_forward(x)
    with pytest.raises(TypeError, match="bioplaus.fast.avgpool"):
        fast.avgpool2d_backward(y, c_r)
    with pytest.raises(TypeError, match="bioplaus.ops.avgpool"):
        ref.avgpool2d_backward(y, c_f)


def test_fast_equals_reference_on_the_device(xp):
    rng = np.random.default_rng(2)
    x = backend.to_device(rng.standard_normal((2, 3, 7, 6)), xp)
    y_r, c_r = ref.avgpool2d_forward(x, (4, 2), (2, 1))
    y_f, c_f = fast.avgpool2d_forward(x, (4, 2), (2, 1))
    assert backend.array_module(y_f) is xp and rel_error(y_f, y_r) < 1e-12
    dy = backend.to_device(rng.standard_normal(y_r.shape), xp)
    assert rel_error(fast.avgpool2d_backward(dy, c_f), ref.avgpool2d_backward(dy, c_r)) < 1e-12

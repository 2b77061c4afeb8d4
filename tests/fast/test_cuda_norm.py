"""Batch norm with fused CuPy kernels (one reduction for the variance and for dgamma, one
pass for xhat and y, one for dx) equals the reference on CuPy (run wherever a GPU is present)."""
import numpy as np
import pytest

from bioplaus import backend
from bioplaus.fast.cuda import norm as cuda_norm
from bioplaus.ops import norm as ref_norm

pytestmark = pytest.mark.gpu
SHAPES = {"1d": (32, 24), "2d": (8, 6, 5, 5), "2d-channel-major": (8, 6, 5, 5)}
# the per-channel sums are taken in CuPy's reduction order, not the reference's:
# agreement to rounding, relative to each array's largest entry
TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def cp():
    if not backend.gpu_available():
        pytest.skip("CuPy with a GPU is not available on this machine")
    return backend.get_xp("gpu")


def _close(a, b, tol, what):
    a, b = backend.to_numpy(a), backend.to_numpy(b)
    assert a.shape == b.shape and a.dtype == b.dtype, what
    scale = max(np.abs(b).max(initial=0.0), 1e-30)
    assert np.abs(a - b).max(initial=0.0) <= tol * scale, what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_cuda_batchnorm_equals_the_reference(cp, layout, training, dtype):
    rng = np.random.default_rng(1)
    shape = SHAPES[layout]
    c = shape[1]
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if layout == "2d-channel-major":
        x, dy = (np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1) for a in (x, dy))
    x, dy = cp.asarray(x), cp.asarray(dy)
    gamma, beta = (cp.asarray(rng.standard_normal(c).astype(dtype)) for _ in range(2))
    rm, rv = cp.asarray(rng.standard_normal(c).astype(dtype)), cp.asarray(
        rng.uniform(0.5, 2, c).astype(dtype))
    before = {"rm": rm.get(), "rv": rv.get()}
    out = {}
    for name, mod in (("cuda", cuda_norm), ("ref", ref_norm)):
        y, cache, nm, nv = mod.batchnorm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
        dx, dg, db = mod.batchnorm_backward(dy, cache)
        out[name] = {"y": y, "mean": nm, "var": nv, "dx": dx, "dgamma": dg, "dbeta": db}
    for k, want in out["ref"].items():
        _close(out["cuda"][k], want, TOL[dtype], k)
    # the running statistics passed in are not modified (new arrays come back)
    np.testing.assert_array_equal(rm.get(), before["rm"])
    np.testing.assert_array_equal(rv.get(), before["rv"])


def test_a_single_value_per_channel_is_refused_as_by_the_reference(cp):
    x = cp.ones((1, 3), dtype=np.float32)
    g = cp.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        cuda_norm.batchnorm_forward(x, g, g, None, None, True)

"""The similarity matrix with the maps' standard deviations in one fused CuPy reduction
equals the reference on CuPy, and its cache serves the backward (run wherever a GPU is present)."""
import numpy as np
import pytest

from bioplaus import backend, kernels, similarity
from bioplaus.fast.cuda import similarity as cuda_sim

pytestmark = pytest.mark.gpu
SHAPES = {"maps": (10, 8, 4, 4), "flat": (10, 3, 4, 4), "2d": (10, 20)}
TOL = {np.float32: 1e-5, np.float64: 1e-12}  # the maps' sums in CuPy's reduction order


@pytest.fixture
def cp():
    if not backend.gpu_available():
        pytest.skip("CuPy with a GPU is not available on this machine")
    return backend.get_xp("gpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_cuda_similarity_equals_the_reference(cp, layout, dtype):
    rng = np.random.default_rng(2)
    x = cp.asarray(rng.standard_normal(SHAPES[layout]).astype(dtype))
    dS = cp.asarray(rng.standard_normal((10, 10)).astype(dtype))
    S1, c1 = cuda_sim.similarity_matrix_forward(x)
    S2, c2 = similarity.similarity_matrix_forward(x)
    backward = kernels.fast(cp).similarity_matrix_backward
    d1, d2 = backward(dS, c1), similarity.similarity_matrix_backward(dS, c2)
    for what, a, b in (("S", S1, S2), ("s", c1.s, c2.s), ("dx", d1, d2)):
        if b is None:
            assert a is None, what
            continue
        a, b = backend.to_numpy(a), backend.to_numpy(b)
        assert a.shape == b.shape and a.dtype == b.dtype, what
        assert np.abs(a - b).max() <= TOL[dtype] * np.abs(b).max(), what

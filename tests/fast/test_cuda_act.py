"""ReLU and LeakyReLU as fused CuPy kernels give the reference's values on CuPy,
non-finite values included (run wherever a GPU is present)."""
import numpy as np
import pytest

from bioplaus import backend
from bioplaus.fast.cuda import act as cuda_act
from bioplaus.ops import act as ref_act
from tests.fast.test_fast_act import SHAPES, SLOPES, _inputs

pytestmark = pytest.mark.gpu


@pytest.fixture
def cp():
    if not backend.gpu_available():
        pytest.skip("CuPy with a GPU is not available on this machine")
    return backend.get_xp("gpu")


def _run(mod, x, dy, slope):
    y, c = mod.relu_forward(x)
    ly, lc = mod.leaky_relu_forward(x, slope)
    return {"relu": y, "relu_mask": c.positive, "relu_dx": mod.relu_backward(dy, c),
            "leaky": ly, "leaky_mask": lc.positive, "leaky_dx": mod.leaky_relu_backward(dy, lc)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_cuda_activations_equal_the_reference(cp, layout, slope, dtype):
    x, dy = _inputs(layout, dtype)  # zeros, -0.0, NaN and infinities in both
    x, dy = cp.asarray(x), cp.asarray(dy)
    got, want = _run(cuda_act, x, dy, slope), _run(ref_act, x, dy, slope)
    for k in want:
        g, w = backend.to_numpy(got[k]), backend.to_numpy(want[k])
        assert g.dtype == w.dtype and g.shape == w.shape, k
        # the same values (NaN where the reference has NaN); a zero's sign is not compared
        np.testing.assert_array_equal(g, w, err_msg=k)

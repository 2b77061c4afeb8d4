"""Adam as one fused CuPy kernel per parameter updates parameters and moments as the
reference does, on CuPy (run wherever a GPU is present)."""
import numpy as np
import pytest

from bioplaus import backend, optim
from bioplaus.fast.cuda import optim as cuda_optim

pytestmark = pytest.mark.gpu
SHAPES = {"w": (33, 17), "b": (17,), "conv": (8, 3, 3, 3)}


@pytest.fixture
def cp():
    if not backend.gpu_available():
        pytest.skip("CuPy with a GPU is not available on this machine")
    return backend.get_xp("gpu")


def _run(cp, step, cfg, dtype, steps=3):
    rng = np.random.default_rng(0)
    params = {k: cp.asarray(rng.standard_normal(s).astype(dtype)) for k, s in SHAPES.items()}
    state = optim.init_state(params, cfg)
    for t in range(steps):
        grads = {k: cp.asarray(rng.standard_normal(s).astype(dtype)) for k, s in SHAPES.items()}
        if t == 1:
            grads["b"] = None  # a parameter without a gradient is left alone
        step(params, grads, state, 1e-2 / (t + 1), cfg)
    return params, state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_cuda_adam_equals_the_reference(cp, dtype, weight_decay):
    cfg = optim.OptimConfig(name="adam", weight_decay=weight_decay)
    p1, s1 = _run(cp, cuda_optim.step, cfg, dtype)
    p2, s2 = _run(cp, optim.step, cfg, dtype)
    assert s1["step"] == s2["step"] == {"w": 3, "b": 2, "conv": 3}
    for k in SHAPES:
        # the reference's expression term by term, no FMA contraction: the same values
        np.testing.assert_array_equal(backend.to_numpy(p1[k]), backend.to_numpy(p2[k]), err_msg=k)
        for slot in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(backend.to_numpy(s1[slot][k]),
                                          backend.to_numpy(s2[slot][k]), err_msg=f"{slot}/{k}")


@pytest.mark.parametrize("name", ["amsgrad", "sgd"])
def test_other_optimizers_go_to_the_fast_wing(cp, name):
    cfg = optim.OptimConfig(name=name, momentum=0.9)
    p1, s1 = _run(cp, cuda_optim.step, cfg, np.float64)
    p2, s2 = _run(cp, optim.step, cfg, np.float64)
    assert s1["step"] == s2["step"]
    for k in SHAPES:
        np.testing.assert_allclose(backend.to_numpy(p1[k]), backend.to_numpy(p2[k]), rtol=1e-12,
                                   atol=1e-14, err_msg=k)

"""The fused CUDA kernels' bodies, compiled for the CPU (tests/fast/cuda_emulator.py),
give the reference's results on NumPy: the elementwise ones exactly, the reductions to
rounding. This checks the kernels' arithmetic where there is no GPU; the CuPy tests
(test_cuda_act/norm/optim/similarity.py) check them on one."""
import types

import numpy as np
import pytest

from bioplaus import kernels, optim, similarity
from bioplaus.fast import similarity as fast_sim
from bioplaus.fast.cuda import act as cuda_act, norm as cuda_norm, optim as cuda_optim
from bioplaus.fast.cuda import similarity as cuda_sim
from bioplaus.ops import act as ref_act, norm as ref_norm
from tests.fast import cuda_emulator
from tests.fast.test_fast_act import SHAPES, _inputs

pytestmark = pytest.mark.skipif(cuda_emulator.CXX is None, reason="no C++ compiler")
TOL = {np.float32: 1e-5, np.float64: 1e-12}  # reductions: a sequential sum against NumPy's


@pytest.fixture(autouse=True)
def emulated():
    with cuda_emulator.installed():
        yield


def _close(a, b, tol, what):
    assert a.shape == b.shape and a.dtype == b.dtype, what
    assert np.abs(a - b).max(initial=0.0) <= tol * max(np.abs(b).max(initial=0.0), 1e-30), what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_activations_exactly(layout, dtype):
    x, dy = _inputs(layout, dtype)  # zeros, -0.0, NaN and infinities
    for slope in (0.01, 1.5):
        for mod_fwd, mod_bwd, args in (("relu_forward", "relu_backward", ()),
                                       ("leaky_relu_forward", "leaky_relu_backward", (slope,))):
            y1, c1 = getattr(cuda_act, mod_fwd)(x, *args)
            y2, c2 = getattr(ref_act, mod_fwd)(x, *args)
            np.testing.assert_array_equal(y1, y2, err_msg=mod_fwd)
            np.testing.assert_array_equal(c1.positive, c2.positive, err_msg=mod_fwd)
            assert c1.slope == c2.slope and c1.dtype == c2.dtype
            d1, d2 = getattr(cuda_act, mod_bwd)(dy, c1), getattr(ref_act, mod_bwd)(dy, c2)
            assert d1.dtype == d2.dtype
            np.testing.assert_array_equal(d1, d2, err_msg=mod_bwd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_adam_exactly(dtype, weight_decay):
    cfg = optim.OptimConfig(name="adam", weight_decay=weight_decay)
    runs = []
    for step in (cuda_optim.step, optim.step):
        rng = np.random.default_rng(0)
        params = {k: rng.standard_normal(s).astype(dtype) for k, s in (("w", (9, 7)), ("b", (7,)))}
        ids = {k: id(v) for k, v in params.items()}
        state = optim.init_state(params, cfg)
        for t in range(3):
            grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
            if t == 1:
                grads["b"] = None
            step(params, grads, state, 1e-2 / (t + 1), cfg)
        assert {k: id(v) for k, v in params.items()} == ids  # updated in place
        runs.append((params, state))
    (p1, s1), (p2, s2) = runs
    assert s1["step"] == s2["step"] == {"w": 3, "b": 2}
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k], err_msg=k)
        for slot in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(s1[slot][k], s2[slot][k], err_msg=f"{slot}/{k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 24), (8, 6, 5, 5)])
def test_batchnorm_training(shape, dtype):
    rng = np.random.default_rng(1)
    c = shape[1]
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma, beta, rm = (rng.standard_normal(c).astype(dtype) for _ in range(3))
    rv = rng.uniform(0.5, 2, c).astype(dtype)
    got, want = [], []
    for mod, out in ((cuda_norm, got), (ref_norm, want)):
        y, cache, nm, nv = mod.batchnorm_forward(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
        out.extend([y, cache.xhat, nm, nv, *mod.batchnorm_backward(dy, cache)])
    for name, a, b in zip(("y", "xhat", "mean", "var", "dx", "dgamma", "dbeta"), got, want):
        _close(a, b, TOL[dtype], name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(10, 8, 4, 4), (10, 20)])
def test_similarity_map_statistics(shape, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    dS = rng.standard_normal((10, 10)).astype(dtype)
    S1, c1 = cuda_sim.similarity_matrix_forward(x)
    S2, c2 = similarity.similarity_matrix_forward(x)
    _close(S1, S2, TOL[dtype], "S")
    if c2.s is not None:
        _close(c1.s, c2.s, TOL[dtype], "s")
    _close(fast_sim.similarity_matrix_backward(dS, c1),
           similarity.similarity_matrix_backward(dS, c2), 10 * TOL[dtype], "dx")
    assert kernels.cuda_twins()["similarity_matrix_forward"][1] is cuda_sim.similarity_matrix_forward


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("net", ["mlp", "vgg8b"])
@pytest.mark.parametrize("rule", ["predsim", "pred-bio", "backprop", "frc-sign"])
def test_whole_steps_on_the_cuda_table_equal_the_reference(monkeypatch, rule, net, dtype):
    """The fast-cuda table (the fused kernels first, the fast wing for the rest) in
    tests/fast/test_steps.py's comparison: caches pass between the twins as they should."""
    from tests.fast import test_steps

    cuda_table = kernels.fast(types.ModuleType("cupy"))  # what CuPy gets
    assert cuda_table.name == "fast-cuda"
    monkeypatch.setattr(kernels, "fast", lambda xp=None: cuda_table)
    test_steps.test_fast_step_equals_reference_step(np, rule, net, dtype)

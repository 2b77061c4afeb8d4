"""Optimizers: the fast twin (compiled single passes on NumPy; in place with eps folded
into the step on CuPy) equals the textbook reference, step by step from the first."""
import numpy as np
import pytest

from bioplaus import backend, kernels
from bioplaus import optim as ref_optim
from bioplaus.fast import optim as fast_optim
from bioplaus.optim import OptimConfig, init_state
from helpers import rel_error

# conv weights and biases, mlp weights, and one larger parameter
SHAPES = {"conv.weight": (16, 8, 3, 3), "conv.bias": (16,), "fc.weight": (40, 64),
          "big.weight": (1027, 256)}
N_STEPS = 6
LRS = [1e-2, 1e-2, 5e-3, 5e-3, 1e-3, 1e-3]
SKIPPED = {2: "conv.bias", 4: "fc.weight"}  # (step, name) without a gradient

CONFIGS = [
    OptimConfig("adam"),
    OptimConfig("adam", weight_decay=0.05),
    OptimConfig("adam", betas=(0.8, 0.99), eps=1e-6),
    OptimConfig("amsgrad"),
    OptimConfig("amsgrad", weight_decay=0.05),
    OptimConfig("sgd"),
    OptimConfig("sgd", momentum=0.9),
    OptimConfig("sgd", momentum=0.9, weight_decay=0.05),
]

# Tolerances, relative to the largest value of each array:
# * NumPy (the compiled loops of bioplaus.fast.jit): each element takes the
#   reference's operations in its order and dtype: bitwise, every optimizer.
# * SGD on CuPy: the same products and sums in the same order: bitwise.
# * Adam/AMSGrad on CuPy, float64: the fast path computes m <- m + (1 - beta1)(g - m)
#   instead of beta1 m + (1 - beta1) g, and folds the bias corrections into
#   the step size and eps (lr c/(1 - beta1^t) * m / (sqrt(v) + eps c), c =
#   sqrt(1 - beta2^t)) instead of lr m_hat / (sqrt(v_hat) + eps): the same
#   values with other roundings, a few ulps of each update (measured: 1e-14 of
#   the update read back as p_new - p_old, most of it the rounding of p).
# * Adam/AMSGrad on CuPy, float32: the same, a few float32 ulps (eps 1.2e-7) of each
#   parameter and moment (measured up to 3e-7 after six steps); an update read
#   back as p_new - p_old carries the rounding of p (an ulp of p is 2e-6 of a late
#   step), so in float32 the parameters and moments are compared, not the update.
TOL = {np.float64: 1e-12, np.float32: 1e-6}


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    # parameters about as large as a step (lr), so that an update read back as
    # p_new - p_old is not lost in the rounding of p
    params = {k: (rng.standard_normal(s) * 1e-3).astype(dtype) for k, s in SHAPES.items()}
    grads = []
    for t in range(N_STEPS):
        # shrinking gradients that change sign: AMSGrad's running max matters
        g = {k: (rng.standard_normal(s) * 2.0 ** (-t)).astype(dtype) for k, s in SHAPES.items()}
        if t in SKIPPED:
            g[SKIPPED[t]] = None
        grads.append(g)
    grads[1]["fc.weight"] = np.asfortranarray(grads[1]["fc.weight"])  # another memory order
    return params, grads


def test_the_fast_table_takes_the_fast_step_with_the_reference_signature():
    assert kernels.fast().optimizer_step is fast_optim.step
    assert kernels.REFERENCE.optimizer_step is ref_optim.step
    assert kernels.check_signatures() == []


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", CONFIGS,
                         ids=lambda c: f"{c.name}-m{c.momentum}-wd{c.weight_decay}-b{c.betas[0]}")
def test_fast_step_equals_the_reference_at_every_step(xp, cfg, dtype):
    params, grads = _problem(dtype)
    p_ref = {k: backend.to_device(v.copy(), xp) for k, v in params.items()}
    p_fast = {k: backend.to_device(v.copy(), xp) for k, v in params.items()}
    ids = {k: id(v) for k, v in p_fast.items()}
    s_ref, s_fast = init_state(p_ref, cfg), init_state(p_fast, cfg)
    tol = 0.0 if cfg.name == "sgd" or xp is np else TOL[dtype]
    for t, g in enumerate(grads):
        g = {k: None if v is None else backend.to_device(v, xp) for k, v in g.items()}
        before = {k: v.copy() for k, v in p_ref.items()}
        before_fast = {k: v.copy() for k, v in p_fast.items()}
        ref_optim.step(p_ref, g, s_ref, LRS[t], cfg)
        fast_optim.step(p_fast, g, s_fast, LRS[t], cfg)
        assert s_fast["step"] == s_ref["step"]
        for k in SHAPES:
            assert p_fast[k].dtype == p_ref[k].dtype == dtype
            # the update itself (the early steps' bias corrections are the largest)
            err = rel_error(p_fast[k] - before_fast[k], p_ref[k] - before[k])
            if dtype == np.float64:
                assert err <= tol, f"step {t + 1}, {k}: update differs by {err:.2e}"
            assert rel_error(p_fast[k], p_ref[k]) <= tol
            for slot in s_ref:
                if slot != "step":
                    assert rel_error(s_fast[slot][k], s_ref[slot][k]) <= tol, (t, k, slot)
            if g[k] is None:  # no gradient: left alone on both paths
                np.testing.assert_array_equal(backend.to_numpy(p_fast[k]),
                                              backend.to_numpy(before_fast[k]))
                np.testing.assert_array_equal(backend.to_numpy(p_ref[k]),
                                              backend.to_numpy(before[k]))
    assert {k: id(v) for k, v in p_fast.items()} == ids  # in place
    assert s_ref["step"] == {"conv.weight": 6, "conv.bias": 5, "fc.weight": 5, "big.weight": 6}


def test_fast_step_raises_what_the_reference_raises():
    params = {"W": np.zeros(3)}
    state = init_state(params, OptimConfig("adam"))
    for mod in (ref_optim, fast_optim):
        with pytest.raises(ValueError, match="amsgrad"):
            mod.step(params, {"W": np.ones(3)}, state, 0.1, OptimConfig("amsgrad"))
        with pytest.raises(ValueError, match="shape"):
            mod.step(params, {"W": np.ones((3, 1))}, state, 0.1, OptimConfig("adam"))
        with pytest.raises(KeyError, match="no optimizer state"):
            mod.step({"W": np.zeros(3), "V": np.zeros(3)}, {"W": np.ones(3), "V": np.ones(3)},
                     state, 0.1, OptimConfig("adam"))
    assert state["step"] == {"W": 0}  # a rejected step counts nothing


NONFINITE_CONFIGS = [OptimConfig("adam", weight_decay=0.05), OptimConfig("amsgrad"),
                     OptimConfig("sgd", momentum=0.9, weight_decay=0.05)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cfg", NONFINITE_CONFIGS, ids=lambda c: c.name)
def test_compiled_updates_keep_the_references_non_finite_values(cfg, dtype):
    # NaN and inf in gradients and parameters, signed zeros: the same values as the
    # reference (assert_array_equal counts NaN == NaN; signbit checks the zeros and
    # infinities; a NaN's sign bit means nothing and is not compared)
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal((31, 17)).astype(dtype)
    p0.flat[::7], p0.flat[1::11], p0.flat[2::13] = -0.0, np.inf, np.nan
    grads = []
    for t in range(4):
        g = rng.standard_normal(p0.shape).astype(dtype)
        g.flat[5 * t::41], g.flat[5 * t + 1::37], g.flat[t + 2::6] = np.nan, -np.inf, -0.0
        grads.append(g)
    out = []
    for mod in (ref_optim, fast_optim):
        p = {"W": p0.copy()}
        state = init_state(p, cfg)
        with np.errstate(all="ignore"):
            for g in grads:
                mod.step(p, {"W": g}, state, 1e-2, cfg)
        out.append((p, state))
    (pr, sr), (pf, sf) = out
    for got, want in [(pf["W"], pr["W"])] + [(sf[k]["W"], sr[k]["W"]) for k in sr if k != "step"]:
        np.testing.assert_array_equal(got, want)
        num = ~np.isnan(want)
        assert np.array_equal(np.signbit(got[num]), np.signbit(want[num]))
        assert 0 < num.sum() < num.size  # both kinds of entry were there


@pytest.mark.parametrize("cfg", NONFINITE_CONFIGS, ids=lambda c: c.name)
def test_compiled_updates_do_not_depend_on_the_gradients_memory_order(cfg):
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((371, 29)).astype(np.float32),
              "b": rng.standard_normal(7).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
             for _ in range(3)]
    results = []
    for fortran in (False, True):
        if fortran:  # a gradient in another memory order
            grads[1]["W"] = np.asfortranarray(grads[1]["W"])
        assert grads[1]["W"].flags.f_contiguous == fortran
        p = {k: v.copy() for k, v in params.items()}
        state = init_state(p, cfg)
        for g in grads:
            fast_optim.step(p, g, state, 1e-2, cfg)
        results.append((p, state))
    (p0, s0), (p1, s1) = results
    for k in params:
        np.testing.assert_array_equal(p0[k], p1[k])
        assert not np.array_equal(p1[k], params[k])
        for slot in s0:
            if slot != "step":
                np.testing.assert_array_equal(s0[slot][k], s1[slot][k])


def test_arrays_the_compiled_loops_cannot_take_are_updated_by_the_operators():
    # a parameter that is a strided view (not one dense block): the NumPy
    # formulation, in place, within rounding of the reference
    cfg = OptimConfig("adam")
    rng = np.random.default_rng(1)
    base = rng.standard_normal((20, 16))
    p_fast, p_ref = {"W": base.copy()[:, ::2]}, {"W": base.copy()[:, ::2]}
    assert fast_optim.jit.flat(p_fast["W"]) is None
    view = p_fast["W"]
    s_fast, s_ref = init_state(p_fast, cfg), init_state(p_ref, cfg)
    g = {"W": rng.standard_normal((20, 8))}
    fast_optim.step(p_fast, g, s_fast, 1e-2, cfg)
    ref_optim.step(p_ref, g, s_ref, 1e-2, cfg)
    assert p_fast["W"] is view
    assert rel_error(p_fast["W"], p_ref["W"]) <= TOL[np.float64]

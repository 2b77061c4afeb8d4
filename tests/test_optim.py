"""Optimizers against torch.optim, in-place updates, checkpointable state, lr schedule."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.optim import (
    OptimConfig,
    init_state,
    load_state_arrays,
    lr_at_epoch,
    state_arrays,
    step,
)
from helpers import rel_error

SHAPES = {"W": (5, 4), "b": (5,), "c": (3, 2, 2)}
LRS = [1e-2, 1e-2, 5e-3, 5e-3, 1e-3]
# Steps (0-based) at which "c" gets no gradient: None at step 1, absent at step 3.
C_SKIPPED = {1: "none", 3: "absent"}

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


def _problem(seed=0, n_steps=5):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(n_steps)]
    # Grads that shrink and change sign make AMSGrad's running max matter.
    for t, g in enumerate(grads):
        for k in g:
            g[k] *= 2.0 ** (-t)
    return params, grads


def _step_grads(grads_t, t):
    g = dict(grads_t)
    if C_SKIPPED.get(t) == "none":
        g["c"] = None
    elif C_SKIPPED.get(t) == "absent":
        del g["c"]
    return g


def _torch_run(params, grads, cfg):
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    if cfg.name == "sgd":
        opt = torch.optim.SGD(list(tp.values()), lr=LRS[0], momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(list(tp.values()), lr=LRS[0], betas=cfg.betas, eps=cfg.eps,
                               weight_decay=cfg.weight_decay, amsgrad=cfg.name == "amsgrad")
    for t, g in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = LRS[t]
        g = _step_grads(g, t)
        for k, p in tp.items():
            p.grad = torch.tensor(g[k]) if g.get(k) is not None else None
        opt.step()
    return {k: p.detach().numpy() for k, p in tp.items()}


def _run(params, grads, cfg, xp=np):
    params = {k: backend.to_device(v.copy(), xp) for k, v in params.items()}
    state = init_state(params, cfg)
    for t, g in enumerate(grads):
        g = {k: None if v is None else backend.to_device(v, xp) for k, v in _step_grads(g, t).items()}
        step(params, g, state, LRS[t], cfg)
    return params, state


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.name}-m{c.momentum}-wd{c.weight_decay}-b{c.betas[0]}")
def test_five_steps_equal_torch(cfg):
    params, grads = _problem()
    ours, state = _run(params, grads, cfg)
    ref = _torch_run(params, grads, cfg)
    for k in SHAPES:
        assert rel_error(ours[k], ref[k]) < 1e-10, k
        assert not np.allclose(ours[k], params[k])  # something happened
    assert state["step"] == {"W": 5, "b": 5, "c": 3}


def test_amsgrad_differs_from_adam_when_second_moment_falls():
    params, grads = _problem()
    a, _ = _run(params, grads, OptimConfig("adam"))
    b, _ = _run(params, grads, OptimConfig("amsgrad"))
    assert rel_error(a["W"], b["W"]) > 1e-6


def test_updates_in_place_and_keep_float32():
    params, grads = _problem()
    params = {k: v.astype(np.float32) for k, v in params.items()}
    for cfg in (OptimConfig("adam"), OptimConfig("amsgrad", weight_decay=0.1),
                OptimConfig("sgd", momentum=0.9, weight_decay=0.1)):
        p = {k: v.copy() for k, v in params.items()}
        ids = {k: id(v) for k, v in p.items()}
        view = p["W"][1:3]  # a view sees the update only if W is changed in place
        before = view.copy()
        state = init_state(p, cfg)
        step(p, {k: v.astype(np.float32) for k, v in grads[0].items()}, state, 1e-2, cfg)
        assert {k: id(v) for k, v in p.items()} == ids
        assert not np.array_equal(view, before)
        for k in p:
            assert p[k].dtype == np.float32
        for slot, arrays in state.items():
            if slot != "step":
                assert all(a.dtype == np.float32 for a in arrays.values())


def test_missing_gradient_leaves_parameter_and_its_state_alone():
    params, grads = _problem()
    cfg = OptimConfig("adam")
    p = {k: v.copy() for k, v in params.items()}
    state = init_state(p, cfg)
    step(p, {"W": grads[0]["W"], "b": None}, state, 1e-2, cfg)
    np.testing.assert_array_equal(p["b"], params["b"])
    np.testing.assert_array_equal(p["c"], params["c"])
    assert not np.any(state["exp_avg"]["b"]) and state["step"]["b"] == 0
    assert state["step"]["W"] == 1


def test_state_roundtrip_through_arrays_continues_exactly():
    params, grads = _problem(seed=1)
    for cfg in (OptimConfig("amsgrad", weight_decay=0.01), OptimConfig("sgd", momentum=0.5)):
        p = {k: v.copy() for k, v in params.items()}
        state = init_state(p, cfg)
        for t in range(2):
            step(p, grads[t], state, LRS[t], cfg)
        saved = {k: np.array(v, copy=True) for k, v in state_arrays(state).items()}
        assert all(isinstance(v, np.ndarray) for v in saved.values())
        p2 = {k: v.copy() for k, v in p.items()}
        state2 = load_state_arrays(saved, np)
        for t in range(2, 5):
            step(p, grads[t], state, LRS[t], cfg)
            step(p2, grads[t], state2, LRS[t], cfg)
        for k in p:
            np.testing.assert_array_equal(p[k], p2[k])
        assert state2["step"] == state["step"]


def test_parity(xp):
    params, grads = _problem(seed=2)
    for cfg in (OptimConfig("amsgrad", weight_decay=0.01), OptimConfig("sgd", momentum=0.9)):
        ref, _ = _run(params, grads, cfg, np)
        dev, state = _run(params, grads, cfg, xp)
        for k in SHAPES:
            assert backend.array_module(dev[k]) is xp
            assert rel_error(dev[k], ref[k]) < 1e-12


def test_config_validation():
    with pytest.raises(ValueError, match="adam, amsgrad, sgd"):
        OptimConfig("rmsprop")
    with pytest.raises(ValueError, match="momentum"):
        OptimConfig("sgd", momentum=-0.1)
    assert OptimConfig("adam", betas=[0.9, 0.99]).betas == (0.9, 0.99)
    params = {"W": np.zeros(3)}
    state = init_state(params, OptimConfig("adam"))
    with pytest.raises(ValueError, match="amsgrad"):
        step(params, {"W": np.ones(3)}, state, 0.1, OptimConfig("amsgrad"))
    with pytest.raises(ValueError, match="shape"):
        step(params, {"W": np.ones((3, 1))}, state, 0.1, OptimConfig("adam"))


def test_lr_schedule_fashion_mnist_milestones():
    milestones = [100, 150, 175, 188]
    lr = 5e-4
    expected = {1: lr, 100: lr, 101: lr * 0.25, 151: lr * 0.25**2, 176: lr * 0.25**3, 200: lr * 0.25**4}
    for epoch, value in expected.items():
        assert lr_at_epoch(epoch, lr, milestones, 0.25) == pytest.approx(value, rel=1e-15)

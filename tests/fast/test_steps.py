"""Whole training steps on the fast kernels equal the same steps on the reference kernels.

For every rule of the registry, on mlp and on a narrow vgg8b (the same
blocks, pools and heads at 1/16 of the widths), in float64 and float32:
two training steps (forward, the rule's updates, the optimizer step on every
group, with dropout) on ``kernels.fast()`` and on ``kernels.REFERENCE`` from
the same initial arrays; every update direction, every parameter after the
steps and every running statistic must agree.

The optimizer is SGD with momentum, not Adam: an encoder bias feeds batch
norm, which removes it, so its gradient is 0 up to rounding (~1e-18), and
Adam divides such a gradient by its own size, moving the bias by about
+-lr with a sign set by rounding, which the next step's batch statistics
then carry everywhere. Adam's fast twin is checked against the reference
on its own (tests/fast/test_fast_optim.py). ``bioplaus train --reference`` is then
checked end to end against the default path on real data.
"""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus import backend, kernels, optim
from bioplaus.config import Config
from bioplaus.net.forward import dropout_masks
from bioplaus.net.model import build_model
from bioplaus.rules.registry import RULES
from bioplaus.rules.step import step_updates

NETS = {
    "mlp": (dict(net="mlp", num_layers=2, num_hidden=24), (1, 8, 8)),
    "vgg8b": (dict(net="vgg8b", feat_mult=1 / 16, num_hidden=24, dim_in_decoder=64), (3, 16, 16)),
}
BATCH, STEPS, LR = 8, 2, 1e-2

# float64: the fast wing reorders some sums (channel groups, threads), so the
# results agree to rounding, not bit for bit: 1e-12 of the array's largest entry.
# float32: the same reorderings at float32's epsilon (6e-8), compounded through
# up to seven blocks, batch norm's 1/std and Adam's 1/sqrt(v): 1e-4.
TOL = {"float64": 1e-12, "float32": 1e-4}


def rel_err(a, b):
    a = np.asarray(backend.to_numpy(a), np.float64)
    b = np.asarray(backend.to_numpy(b), np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return 0.0 if scale == 0.0 else float(np.abs(a - b).max() / scale)


def run_steps(cfg, shape, xp, dtype, reference):
    """Two training steps; returns (update directions per step, params, buffers)."""
    model = build_model(cfg, shape, 10, xp=xp, dtype=dtype, reference=reference)
    assert model.k is (kernels.REFERENCE if reference else kernels.fast(xp))
    ocfg = optim.OptimConfig(name="sgd", momentum=0.9)
    states = {g: optim.init_state(model.group_params(g), ocfg) for g in model.groups}
    rng = np.random.default_rng(3)
    updates = []
    for t in range(STEPS):
        x = backend.to_device(rng.standard_normal((BATCH, *shape)), xp, dtype)
        y = backend.to_device((np.arange(BATCH) + t) % 10, xp)
        masks = dropout_masks(model, BATCH, cfg.dropout, cfg.seed, t)
        grads = {}
        for upd in step_updates(model, x, y, masks):
            grads.update({k: backend.to_numpy(v).copy() for k, v in upd.grads.items()
                          if v is not None})
            model.k.optimizer_step(model.group_params(upd.group), upd.grads, states[upd.group],
                                   LR, ocfg)
        updates.append(grads)
    snap = {k: backend.to_numpy(v).copy() for k, v in model.params.items()}
    bufs = {k: backend.to_numpy(v).copy() for k, v in model.buffers.items()}
    return updates, snap, bufs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("rule", list(RULES))
def test_fast_step_equals_reference_step(xp, rule, net, dtype):
    opts, shape = NETS[net]
    cfg = Config(rule=rule, dataset="cifar10", dropout=0.2, seed=5, dtype=dtype, **opts)
    np_dtype = np.float64 if dtype == "float64" else np.float32
    fast = run_steps(cfg, shape, xp, np_dtype, reference=False)
    ref = run_steps(cfg, shape, xp, np_dtype, reference=True)
    tol = TOL[dtype]
    bad = []
    for t, (gf, gr) in enumerate(zip(fast[0], ref[0])):
        assert set(gf) == set(gr), f"step {t}: other parameters updated"
        for k in gr:
            if k.endswith("encoder.bias"):
                # its gradient is 0 up to rounding (see above): measured against the
                # encoder weight's gradient
                w = k[:-len("bias")] + "weight"
                scale = max(np.abs(gr[w]).max(), np.abs(gf[w]).max())
                diff = float(np.abs(gf[k] - gr[k]).max())
                err = 0.0 if diff == 0.0 else diff / scale  # inf where the weight's is 0
            else:
                err = rel_err(gf[k], gr[k])
            if err > tol:
                bad.append(f"step {t} grad {k}: {err:.2e}")
    for k in ref[1]:
        err = rel_err(fast[1][k], ref[1][k])
        if err > tol:
            bad.append(f"param {k}: {err:.2e}")
    for k in ref[2]:
        err = rel_err(fast[2][k], ref[2][k])
        if err > tol:
            bad.append(f"buffer {k}: {err:.2e}")
    assert not bad, f"{rule} on {net}, {dtype}, tolerance {tol}:\n  " + "\n  ".join(bad)


def test_train_reference_runs_the_reference_path_end_to_end(tmp_path):
    from bioplaus.cli import main
    from bioplaus.io import load_checkpoint

    args = ["train", "--rule", "predsim", "--net", "mlp", "--dataset", "fashion-mnist",
            "--num-layers", "2", "--num-hidden", "32", "--train-subset", "64",
            "--test-subset", "64", "--batch-size", "32", "--epochs", "1", "--no-progress",
            "--optim", "sgd", "--momentum", "0.9", "--lr", "0.01"]  # SGD: see the module's notes
    out = {}
    for path in ("fast", "reference"):
        extra = ["--reference"] if path == "reference" else []
        res = CliRunner().invoke(main, args + extra + ["--out", str(tmp_path / path)])
        assert res.exit_code == 0, res.output
        assert f"{path} kernels" in res.output
        out[path] = load_checkpoint(os.path.join(tmp_path / path, "checkpoint.h5"))
    assert out["reference"]["config"]["reference"] is True
    assert out["fast"]["config"]["reference"] is False
    for k, v in out["reference"]["params"].items():
        # float32: as TOL above
        assert rel_err(out["fast"]["params"][k], v) <= 1e-4, k
    # a run is resumed on the path it was started on (the option is part of its config)
    res = CliRunner().invoke(main, args + ["--epochs", "2", "--resume",
                                           "--out", str(tmp_path / "reference")])
    assert res.exit_code == 0 and "reference kernels" in res.output, res.output

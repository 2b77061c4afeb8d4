"""Small models and batches shared by the rule checks."""
from __future__ import annotations

import numpy as np

from bioplaus import backend
from bioplaus.config import Config
from bioplaus.net.model import build_model
from bioplaus.rules.step import step_updates

NUM_CLASSES = 4
BATCH = 8

# (a) an mlp of two fc blocks; (b) a VGG net with batch norm whose decoders
# average-pool with padding (12x12 maps, dim_in_decoder 32: kernels (8, 4)
# pad (4, 0), (4, 4) pad (2, 2), (4, 2) pad (2, 1), then none on 1x1), an
# odd-sized max-pool (3x3 -> 1x1) and one fc block after the convolutions.
NETS = {
    "mlp": (dict(net="mlp", num_layers=2, num_hidden=16), (1, 6, 6)),
    "vgg": (dict(net="vgg6a", feat_mult=1 / 32, num_layers=1, num_hidden=16,
                 dim_in_decoder=32), (2, 12, 12)),
    "vgg-nofc": (dict(net="vgg6a", feat_mult=1 / 32, num_layers=0, dim_in_decoder=32),
                 (1, 8, 8)),
    "lenet": (dict(net="lenet"), (1, 32, 32)),
    "vgg-stl": (dict(net="vgg6a", feat_mult=1 / 32, num_layers=1, num_hidden=8,
                     dim_in_decoder=64), (1, 66, 66)),
}


def make_cfg(rule, net="mlp", **kw):
    opts, _ = NETS[net]
    base = dict(rule=rule, seed=3, target_proj_size=8, dtype="float64")
    base.update(opts)
    base.update(kw)
    return Config(**base)


def batch(net="mlp", seed=0, n=BATCH):
    """A float64 batch whose labels hold every class twice."""
    _, shape = NETS[net]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + shape)
    y = np.arange(n) % NUM_CLASSES
    rng.shuffle(y)
    return x, y.astype(np.int64)


def model_for(cfg, net="mlp", xp=np, randomize=True, seed=11, reference=True):
    """A float64 model on the reference kernels (``reference=False``: the fast
    ones); with ``randomize`` every parameter gets random values
    (zero-initialised decoders and output layers would leave paths unexercised)."""
    _, shape = NETS[net]
    model = build_model(cfg, shape, NUM_CLASSES, xp=xp, dtype=np.float64, reference=reference)
    if randomize:
        rng = np.random.default_rng(seed)
        for k, v in model.params.items():
            if k.endswith("bn.weight"):
                new = 1.0 + 0.3 * rng.standard_normal(v.shape)
            elif k.endswith("bn.bias"):
                new = 0.3 * rng.standard_normal(v.shape)
            else:
                fan_in = int(np.prod(v.shape[1:])) if v.ndim > 1 else 4
                new = rng.uniform(-1, 1, v.shape) * 1.5 / np.sqrt(fan_in)
            model.params[k] = backend.to_device(new, xp, np.float64)
    return model


def snapshot(d):
    return {k: backend.to_numpy(v).copy() for k, v in d.items()}


def bioplaus_grads(model, x, y, masks=None):
    """Every parameter's update direction from one step of :func:`step_updates`."""
    xp = model.xp
    masks = masks or [None] * len(model.spec.blocks)
    grads = {}
    for upd in step_updates(model, backend.to_device(x, xp, np.float64),
                            backend.to_device(y, xp), masks):
        for k, v in upd.grads.items():
            assert k not in grads, f"{k} updated twice"
            if v is not None:
                grads[k] = backend.to_numpy(v)
    return grads


def assert_grads_close(got, expected, tol=1e-8, keys=None, who="", allow_zero=False):
    """Every gradient in ``keys`` (default: ``expected``'s) agrees to ``tol``.

    An encoder bias that feeds batch norm is removed by it: its true gradient is
    0 and both sides give round-off, which must be tiny next to the
    encoder weight's gradient instead. Unless ``allow_zero``, a reference
    gradient that is exactly zero fails (the check would be too weak).
    """
    from helpers import rel_error

    for k in sorted(expected if keys is None else keys):
        assert k in got, f"{who}: no update for {k}"
        assert got[k].shape == expected[k].shape, k
        if k.endswith("encoder.bias") and k[:-len("encoder.bias")] + "bn.weight" in expected:
            scale = np.abs(expected[k[:-4] + "weight"]).max()
            assert np.abs(got[k]).max() <= 1e-12 * scale, f"{who}: {k} not ~0"
            assert np.abs(expected[k]).max() <= 1e-12 * scale, f"{who}: {k} (reference) not ~0"
            continue
        assert allow_zero or np.abs(expected[k]).max() > 0, f"{who}: {k}: reference gradient 0"
        err = rel_error(got[k], expected[k])
        assert err < tol, f"{who}: {k} relative error {err:.2e}"

"""The gradient oracle: one training step's exact updates, in float64, to a file.

For a rule, a net, a seed and a batch, :func:`compute_oracle` builds the
model in float64 with dropout off, runs one step of the rule and collects,
without applying them, the update directions (gradients) of every
parameter. :func:`write_oracle` stores them with everything needed to
reproduce them elsewhere (see ``docs/oracle.md`` for the layout):

* ``input/x`` (n, c, h, w) float64, normalised; ``input/y`` (n,) int64
* ``params/<name>``  every trainable parameter before the step
* ``buffers/<name>`` batch-norm running statistics before the step
* ``fixed/<name>``   every fixed random matrix (B, P, M, K; frsf's magnitudes
  ``weight_mag``, dfa/drtp's ``direct.weight_fa``) and, for the
  sign-concordant rules, every layer's feedback of this step,
  ``<layer>.weight_fb`` = ``|M| * sign(W)`` (usf, brsf, frsf)
* ``grads/<name>``   the rule's update direction for every parameter
  (the gradient of the rule's objective where it has one)

Names and layouts are the papers' PyTorch reference ``state_dict``'s.
"""
from __future__ import annotations

import numpy as np

from bioplaus import __version__, backend
from bioplaus.net.model import build_model
from bioplaus.rules.step import step_updates


def compute_oracle(cfg, x, y, num_classes: int) -> dict:
    """Run one float64 step of ``cfg.rule`` on (x, y) and return every array."""
    cfg = cfg.replace(dropout=0.0, dtype="float64")
    xp = np
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    model = build_model(cfg, x.shape[1:], num_classes, xp=xp, dtype=np.float64, reference=True)
    params = {k: v.copy() for k, v in model.params.items()}
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    masks = [None] * len(model.spec.blocks)
    grads, losses = {}, {}
    for upd in step_updates(model, x, y, masks):
        for k, v in upd.grads.items():
            if v is not None:
                grads[k] = np.asarray(v)
        for k, v in upd.stats.items():
            if v is not None and k != "correct":
                losses[f"{upd.group}.{k}"] = float(v)
    missing = sorted(set(model.params) - set(grads))
    fixed = dict(model.fixed)
    if hasattr(model.rule.impl, "step_feedback"):  # feedback built from W at this step
        fixed.update(model.rule.impl.step_feedback(model, 0))
    return {"x": x, "y": y, "params": params, "buffers": buffers,
            "fixed": {k: backend.to_numpy(v) for k, v in fixed.items()},
            "grads": grads, "losses": losses, "no_update": missing, "model": model}


def oracle_attrs(cfg, result) -> dict:
    """The file's attributes. The recorded config leaves out ``reference``: an
    oracle always runs the reference kernels (attribute ``kernels``), whatever
    the config says, so files written before the option existed compare."""
    import json

    config = cfg.replace(dropout=0.0, dtype="float64").to_dict()
    config.pop("reference", None)
    config.pop("tf32", None)  # the oracle runs NumPy in float64: never TF32
    return {"rule": cfg.rule, "net": cfg.net, "dataset": cfg.dataset, "seed": int(cfg.seed),
            "batch_size": int(result["x"].shape[0]), "bioplaus_version": __version__,
            "config": json.dumps(config, sort_keys=True), "kernels": "reference",
            "losses": json.dumps(result["losses"], sort_keys=True),
            "params_without_update": json.dumps(result["no_update"])}


def compare(a: dict, b: dict) -> list[tuple[str, float]]:
    """Largest relative error per parameter between two oracle files' grads.

    ``rel = max|a - b| / s``, with ``s`` the largest magnitude of the
    gradients of the parameter's layer (every parameter sharing its name up
    to the last dot, e.g. ``layers.0.encoder.weight`` and ``.bias``) in
    either file. Measured against the layer, not the parameter alone, so a
    gradient that is zero by the math holds only round-off and is not
    blown up by its own tiny size: the bias of a layer that feeds batch norm
    (``layers.*.encoder.bias``: the normalisation removes it, its gradient is
    of order 1e-18) is compared at the scale of its weight's gradient. For
    every other parameter ``s`` is at least its own largest magnitude, so
    the measure is never looser than the layer's. A parameter present in
    only one file, or with another shape, gives ``inf``.
    """
    ga, gb = a.get("grads", {}), b.get("grads", {})

    def layer(name):
        return name.rsplit(".", 1)[0]

    layer_scale: dict = {}
    for g in (ga, gb):
        for name, arr in g.items():
            m = float(np.abs(np.asarray(arr, np.float64)).max(initial=0.0))
            layer_scale[layer(name)] = max(layer_scale.get(layer(name), 0.0), m)
    rows = []
    for name in sorted(set(ga) | set(gb)):
        if name not in ga or name not in gb or ga[name].shape != gb[name].shape:
            rows.append((name, float("inf")))
            continue
        u, v = np.asarray(ga[name], np.float64), np.asarray(gb[name], np.float64)
        scale = layer_scale[layer(name)]
        diff = float(np.abs(u - v).max(initial=0.0))
        err = 0.0 if diff == 0.0 else (float("inf") if scale == 0.0 else diff / scale)
        rows.append((name, err))
    return rows

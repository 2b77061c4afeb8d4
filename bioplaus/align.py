r"""How far each rule's update is from the true gradient, layer by layer.

For a model trained by any rule and one batch, :func:`batch_alignment`
computes, for every trained parameter of every block and of the output
layer,

* the **angle** (degrees) between the rule's update direction
  :math:`u` (what :func:`~bioplaus.rules.step.step_updates` hands the
  optimizer) and the gradient :math:`g = \partial L / \partial \theta` of
  the *output* cross-entropy obtained by backpropagation through the whole
  net, on the same parameters, the same batch and the same dropout masks:
  :math:`\angle(u, g) = 2\,\mathrm{atan2}(\|\hat u - \hat g\|, \|\hat u + \hat g\|)`
  (the same value as :math:`\arccos \hat u \cdot \hat g`, without its loss
  of precision near 0 and 180 degrees);
* the **norm ratio** :math:`\|u\| / \|g\|`.

The gradient comes from a *backprop twin*: the same net under the rule
``backprop``, sharing the parameters. Both run on a diagnostic copy of the
model (parameters, running statistics and fixed matrices copied, by default
in float64, on the reference kernels), so the run's parameters, optimizer
state, batch-norm statistics and random streams are untouched. Parameters
that do not reach the output (local decoders, the sim losses' convolutions,
frc's classifiers) have no such gradient and are not compared.

Where a rule carries errors through a fixed matrix, :func:`feedback_angles`
gives the angle between that matrix and the one it stands in for:
``fa``'s :math:`B_l` against :math:`W_l` (the layers whose B carries an
error: every block above the first, and the output layer), the ``-bio``
decoders' :math:`B` against the decoder's :math:`W`, and ``frc-sym`` /
``frc-sign`` / ``frc-random``'s :math:`K_l` against :math:`M_l^T`.

What to expect, from the equations: the output layer's update is the
global gradient itself under every rule (angle 0), scaled by
:math:`1 - \beta` under ``predsim`` and ``predsim-bio`` (the output loss's
weight there); under local rules with a zero-initialised output layer the
global gradient of every hidden block is exactly zero at initialisation
(no error crosses :math:`W_{out} = 0`), and under ``pred`` the update of
every block is zero (no error crosses its zero-initialised decoder), so
their angles are undefined (``nan``) until those weights have moved.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from bioplaus import backend, kernels

BACKPROP = "backprop"


# --------------------------------------------------------------------- basics
def angle_deg(a, b) -> float:
    """Angle in degrees between two arrays seen as vectors (nan if either is zero)."""
    xp = backend.array_module(a)
    a = a.reshape(-1).astype(np.float64)
    b = b.reshape(-1).astype(np.float64)
    na, nb = float(xp.linalg.norm(a)), float(xp.linalg.norm(b))
    if not (na > 0.0 and nb > 0.0) or not (math.isfinite(na) and math.isfinite(nb)):
        return float("nan")
    ua, ub = a / na, b / nb
    return math.degrees(2.0 * math.atan2(float(xp.linalg.norm(ua - ub)),
                                         float(xp.linalg.norm(ua + ub))))


def norm_ratio(a, b) -> float:
    """``||a|| / ||b||`` (nan where ``b`` is zero)."""
    xp = backend.array_module(a)
    na = float(xp.linalg.norm(a.reshape(-1).astype(np.float64)))
    nb = float(xp.linalg.norm(b.reshape(-1).astype(np.float64)))
    return na / nb if nb > 0.0 else float("nan")


def diagnostic_copy(model, dtype=np.float64, rule: str | None = None):
    """A copy of ``model`` to compute on: its own arrays (cast to ``dtype``; None keeps
    the model's), the reference kernels, and optionally another rule."""
    from bioplaus.rules.registry import get_rule

    xp = model.xp
    dtype = model.dtype if dtype is None else dtype

    def cast(d):
        return {k: xp.array(v, dtype=dtype, copy=True) for k, v in d.items()}

    kw = dict(params=cast(model.params), buffers=cast(model.buffers), fixed=cast(model.fixed),
              dtype=dtype, k=kernels.REFERENCE)
    if rule is not None:
        kw["rule"] = get_rule(rule)
    return dataclasses.replace(model, **kw)


def backprop_twin(model):
    """The same net under ``backprop``, sharing ``model``'s parameters (its own running statistics)."""
    from bioplaus.rules.registry import get_rule

    xp = model.xp
    return dataclasses.replace(model, rule=get_rule(BACKPROP),
                               buffers={k: xp.array(v, copy=True) for k, v in model.buffers.items()})


def _updates(model, x, y, masks) -> dict:
    from bioplaus.rules.step import step_updates

    out = {}
    for upd in step_updates(model, x, y, masks):
        for k, v in upd.grads.items():
            if v is not None:
                out[k] = v
    return out


def layer_of(model, name: str) -> str:
    """The layer (block name or the output layer's name) a parameter belongs to."""
    for b in model.spec.blocks:
        if name.startswith(b.name + "."):
            return b.name
    return model.spec.out_name


def compared_params(model) -> list:
    """The parameters the comparison covers, in net order: every block's encoder and
    batch norm, then the output layer (the parameters the output loss depends on)."""
    names = []
    for b in model.spec.blocks:
        p = b.name + "."
        names += [p + s for s in ("encoder.weight", "encoder.bias", "bn.weight", "bn.bias")]
    o = model.spec.out_name + "."
    return [n for n in names + [o + "weight", o + "bias"] if n in model.params]


# ------------------------------------------------------------------ one batch
def batch_alignment(model, x, y, masks=None, *, dtype=np.float64) -> dict:
    """``{param: (angle_deg, norm_ratio)}`` of the rule's update against the output
    loss's backprop gradient on one batch (see the module docstring).

    ``masks``: the dropout masks of the step (one per block, or None for no
    dropout); both the rule and its twin use the same ones. ``model`` is not
    modified.
    """
    diag = diagnostic_copy(model, dtype)
    twin = backprop_twin(diag)
    xp = diag.xp
    x = backend.to_device(x, xp, diag.dtype)
    y = backend.to_device(y, xp)
    if masks is None:
        masks = [None] * len(diag.spec.blocks)
    masks = [None if m is None else xp.asarray(m, dtype=diag.dtype) for m in masks]
    u = _updates(diag, x, y, masks)
    g = _updates(twin, x, y, masks)
    out = {}
    for name in compared_params(diag):
        if name in u and name in g:
            out[name] = (angle_deg(u[name], g[name]), norm_ratio(u[name], g[name]))
    return out


def feedback_angles(model) -> dict:
    """``{label: angle_deg}`` between each fixed feedback matrix and what it replaces.

    Labels: ``<layer>.encoder B~W`` / ``<out> B~W`` (fa), ``<block>.decoder_y B~W``
    (pred-bio, predsim-bio), ``<block>.frc K~M^T`` (frc-sym, frc-sign, frc-random).
    """
    rule, P, F = model.rule, model.params, model.fixed
    out = {}
    if rule.family == "global" and rule.feedback == "B":
        for b in model.spec.blocks[1:]:  # the first block's B would carry an error to the input
            p = b.name + "."
            out[p + "encoder B~W"] = angle_deg(F[p + "encoder.weight_fa"], P[p + "encoder.weight"])
        o = model.spec.out_name + "."
        out[o[:-1] + " B~W"] = angle_deg(F[o + "weight_fa"], P[o + "weight"])
    for b in model.spec.blocks:
        p = b.name + "."
        if p + "decoder_y.weight_fa" in F:
            out[p + "decoder_y B~W"] = angle_deg(F[p + "decoder_y.weight_fa"],
                                                 P[p + "decoder_y.weight"])
        if p + "frc.K" in F:
            out[p + "frc K~M^T"] = angle_deg(F[p + "frc.K"], F[p + "frc.M"].T)
    return out


# --------------------------------------------------------------- over batches
def step_masks(model, n: int, step: int):
    """The dropout masks the run draws at ``step`` (None for every block without dropout)."""
    from bioplaus.net.forward import dropout_masks

    cfg = model.cfg
    p = float(cfg.dropout) if cfg is not None else 0.0
    seed = int(cfg.seed) if cfg is not None else int(model.seed)
    return dropout_masks(model, n, p, seed, step)


def _stats(values):
    a = np.array(values, dtype=np.float64)
    ok = a[np.isfinite(a)]
    if ok.size == 0:
        return None, None, 0
    return float(ok.mean()), float(ok.std()), int(ok.size)


def alignment(model, batches, *, dtype=np.float64, first_step: int = 0) -> dict:
    """Angles and norm ratios averaged over ``batches`` (an iterable of ``(x, y)``).

    Batch ``i`` uses the dropout masks of step ``first_step + i``. Returns a
    JSON-ready dict::

        {"rule", "net", "batches",
         "params": [{"param", "layer", "angle", "angle_std", "ratio", "ratio_std",
                     "defined"}, ...],   # mean and std over the batches where defined
         "feedback": {label: angle}}

    ``angle``/``ratio`` are None where the update or the global gradient was zero on
    every batch.
    """
    per = {}
    k = 0
    for i, (x, y) in enumerate(batches):
        masks = step_masks(model, int(x.shape[0]), first_step + i)
        for name, (ang, rat) in batch_alignment(model, x, y, masks, dtype=dtype).items():
            per.setdefault(name, ([], []))
            per[name][0].append(ang)
            per[name][1].append(rat)
        k += 1
    if k == 0:
        raise ValueError("alignment needs at least one batch")
    rows = []
    for name in compared_params(model):
        if name not in per:
            continue
        am, asd, n = _stats(per[name][0])
        rm, rsd, _ = _stats(per[name][1])
        rows.append({"param": name, "layer": layer_of(model, name), "angle": am,
                     "angle_std": asd, "ratio": rm, "ratio_std": rsd, "defined": n})
    fb = {k_: (None if math.isnan(v) else v) for k_, v in feedback_angles(model).items()}
    cfg = model.cfg
    return {"rule": model.rule.name, "net": cfg.net if cfg is not None else "?", "batches": k,
            "params": rows, "feedback": fb}


def format_table(res: dict, weights_only: bool = False) -> str:
    """A plain-text table of :func:`alignment`'s result, one line per parameter."""

    def f(v, w=7, d=2):
        return f"{'n/a':>{w}}" if v is None else f"{v:{w}.{d}f}"

    def g(v, w=9):
        return f"{'n/a':>{w}}" if v is None else f"{v:{w}.3g}"

    lines = [f"{res['rule']} on {res['net']}: rule update vs backprop gradient of the output "
             f"loss, over {res['batches']} batch(es)",
             f"{'parameter':<28} {'angle':>7} {'+-':>6} {'|u|/|g|':>9} {'+-':>9}"]
    for r in res["params"]:
        if weights_only and not r["param"].endswith("weight"):
            continue
        lines.append(f"{r['param']:<28} {f(r['angle'])} {f(r['angle_std'], 6)} "
                     f"{g(r['ratio'])} {g(r['ratio_std'])}")
    if res["feedback"]:
        lines.append("fixed feedback vs the matrix it replaces:")
        for k, v in res["feedback"].items():
            lines.append(f"{k:<28} {f(v)}")
    if any(r["angle"] is None for r in res["params"]):
        lines.append("n/a: the update or the backprop gradient is zero on every batch (e.g. "
                     "the output layer's weight, or a local decoder's, is still zero, so no "
                     "error reaches the blocks)")
    return "\n".join(lines)


# -------------------------------------------------------- during training: log
class AlignmentLog:
    """Alignment recorded every ``every`` training steps, as columns for ``log.h5``.

    :meth:`columns` gives ``{"step", "epoch", "wall_s", "angle": {param: ...},
    "ratio": {param: ...}, "feedback": {label: ...}}`` of float64 arrays
    (``epoch`` is fractional: ``epoch - 1 + batch / batches_per_epoch``;
    ``wall_s``: the seconds each record took, its cost to the run).
    """

    def __init__(self, every: int, dtype=None):
        if int(every) < 1:
            raise ValueError(f"--log-alignment must be a number of steps >= 1, got {every}")
        self.every = int(every)
        self.dtype = dtype
        self.rows = []

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def record(self, model, x, y, masks, *, step: int, epoch: float) -> dict:
        t0 = time.perf_counter()
        res = batch_alignment(model, x, y, masks, dtype=self.dtype)
        fb = feedback_angles(model)
        row = {"step": int(step), "epoch": float(epoch), "wall_s": time.perf_counter() - t0,
               "angle": {k: v[0] for k, v in res.items()},
               "ratio": {k: v[1] for k, v in res.items()},
               "feedback": fb}
        self.rows.append(row)
        return row

    def keep_until(self, step: int) -> None:
        """Drop rows recorded after ``step`` (a resumed run records them again)."""
        self.rows = [r for r in self.rows if r["step"] < step]

    def columns(self) -> dict:
        rows = self.rows

        def col(part):
            keys = []
            for r in rows:
                keys += [k for k in r[part] if k not in keys]
            return {k: np.array([r[part].get(k, np.nan) for r in rows], dtype=np.float64)
                    for k in keys}

        return {"step": np.array([r["step"] for r in rows], dtype=np.float64),
                "epoch": np.array([r["epoch"] for r in rows], dtype=np.float64),
                "wall_s": np.array([r["wall_s"] for r in rows], dtype=np.float64),
                "angle": col("angle"), "ratio": col("ratio"), "feedback": col("feedback")}

    @classmethod
    def from_columns(cls, every: int, cols: dict, dtype=None) -> "AlignmentLog":
        log = cls(every, dtype)
        steps = np.asarray(cols.get("step", []))
        for i in range(steps.shape[0]):
            log.rows.append({
                "step": int(steps[i]), "epoch": float(np.asarray(cols["epoch"])[i]),
                "wall_s": float(np.asarray(cols.get("wall_s", np.zeros_like(steps)))[i]),
                **{part: {k: float(np.asarray(v)[i]) for k, v in cols.get(part, {}).items()}
                   for part in ("angle", "ratio", "feedback")}})
        return log

r"""Sign-concordant feedback: ``usf``, ``brsf``, ``frsf`` (Liao, Leibo & Poggio 2016).

The backward pass is backprop's (and fa's), with every weight layer's error
crossing a matrix that shares the signs of the layer's *current* ``W``,
rebuilt at every step:

* ``usf`` (uniform sign-concordant feedback): :math:`B = s\,\mathrm{sign}(W)`,
  ``s`` the standard deviation of the layer's initialisation
  (:func:`bioplaus.feedback.usf_scale`);
* ``brsf`` (batchwise random magnitude): :math:`B_t = |R_t| \odot \mathrm{sign}(W)`,
  ``R_t`` redrawn every batch from (seed, layer, step)
  (:func:`bioplaus.feedback.brsf_magnitude`);
* ``frsf`` (fixed random magnitude): :math:`B = |B_0| \odot \mathrm{sign}(W)`,
  ``|B_0|`` fixed, ``<layer>.weight_mag`` in ``model.fixed``
  (:func:`bioplaus.feedback.frsf_magnitude`).

The names and the three variants are Xiao, Chen, Liao & Poggio (2018),
*Biologically-plausible learning algorithms can scale to large datasets*,
and biotorch's (Sanfiz & Akrout 2021). As a rule module (see
:mod:`bioplaus.rules`): :func:`init_heads`, :func:`init_output`,
:func:`global_updates`.
"""
from __future__ import annotations

from bioplaus import feedback as fb
from bioplaus.rules import global_

BLOCKWISE = False

#: The fixed magnitudes of frsf, per weight layer: ``<layer>.weight_mag``.
MAG = ".weight_mag"


def init_heads(rule, block, geom, init) -> tuple[dict, dict]:
    """frsf's fixed magnitudes of the block's encoder; nothing for usf and brsf."""
    if rule.feedback != "sign-fixed":
        return {}, {}
    return {}, {block.name + ".encoder" + MAG: fb.frsf_magnitude(
        init.xp, init.seed, block.index, block.encoder_shape, init.dtype, init.scheme)}


def init_output(rule, spec, init) -> dict:
    """frsf's fixed magnitudes of the output layer."""
    if rule.feedback != "sign-fixed":
        return {}
    return {spec.out_name + MAG: fb.frsf_magnitude(
        init.xp, init.seed, len(spec.blocks), (init.num_classes, spec.out_in), init.dtype,
        init.scheme)}


def magnitude(model, layer, index, W, step):
    """The feedback magnitude of weight layer ``layer`` (stream index ``index``) at ``step``."""
    kind, scheme = model.rule.feedback, model.cfg.init if model.cfg else "torch"
    if kind == "sign-uniform":
        return fb.usf_scale(W.shape, scheme)
    if kind == "sign-batch":
        return fb.brsf_magnitude(model.xp, model.seed, index, step, W.shape, W.dtype, scheme)
    if kind == "sign-fixed":
        return model.fixed[layer + MAG]
    raise ValueError(f"{model.rule.name}: no sign-concordant feedback {kind!r}")


def sign_updates(model, x, y, Y, masks, *, training=True, step=0, magnitude=magnitude):
    r"""One batch's gradients with :math:`B_l = |M_l| \odot \mathrm{sign}(W_l)` for every weight
    layer, ``M_l = magnitude(model, layer, index, W_l, step)``: the recursion of
    :func:`bioplaus.rules.global_.global_updates` with that feedback."""
    def feedback(model, layer, index, W):
        return fb.sign_concordant(W, magnitude(model, layer, index, W, step))

    return global_.global_updates(model, x, y, Y, masks, training=training, step=step,
                                  feedback=feedback)


def global_updates(model, x, y, Y, masks, *, training=True, step=0):
    """The rule's gradients for one batch (:func:`sign_updates` with :func:`magnitude`)."""
    return sign_updates(model, x, y, Y, masks, training=training, step=step)


def step_feedback(model, step=0) -> dict:
    """Every weight layer's feedback matrix ``<layer>.weight_fb`` at ``step`` (for the
    oracle's ``fixed/``): what :func:`global_updates` multiplies the errors by."""
    out = {}
    layers = [(b.name + ".encoder", b.index) for b in model.spec.blocks[1:]]
    for layer, index in layers + [(model.spec.out_name, len(model.spec.blocks))]:
        W = model.params[layer + ".weight"]
        out[layer + ".weight_fb"] = fb.sign_concordant(W, magnitude(model, layer, index, W, step))
    return out

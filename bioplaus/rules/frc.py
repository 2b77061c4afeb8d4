r"""Mostafa, Ramesh & Cauwenberghs (2018): fixed random local classifiers.

Each hidden block l has a classifier :math:`M_l` (C x N_l) that reads the
block's output — after the dropout mask and the max-pool, flattened — as
:math:`y_l = M_l h_l`. Its local loss (cross-entropy or squared hinge) gives
:math:`e_l = \partial L / \partial y_l`, which enters the block through the
feedback matrix :math:`K_l` (N_l x C): :math:`\delta_l = (K_l e_l) \odot
f'(a_l)` (the caller applies f', batch norm and the encoder), and
:math:`\Delta W_l = -\eta\, \delta_l h_{l-1}^T`.

:math:`K_l` is ``M_l^T`` (sym, exact), sign-concordant with random
magnitudes (sign), independent (random) or ``M_l^T`` of a trained ``M_l``
(trainable). ``M`` and ``K`` are regenerated from (seed, layer), never
stored (:mod:`bioplaus.feedback`).

As a rule module (see :mod:`bioplaus.rules`): :func:`init_heads`,
:func:`block_update`, :func:`exit_scores`, :func:`exit_prediction`,
:func:`head_macs`.
"""
from __future__ import annotations

import numpy as np

from bioplaus import backend, feedback, losses
from bioplaus.net.block import block_backward_to_h

BLOCKWISE = True  # each block is updated as soon as its own forward is done
READS_OUTPUT = True  # the classifier reads the pooled output: the error comes back through it


def init_heads(rule, block, geom, init) -> tuple[dict, dict]:
    """``(params, fixed)``: the block's classifier ``frc.M`` (a parameter for
    frc-trainable) and, for the fixed classifiers, its feedback ``frc.K``."""
    p = f"{block.name}."
    xp, seed, dtype = init.xp, init.seed, init.dtype
    n_feat = int(np.prod(block.out_shape))
    M = feedback.frc_classifier(xp, seed, block.index, init.num_classes, n_feat, dtype=dtype)
    if rule.frc == "trainable":
        return {p + "frc.M": M}, {}
    return {}, {p + "frc.M": M,
                p + "frc.K": feedback.frc_feedback(rule.frc, M, xp, seed, block.index,
                                                   dtype=dtype)}


def _classifier(model, block):
    p = f"{block.name}."
    return model.params[p + "frc.M"] if model.rule.frc == "trainable" else model.fixed[p + "frc.M"]


def frc_block_update(model, block, out, y):
    r"""Local classifier loss of one block and the error it sends into the block's output.

    Parameters
    ----------
    out : array, the block's output (n, c, hh, ww) or (n, d), dropout and pool applied
    y : int array (n,)

    Returns
    -------
    loss : 0-d float64 array on the device (:func:`bioplaus.losses.value`)
    grads : dict, ``{<block>.frc.M: dM}`` for frc-trainable, else empty
    d_out : array like ``out``, :math:`K e` reshaped
    y_l : array (n, C), the local classifier's scores

    Notes
    -----
    With :math:`f` = out flattened (n, N): :math:`y_l = f M^T`,
    :math:`df = e K^T` (K is (N, C), so each row is :math:`K e_i`), and for
    the trainable classifier :math:`dM = e^T f`. Mostafa et al. 2018, Sec. 3.
    """
    p = f"{block.name}."
    rule, k = model.rule, model.k
    f = out.reshape(out.shape[0], -1)  # (n, N)
    M = _classifier(model, block)
    if rule.frc == "trainable":
        K_T = M  # K = M^T of the current, learned classifier
    else:
        K_T = model.fixed[p + "frc.K"].T  # (C, N)
    y_l, lin = k.linear_forward(f, M, None)  # (n, C)
    if model.cfg is not None and model.cfg.frc_loss == "hinge":
        L, e = k.squared_hinge(y_l, y)
    else:
        L, e = k.softmax_cross_entropy(y_l, y)
    df, dM, _ = k.linear_backward(e, lin, B=K_T)
    grads = {p + "frc.M": dM} if rule.frc == "trainable" else {}
    return losses.value(L), grads, df.reshape(out.shape), y_l


def exit_prediction(model, i: int, y_l):
    """Class predicted by block ``i``'s local classifier from its scores ``y_l`` (n, C): the arg-max."""
    return backend.array_module(y_l).argmax(y_l, axis=1)


def block_update(model, i: int, out, h, cache, y, Y):
    """Block ``i``'s update: ``(grads, dh, stats, y_l)``, the classifier's error
    carried back through the max-pool and dropout mask to ``h``."""
    L, grads, d_out, y_l = frc_block_update(model, model.spec.blocks[i], out, y)
    dh = block_backward_to_h(d_out, cache, k=model.k)
    return grads, dh, {"loss": L, "loss_pred": L, "loss_sim": 0.0}, y_l


def exit_scores(model, i: int, h, out):
    """Block ``i``'s classifier scores in evaluation, :math:`y_l = M_l h_l` (n, C)."""
    M = _classifier(model, model.spec.blocks[i])
    y_l, _ = model.k.linear_forward(out.reshape(out.shape[0], -1), M, None)
    return y_l


def head_macs(model, i: int) -> int:
    """Multiply-accumulates per example of block i's classifier."""
    return model.spec.num_classes * int(np.prod(model.spec.blocks[i].out_shape))

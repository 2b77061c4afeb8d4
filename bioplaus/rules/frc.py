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
"""
from __future__ import annotations

from bioplaus import backend, losses
from bioplaus.ops import linear as lin_ops


def frc_block_update(model, block, out, y):
    r"""Local classifier loss of one block and the error it sends into the block's output.

    Parameters
    ----------
    out : array, the block's output (n, c, hh, ww) or (n, d), dropout and pool applied
    y : int array (n,)

    Returns
    -------
    loss : float
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
    rule = model.rule
    f = out.reshape(out.shape[0], -1)  # (n, N)
    if rule.frc == "trainable":
        M = model.params[p + "frc.M"]
        K_T = M  # K = M^T of the current, learned classifier
    else:
        M = model.fixed[p + "frc.M"]
        K_T = model.fixed[p + "frc.K"].T  # (C, N)
    y_l, lin = lin_ops.linear_forward(f, M, None)  # (n, C)
    if model.cfg is not None and model.cfg.frc_loss == "hinge":
        L, e = losses.squared_hinge(y_l, y)
    else:
        L, e = losses.softmax_cross_entropy(y_l, y)
    df, dM, _ = lin_ops.linear_backward(e, lin, B=K_T)
    grads = {p + "frc.M": dM} if rule.frc == "trainable" else {}
    return float(L), grads, df.reshape(out.shape), y_l


def exit_prediction(model, i: int, y_l):
    """Class predicted by block ``i``'s local classifier from its scores ``y_l`` (n, C): the arg-max."""
    return backend.array_module(y_l).argmax(y_l, axis=1)

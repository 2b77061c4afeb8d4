r"""Nøkland & Eidnes (ICML 2019): the local losses of one block, and their updates.

Every function here reads a block's activation ``h`` (before dropout) and
the labels, and returns the loss, the gradients of the block's local head
parameters and the error ``dh`` that the loss sends into ``h``. Nothing
crosses into the block below: the caller carries ``dh`` through the block's
own nonlinearity, batch norm and encoder only (:mod:`bioplaus.net.block`).

Notation (SPEC §1-§2): ``h`` is (n, c, hh, ww) or (n, d); ``Y`` is the
one-hot label matrix (n, C); ``S(.)`` the similarity matrix; ``P`` the fixed
label projection (T, C) with T = 128; ``B`` the bio decoder's fixed feedback.
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus import backend, losses, similarity
from bioplaus.ops import conv as conv_ops
from bioplaus.ops import linear as lin_ops
from bioplaus.ops import avgpool as avgpool_ops


class LocalResult(NamedTuple):
    """One block's local losses: total loss, the parts, grads, dh, and the
    decoder's outputs (for the local classifier's error; None without pred)."""

    loss: float
    loss_pred: float
    loss_sim: float
    grads: dict
    dh: object
    y_hat: object


def decoder_input(h, geom):
    """``h`` average-pooled as the decoder reads it (SPEC §2), flattened.

    Returns ``(f, cache)``: f (n, geom.dim_in). Padding counts in the mean.
    """
    cache = None
    x = h
    if geom.pool_kernel is not None:
        x, cache = avgpool_ops.avgpool2d_forward(h, kernel=geom.pool_kernel, pad=geom.pool_pad)
    return x.reshape(x.shape[0], -1), (cache, x.shape)  # (n, dim_in)


def decoder_input_backward(df, cache):
    pool_cache, shape = cache
    dx = df.reshape(shape)
    if pool_cache is not None:
        dx = avgpool_ops.avgpool2d_backward(dx, pool_cache)
    return dx


def pred_loss(h, y, W, b, geom, scale: float = 1.0):
    r"""Prediction loss :math:`L_{pred} = CE(Y, W^T \bar h + b)` and its exact gradient.

    Notes
    -----
    :math:`\bar h` is ``h`` average-pooled to at most ``dim_in_decoder``
    features (conv blocks) or ``h`` itself (fc blocks). With
    :math:`\hat y = \bar h W^T + b` (n, C) and
    :math:`\delta = (\mathrm{softmax}(\hat y) - Y) / n`:
    :math:`dW = \delta^T \bar h`, :math:`db = \sum_i \delta_i`,
    :math:`d\bar h = \delta W` (weight transport: the decoder's own W).
    ``scale`` multiplies the loss and every gradient (``1 - beta`` in predsim).
    Nøkland & Eidnes 2019, Sec. 3.
    """
    f, fcache = decoder_input(h, geom)
    y_hat, lin = lin_ops.linear_forward(f, W, b)  # (n, C)
    L, dy_hat = losses.softmax_cross_entropy(y_hat, y)
    df, dW, db = lin_ops.linear_backward(scale * dy_hat, lin, B=W)
    return scale * float(L), {"decoder_y.weight": dW, "decoder_y.bias": db}, \
        decoder_input_backward(df, fcache), y_hat


def bio_target(Y, P):
    r"""The binarised random projection of the labels, :math:`t = 1[P y > 0]` (n, T)."""
    return (Y @ P.T > 0).astype(Y.dtype)


def pred_bio_loss(h, Y, W, b, B, P, geom, scale: float = 1.0):
    r"""Bio prediction loss :math:`BCE(1[PY > 0], W^T \bar h + b)`; the error reaches ``h`` through B.

    Notes
    -----
    With :math:`z = \bar h W^T + b` (n, T) and
    :math:`\delta = (\sigma(z) - t) / (nT)` (BCE-with-logits, mean over all
    entries): :math:`dW = \delta^T \bar h`, :math:`db = \sum_i \delta_i`
    (exact), but :math:`d\bar h = \delta B` with ``B`` a fixed random matrix
    of W's shape (feedback alignment): no weight transport.
    Nøkland & Eidnes 2019, Sec. 3.3.
    """
    f, fcache = decoder_input(h, geom)
    z, lin = lin_ops.linear_forward(f, W, b)  # (n, T)
    L, dz = losses.bce_with_logits(z, bio_target(Y, P))
    df, dW, db = lin_ops.linear_backward(scale * dz, lin, B=B)
    return scale * float(L), {"decoder_y.weight": dW, "decoder_y.bias": db}, \
        decoder_input_backward(df, fcache), z


def sim_loss_learned(h, Y, W_nn, kind: str, scale: float = 1.0):
    r"""Similarity matching loss :math:`\|S(NN(h)) - S(Y)\|_F^2 / n^2` with a learned NN.

    Notes
    -----
    ``NN`` is a conv 3x3 pad 1 without bias (``conv_loss``, conv blocks) or
    a linear d -> d without bias (``linear_loss``, fc blocks). The gradient
    is exact: :math:`dR = 2 (S(r) - S(Y)) / n^2`, back through ``S`` and
    ``NN`` (its own weight: weight transport inside the head).
    Nøkland & Eidnes 2019, Sec. 3.
    """
    if kind == "conv":
        r, nn_cache = conv_ops.conv2d_forward(h, W_nn, None, stride=1, pad=1)
    else:
        r, nn_cache = lin_ops.linear_forward(h, W_nn, None)
    R_h, s_cache = similarity.similarity_matrix_forward(r)  # (n, n)
    R_y, _ = similarity.similarity_matrix_forward(Y)
    L, dR = losses.sim_loss(R_h, R_y)
    dr = similarity.similarity_matrix_backward(scale * dR, s_cache)
    if kind == "conv":
        dh, dW, _ = conv_ops.conv2d_backward(dr, nn_cache, B=W_nn)
        name = "conv_loss.weight"
    else:
        dh, dW, _ = lin_ops.linear_backward(dr, nn_cache, B=W_nn)
        name = "linear_loss.weight"
    return scale * float(L), {name: dW}, dh


def sim_bio_loss(h, Y, P, geom, scale: float = 1.0):
    r"""Bio similarity loss :math:`\|S(\bar h) - S(Y P^T)\|_F^2 / n^2`: no learned NN.

    Notes
    -----
    :math:`\bar h` is ``h`` average-pooled as for the decoder (conv blocks;
    the similarity then reduces feature maps to their std) or ``h`` itself
    (fc blocks). The target compares labels through the fixed projection P.
    Nøkland & Eidnes 2019, Sec. 3.3.
    """
    x = h
    pool_cache = None
    if geom.pool_kernel is not None:
        x, pool_cache = avgpool_ops.avgpool2d_forward(h, kernel=geom.pool_kernel, pad=geom.pool_pad)
    R_h, s_cache = similarity.similarity_matrix_forward(x)
    R_y, _ = similarity.similarity_matrix_forward(Y @ P.T)  # (n, T) -> (n, n)
    L, dR = losses.sim_loss(R_h, R_y)
    dx = similarity.similarity_matrix_backward(scale * dR, s_cache)
    if pool_cache is not None:
        dx = avgpool_ops.avgpool2d_backward(dx, pool_cache)
    return scale * float(L), {}, dx


def local_block_update(model, block, geom, h, y, Y) -> LocalResult:
    r"""All local losses of one block under ``model.rule``, combined with beta.

    Notes
    -----
    :math:`L = (1-\beta) L_{pred} + \beta L_{sim}` for predsim(-bio); pred or
    sim alone use weight 1. Returns gradients keyed by full parameter name.
    """
    rule = model.rule
    p = f"{block.name}."
    prm, fx = model.params, model.fixed
    both = rule.pred and rule.sim
    w_pred = (1.0 - model.beta) if both else 1.0
    w_sim = model.beta if both else 1.0
    grads, dh, y_hat = {}, None, None
    loss_pred = loss_sim = 0.0
    if rule.pred and w_pred != 0.0:
        if rule.bio:
            loss_pred, g, dh_p, y_hat = pred_bio_loss(
                h, Y, prm[p + "decoder_y.weight"], prm[p + "decoder_y.bias"],
                fx[p + "decoder_y.weight_fa"], fx[p + "proj_y.weight"], geom, w_pred)
        else:
            loss_pred, g, dh_p, y_hat = pred_loss(h, y, prm[p + "decoder_y.weight"],
                                                  prm[p + "decoder_y.bias"], geom, w_pred)
        grads.update({p + k: v for k, v in g.items()})
        dh = dh_p
    if rule.sim and w_sim != 0.0:
        if rule.bio:
            loss_sim, g, dh_s = sim_bio_loss(h, Y, fx[p + "proj_y.weight"], geom, w_sim)
        else:
            name = "conv_loss.weight" if block.kind == "conv" else "linear_loss.weight"
            loss_sim, g, dh_s = sim_loss_learned(h, Y, prm[p + name], block.kind, w_sim)
        grads.update({p + k: v for k, v in g.items()})
        if dh is not None:
            # dh_s is the sim loss's fresh error array (no cache holds it): add in
            # place. In a conv block it is channel-major in memory, as the encoder's
            # backward wants it (see bioplaus.ops.conv)
            dh_s += dh
        dh = dh_s
    if dh is None:
        dh = h * 0
    return LocalResult(loss_pred + loss_sim, loss_pred, loss_sim, grads, dh, y_hat)


def bio_codes(model, i: int):
    """The binary target code of every class for block ``i``: rows 1[P e_c > 0] (C, T)."""
    P = model.fixed[f"{model.spec.blocks[i].name}.proj_y.weight"]  # (T, C)
    return (P.T > 0).astype(P.dtype)


def exit_prediction(model, i: int, y_hat):
    """Class predicted by block ``i``'s local decoder from its outputs ``y_hat``.

    pred: the arg-max score. pred-bio's decoder predicts the label's binary
    code ``1[P y > 0]``; its class is the code of highest likelihood, which
    for independent Bernoulli outputs is ``argmax_c z . t_c``.
    """
    xp = backend.array_module(y_hat)
    if model.rule.bio:
        y_hat = y_hat @ bio_codes(model, i).T  # (n, C)
    return xp.argmax(y_hat, axis=1)

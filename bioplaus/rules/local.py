r"""Nøkland & Eidnes (ICML 2019): the local losses of one block, and their updates.

Every function here reads a block's activation ``h`` (before dropout) and
the labels, and returns the loss, the gradients of the block's local head
parameters and the error ``dh`` that the loss sends into ``h``. Nothing
crosses into the block below: the caller carries ``dh`` through the block's
own nonlinearity, batch norm and encoder only (:mod:`bioplaus.net.block`).

Notation (SPEC §1-§2): ``h`` is (n, c, hh, ww) or (n, d); ``Y`` is the
one-hot label matrix (n, C); ``S(.)`` the similarity matrix; ``P`` the fixed
label projection (T, C) with T = 128; ``B`` the bio decoder's fixed feedback.
Every op is called through ``k`` (:class:`bioplaus.kernels.Kernels`; the
model's ``model.k``).

As a rule module (see :mod:`bioplaus.rules`) this serves pred, sim,
predsim and their -bio variants: :func:`init_heads` makes a block's heads,
:func:`block_update` is a block's update, :func:`exit_scores` /
:func:`exit_prediction` / :func:`head_macs` its early exit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bioplaus import backend, feedback, losses
from bioplaus.net.block import init_uniform

BLOCKWISE = True  # each block is updated as soon as its own forward is done
READS_OUTPUT = False  # the losses read h; no error comes back through the max-pool


class LocalResult(NamedTuple):
    """One block's local losses: total loss, the parts, grads, dh, and the
    decoder's outputs (for the local classifier's error; None without pred)."""

    loss: object  # 0-d float64 arrays on the model's device (losses.value), or 0.0
    loss_pred: object
    loss_sim: object
    grads: dict
    dh: object
    y_hat: object


# the learned similarity head of a block, by the block's kind (the reference's names)
SIM_HEAD = {"conv": "conv_loss.weight", "linear": "linear_loss.weight"}


def init_sim_head(block, init) -> dict:
    """The learned similarity head NN of a block (conv 3x3 or linear d -> d, no bias),
    PyTorch's default init; also used by glob+sim."""
    if block.kind == "conv":
        shape = (block.n_out, block.n_out, 3, 3)
    else:
        shape = (block.n_out, block.n_out)
    name = f"{block.name}.{SIM_HEAD[block.kind]}"
    return {name: init_uniform(init.xp, init.seed, name, shape, int(np.prod(shape[1:])),
                               init.dtype)}


def init_heads(rule, block, geom, init) -> tuple[dict, dict]:
    """``(params, fixed)`` of a block's local heads under ``rule``.

    pred: the decoder ``decoder_y`` (weight zero; bias PyTorch's default, zero
    for -bio), reading ``geom.dim_in`` features, C outputs (T for -bio, whose
    error comes back through the fixed ``decoder_y.weight_fa``); -bio: the
    label projection ``proj_y.weight`` P; sim: the learned head NN
    (:func:`init_sim_head`; -bio has none).
    """
    p = f"{block.name}."
    xp, seed, dtype, C, T = init.xp, init.seed, init.dtype, init.num_classes, init.proj_size
    params, fixed = {}, {}
    if rule.pred:
        out_dim = T if rule.bio else C
        params[p + "decoder_y.weight"] = xp.zeros((out_dim, geom.dim_in), dtype=dtype)
        params[p + "decoder_y.bias"] = (xp.zeros(out_dim, dtype=dtype) if rule.bio else
                                        init_uniform(xp, seed, p + "decoder_y.bias", (out_dim,),
                                                     geom.dim_in, dtype))
        if rule.bio:
            fixed[p + "decoder_y.weight_fa"] = feedback.bio_decoder_feedback(
                xp, seed, block.index, (out_dim, geom.dim_in), dtype=dtype)
    if rule.bio:
        fixed[p + "proj_y.weight"] = feedback.label_projection(xp, seed, block.index, C, size=T,
                                                               dtype=dtype)
    if rule.sim and not rule.bio:
        params.update(init_sim_head(block, init))
    return params, fixed


def decoder_input(h, geom, *, k):
    """``h`` average-pooled as the decoder reads it (SPEC §2), flattened.

    Returns ``(f, cache)``: f (n, geom.dim_in). Padding counts in the mean.
    """
    cache = None
    x = h
    if geom.pool_kernel is not None:
        x, cache = k.avgpool2d_forward(h, kernel=geom.pool_kernel, pad=geom.pool_pad)
    return x.reshape(x.shape[0], -1), (cache, x.shape)  # (n, dim_in)


def decoder_input_backward(df, cache, *, k):
    pool_cache, shape = cache
    dx = df.reshape(shape)
    if pool_cache is not None:
        dx = k.avgpool2d_backward(dx, pool_cache)
    return dx


def pred_loss(h, y, W, b, geom, scale: float = 1.0, *, k):
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
    f, fcache = decoder_input(h, geom, k=k)
    y_hat, lin = k.linear_forward(f, W, b)  # (n, C)
    L, dy_hat = k.softmax_cross_entropy(y_hat, y)
    df, dW, db = k.linear_backward(scale * dy_hat, lin, B=W)
    return losses.value(L, scale), {"decoder_y.weight": dW, "decoder_y.bias": db}, \
        decoder_input_backward(df, fcache, k=k), y_hat


def bio_target(Y, P):
    r"""The binarised random projection of the labels, :math:`t = 1[P y > 0]` (n, T)."""
    return (Y @ P.T > 0).astype(Y.dtype)


def pred_bio_loss(h, Y, W, b, B, P, geom, scale: float = 1.0, *, k):
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
    f, fcache = decoder_input(h, geom, k=k)
    z, lin = k.linear_forward(f, W, b)  # (n, T)
    L, dz = k.bce_with_logits(z, bio_target(Y, P))
    df, dW, db = k.linear_backward(scale * dz, lin, B=B)
    return losses.value(L, scale), {"decoder_y.weight": dW, "decoder_y.bias": db}, \
        decoder_input_backward(df, fcache, k=k), z


def sim_loss_learned(h, Y, W_nn, kind: str, scale: float = 1.0, *, k):
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
        r, nn_cache = k.conv2d_forward(h, W_nn, None, stride=1, pad=1)
    else:
        r, nn_cache = k.linear_forward(h, W_nn, None)
    R_h, s_cache = k.similarity_matrix_forward(r)  # (n, n)
    R_y, _ = k.similarity_matrix_forward(Y)
    L, dR = k.sim_loss(R_h, R_y)
    dr = k.similarity_matrix_backward(scale * dR, s_cache)
    if kind == "conv":
        dh, dW, _ = k.conv2d_backward(dr, nn_cache, B=W_nn)
    else:
        dh, dW, _ = k.linear_backward(dr, nn_cache, B=W_nn)
    return losses.value(L, scale), {SIM_HEAD[kind]: dW}, dh


def sim_bio_loss(h, Y, P, geom, scale: float = 1.0, *, k):
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
        x, pool_cache = k.avgpool2d_forward(h, kernel=geom.pool_kernel, pad=geom.pool_pad)
    R_h, s_cache = k.similarity_matrix_forward(x)
    R_y, _ = k.similarity_matrix_forward(Y @ P.T)  # (n, T) -> (n, n)
    L, dR = k.sim_loss(R_h, R_y)
    dx = k.similarity_matrix_backward(scale * dR, s_cache)
    if pool_cache is not None:
        dx = k.avgpool2d_backward(dx, pool_cache)
    return losses.value(L, scale), {}, dx


def local_block_update(model, block, geom, h, y, Y) -> LocalResult:
    r"""All local losses of one block under ``model.rule``, combined with the rule's weights.

    Notes
    -----
    :math:`L = w_{pred} L_{pred} + w_{sim} L_{sim}` with the weights of
    ``model.weights`` (:meth:`bioplaus.rules.registry.RuleInfo.weights`:
    :math:`1-\beta` and :math:`\beta` for predsim(-bio), 1 otherwise).
    Returns gradients keyed by full parameter name.
    """
    rule, k = model.rule, model.k
    p = f"{block.name}."
    prm, fx = model.params, model.fixed
    w_pred, w_sim = model.weights.pred, model.weights.sim
    grads, dh, y_hat = {}, None, None
    loss_pred = loss_sim = 0.0
    if rule.pred and w_pred != 0.0:
        if rule.bio:
            loss_pred, g, dh_p, y_hat = pred_bio_loss(
                h, Y, prm[p + "decoder_y.weight"], prm[p + "decoder_y.bias"],
                fx[p + "decoder_y.weight_fa"], fx[p + "proj_y.weight"], geom, w_pred, k=k)
        else:
            loss_pred, g, dh_p, y_hat = pred_loss(h, y, prm[p + "decoder_y.weight"],
                                                  prm[p + "decoder_y.bias"], geom, w_pred, k=k)
        grads.update({p + k: v for k, v in g.items()})
        dh = dh_p
    if rule.sim and w_sim != 0.0:
        if rule.bio:
            loss_sim, g, dh_s = sim_bio_loss(h, Y, fx[p + "proj_y.weight"], geom, w_sim, k=k)
        else:
            loss_sim, g, dh_s = sim_loss_learned(h, Y, prm[p + SIM_HEAD[block.kind]], block.kind,
                                                 w_sim, k=k)
        grads.update({p + k: v for k, v in g.items()})
        if dh is not None:
            # dh_s is the sim loss's fresh error array (no cache holds it): add in place
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


def block_update(model, i: int, out, h, cache, y, Y):
    """Block ``i``'s update under a local rule: ``(grads, dh, stats, y_hat)``.

    ``dh`` is the error at ``h``, to be carried through the block's own f',
    batch norm and encoder; ``y_hat`` the decoder's outputs (None without pred).
    """
    r = local_block_update(model, model.spec.blocks[i], model.heads[i], h, y, Y)
    return dict(r.grads), r.dh, {"loss": r.loss, "loss_pred": r.loss_pred,
                                 "loss_sim": r.loss_sim}, r.y_hat


def exit_scores(model, i: int, h, out):
    """Block ``i``'s decoder outputs in evaluation (None for rules without pred)."""
    if not model.rule.pred:
        return None
    p = f"{model.spec.blocks[i].name}."
    f, _ = decoder_input(h, model.heads[i], k=model.k)
    y_hat, _ = model.k.linear_forward(f, model.params[p + "decoder_y.weight"],
                                      model.params[p + "decoder_y.bias"])
    return y_hat


def head_macs(model, i: int) -> int:
    """Multiply-accumulates per example of block i's local decoder (0 without one)."""
    if not model.rule.pred:
        return 0
    return model.params[f"{model.spec.blocks[i].name}.decoder_y.weight"].shape[0] * \
        model.heads[i].dim_in

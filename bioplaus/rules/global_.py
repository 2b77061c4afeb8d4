r"""Global rules: one output error sent down the whole net.

* ``backprop``: the error crosses each encoder through its own ``W``
  (weight transport).
* ``fa`` (feedback alignment; the baseline of Mostafa et al. 2018): the
  error crosses each encoder, and the output layer, through a fixed random
  ``B`` of ``W``'s shape, with each layer's exact activation derivative,
  batch norm, max-pool routing to the winner and the forward dropout masks.
* ``glob+sim`` (Nøkland & Eidnes 2019, Table 9): backprop of the output
  cross-entropy plus every block's sim loss; nothing is detached, so each
  sim loss's error also flows into the blocks below.

As a rule module (see :mod:`bioplaus.rules`): :func:`init_heads`,
:func:`init_output` and :func:`global_updates`; no early exits.
"""
from __future__ import annotations

from bioplaus import feedback, losses
from bioplaus.net.block import block_backward_from_h, block_backward_to_h
from bioplaus.net.forward import forward_block, output_layer
from bioplaus.rules.local import SIM_HEAD, init_sim_head, sim_loss_learned

BLOCKWISE = False  # one error, sent down the whole net after the forward


def init_heads(rule, block, geom, init) -> tuple[dict, dict]:
    """``(params, fixed)``: glob+sim's learned similarity head; fa's fixed
    feedback ``encoder.weight_fa`` (B, of the encoder's shape)."""
    params, fixed = {}, {}
    if rule.sim:
        params.update(init_sim_head(block, init))
    if rule.feedback == "B":
        fixed[f"{block.name}.encoder.weight_fa"] = feedback.fa_matrix(
            init.xp, init.seed, block.index, block.encoder_shape, dtype=init.dtype,
            scheme=init.scheme)
    return params, fixed


def init_output(rule, spec, init) -> dict:
    """fa's fixed feedback of the output layer, ``<out>.weight_fa``."""
    if rule.feedback != "B":
        return {}
    return {spec.out_name + ".weight_fa": feedback.fa_matrix(
        init.xp, init.seed, len(spec.blocks), (init.num_classes, spec.out_in), dtype=init.dtype,
        scheme=init.scheme)}


def fa_feedback(model, layer, index, W):
    """The matrix that carries the error across layer ``layer`` (``'<block>.encoder'``
    or the output layer's name; ``index`` its stream index, ``W`` its weight): fa's
    fixed ``B``, or None for ``W`` itself (backprop, glob+sim)."""
    if model.rule.feedback == "B":
        return model.fixed[layer + ".weight_fa"]
    return None


def global_updates(model, x, y, Y, masks, *, training=True, step=0, feedback=fa_feedback):
    r"""Gradients of every parameter for one batch under a global rule.

    Returns ``(grads, logits, stats)``; ``stats`` holds the global loss and,
    for glob+sim, each block's sim loss. ``feedback(model, layer, index, W)``
    gives the matrix that carries the error across each weight layer
    (:func:`fa_feedback`; the sign-concordant rules pass their own,
    :mod:`bioplaus.rules.signsym`); ``step`` is the training step (unused here).

    Notes
    -----
    Backward recursion from the top, with :math:`B_l = W_l` (backprop) or a
    fixed random matrix (fa): :math:`\delta_L = (\mathrm{softmax}(z) - Y)/n`,
    :math:`dh_l = \mathrm{route}_{pool, mask}(B_{l+1}^T \delta_{l+1})
    [+ \partial L_{sim,l} / \partial h_l]`.
    """
    rule, k = model.rule, model.k
    spec = model.spec
    caches, hs = [], []
    a = x
    for i, b in enumerate(spec.blocks):
        a, h, cache = forward_block(model, b, a, masks[i], training)
        caches.append(cache)
        hs.append(h)
    o = spec.out_name + "."
    logits, lin = output_layer(model, a)
    L, dlogits = k.softmax_cross_entropy(logits, y)
    stats = {"loss_global": losses.value(L), "blocks": []}
    B = feedback(model, spec.out_name, len(spec.blocks), model.params[o + "weight"])
    df, dW, db = k.linear_backward(dlogits, lin, B=B)
    grads = {o + "weight": dW, o + "bias": db}
    d = df.reshape(a.shape)
    sim_stats = [0.0] * len(spec.blocks)
    for i in range(len(spec.blocks) - 1, -1, -1):
        b = spec.blocks[i]
        p = f"{b.name}."
        dh = block_backward_to_h(d, caches[i], k=k)
        if rule.sim:
            Ls, g, dh_s = sim_loss_learned(hs[i], Y, model.params[p + SIM_HEAD[b.kind]], b.kind,
                                           model.weights.sim, k=k)
            grads.update({p + k: v for k, v in g.items()})
            dh = dh + dh_s
            sim_stats[i] = Ls
        B = feedback(model, p + "encoder", i, model.params[p + "encoder.weight"]) if i > 0 else None
        d, g = block_backward_from_h(b, dh, caches[i], model.nonlin, k=k, B=B, need_dx=i > 0)
        grads.update(g)
    stats["blocks"] = [{"loss_sim": s} for s in sim_stats]
    return grads, logits, stats

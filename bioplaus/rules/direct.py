r"""Direct feedback: ``dfa`` (Nøkland 2016) and ``drtp`` (Frenkel, Lefebvre & Bol 2021).

Every hidden layer l receives its error straight from the top through a
fixed random ``B_l`` (C x N_l, :func:`bioplaus.feedback.direct_matrix`),
not from the layer above: at the block's output before the max-pool,
through its dropout mask, :math:`dh_l = m_l \odot (s B_l)`, then
:math:`\delta_l = dh_l \odot f'(a_l)` (and batch norm where the net has
it), with

* ``dfa``: ``s = e``, the output error :math:`(\mathrm{softmax}(z) - Y)/n`;
* ``drtp``: ``s = Y``, the one-hot target itself (Frenkel et al.'s
  convention, as their code ``labels.mm(B)``: the target stands in for
  the error's sign, no 1/n), so no output error reaches any hidden layer
  and each layer can update as soon as its forward is done.

The output layer uses its true gradient. No error crosses a max-pool or a
forward weight. As a rule module (see :mod:`bioplaus.rules`):
:func:`init_heads`, :func:`global_updates`.
"""
from __future__ import annotations

import math

from bioplaus import feedback as fb
from bioplaus import losses
from bioplaus.net.block import block_backward_from_h
from bioplaus.net.forward import forward_block, output_layer

BLOCKWISE = False

#: The fixed direct feedback of a block: ``<block>.direct.weight_fa`` (C, N_l).
B_NAME = ".direct.weight_fa"

_PURPOSE = {"direct-error": fb.PURPOSE_DFA, "direct-target": fb.PURPOSE_DRTP}


def init_heads(rule, block, geom, init) -> tuple[dict, dict]:
    """The block's fixed ``B_l`` (C, N_l), N_l the block's width before the pool."""
    width = math.prod(block.h_shape)
    return {}, {block.name + B_NAME: fb.direct_matrix(
        _PURPOSE[rule.feedback], init.xp, init.seed, block.index, init.num_classes, width,
        init.dtype, init.scheme)}


def global_updates(model, x, y, Y, masks, *, training=True, step=0):
    r"""Gradients of every parameter for one batch under dfa or drtp.

    Returns ``(grads, logits, stats)`` as :func:`bioplaus.rules.global_.global_updates`.

    Notes
    -----
    :math:`e = (\mathrm{softmax}(z) - Y)/n`; :math:`dW_{out} = e^T x_{L+1}`;
    for every block :math:`dh_l = m_l \odot \mathrm{reshape}(s\,B_l)` with
    :math:`s = e` (dfa) or :math:`s = Y` (drtp), then the block's own
    backward from ``h`` (:func:`bioplaus.net.block.block_backward_from_h`).
    """
    spec, k = model.spec, model.k
    caches, hs = [], []
    a = x
    for i, b in enumerate(spec.blocks):
        a, h, cache = forward_block(model, b, a, masks[i], training, pool_backward=False)
        caches.append(cache)
        hs.append(h.shape)
    o = spec.out_name + "."
    logits, lin = output_layer(model, a)
    L, e = k.softmax_cross_entropy(logits, y)
    _, dW, db = k.linear_backward(e, lin, need_dx=False)
    grads = {o + "weight": dW, o + "bias": db}
    s = e if model.rule.feedback == "direct-error" else Y
    for i, b in enumerate(spec.blocks):
        dh = (s @ model.fixed[b.name + B_NAME]).reshape(hs[i])
        dh = k.dropout_backward(dh, caches[i].drop)
        _, g = block_backward_from_h(b, dh, caches[i], model.nonlin, k=k, need_dx=False)
        grads.update(g)
    stats = {"loss_global": losses.value(L), "blocks": [{"loss_sim": 0.0} for _ in spec.blocks]}
    return grads, logits, stats

"""The model's forward pieces that the rules, the training loop and the evaluation share.

:func:`forward_block` runs one hidden block of a :class:`~bioplaus.net.model.Model`
(and keeps its running statistics up to date in training),
:func:`output_layer` the linear output layer, :func:`dropout_masks` draws
every block's dropout mask for one step. The ops go through the model's
kernels ``model.k``.
"""
from __future__ import annotations

from bioplaus import backend
from bioplaus.net.block import block_forward
from bioplaus.ops import dropout as drop_ops


def dropout_masks(model, batch_n: int, p: float, seed: int, step: int):
    """Dropout masks for every block for global step ``step``, drawn on the host
    from streams keyed by (seed, 'dropout.<block>', step): identical on NumPy
    and CuPy, and a resumed run redraws exactly the masks it would have drawn."""
    if p <= 0.0:
        return [None] * len(model.spec.blocks)
    masks = []
    for b in model.spec.blocks:
        rng = backend.stream(seed, f"dropout.{b.index}", step)
        masks.append(drop_ops.dropout_mask(rng, model.xp, (batch_n,) + b.h_shape, p,
                                           channel=b.kind == "conv", dtype=model.dtype))
    return masks


def forward_block(model, b, x, mask, training, pool_backward=True):
    """Forward block ``b``; in training its running statistics are updated in the model.

    ``pool_backward``: whether an error will come back through the block's
    max-pool (global and frc rules); see :func:`bioplaus.net.block.block_forward`.
    """
    cfg = model.cfg
    out, h, cache, nb = block_forward(b, model.params, model.buffers, x, k=model.k,
                                      training=training, mask=mask, nonlin=model.nonlin,
                                      bn_momentum=cfg.bn_momentum if cfg else 0.1,
                                      bn_eps=cfg.bn_eps if cfg else 1e-5,
                                      pool_backward=pool_backward)
    if training:
        model.buffers.update(nb)
    return out, h, cache


def output_layer(model, a):
    """The output layer's scores ``(logits, cache)`` for the last block's output ``a``."""
    o = model.spec.out_name + "."
    f = a.reshape(a.shape[0], -1)  # (n, out_in)
    return model.k.linear_forward(f, model.params[o + "weight"], model.params[o + "bias"])

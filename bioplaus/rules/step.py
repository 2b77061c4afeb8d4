r"""One training step of any rule, block by block.

:func:`step_updates` yields ``(group, grads, stats)`` as soon as a
parameter group's update direction is known: under local rules that is
right after the block's own forward (Nøkland & Eidnes 2019, Sec. 3: "each
block is updated as soon as its local loss is known"), so the caller can
step the block's optimizer and drop its activations before the next block
runs; under global rules the groups come out top-down during the backward.
Rules never touch parameters; the caller's optimizer does.
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus import losses
from bioplaus.net.block import block_backward_from_h
from bioplaus.net.forward import forward_block, output_layer


class Update(NamedTuple):
    group: str
    grads: dict
    stats: dict


def step_updates(model, x, y, masks, *, training=True, step=0):
    """Yield :class:`Update` for every parameter group of one training step.

    ``x`` (n, c, h, w) float, ``y`` (n,) int; ``masks`` from
    :func:`bioplaus.net.forward.dropout_masks`. Each block's stats: ``loss``,
    ``loss_pred``, ``loss_sim``, ``correct`` (its local classifier's correct
    count, or None); the output layer's: ``loss_global`` and ``correct``. Every
    statistic is a 0-d array left on the model's device (or a Python 0.0):
    nothing in a step reads back to the host; the caller reads them when it
    reports (:meth:`bioplaus.train.Trainer.read_stats`).
    What the rule computes comes from its module, ``model.rule.impl``
    (see :mod:`bioplaus.rules`); ``step`` (the run's global step) keys the
    random feedback a rule redraws every batch (brsf).
    """
    impl = model.rule.impl
    xp, k = model.xp, model.k
    Y = losses.one_hot(y, model.spec.num_classes, model.dtype, xp)
    if not impl.BLOCKWISE:
        grads, logits, stats = impl.global_updates(model, x, y, Y, masks, training=training,
                                                   step=step)
        correct = (xp.argmax(logits, axis=1) == y).sum()
        for i, b in enumerate(model.spec.blocks):
            p = f"{b.name}."
            g = {k: v for k, v in grads.items() if k.startswith(p)}
            bs = stats["blocks"][i]
            yield Update(b.name, g, {"loss": bs["loss_sim"], "loss_pred": 0.0,
                                     "loss_sim": bs["loss_sim"], "correct": None})
        o = model.spec.out_name + "."
        yield Update(model.spec.out_name, {k: v for k, v in grads.items() if k.startswith(o)},
                     {"loss_global": stats["loss_global"], "correct": correct})
        return
    a = yield from block_updates(model, x, y, Y, masks, training)
    yield output_update(model, a, y)


def block_updates(model, a, y, Y, masks, training=True):
    """Yield the :class:`Update` of every hidden block of ``model.spec.blocks``
    under a blockwise rule, fed ``a``; return the last block's output.

    ``masks[i]`` belongs to ``model.spec.blocks[i]``. A pipeline stage runs
    this on its own blocks (:mod:`bioplaus.pipeline`): nothing but ``a`` and
    the labels crosses between blocks.
    """
    impl, k = model.rule.impl, model.k
    for i, b in enumerate(model.spec.blocks):
        # a local loss reads h, and the output goes on detached: no error comes
        # back through the pool unless the rule's loss reads the pooled output
        out, h, cache = forward_block(model, b, a, masks[i], training,
                                      pool_backward=impl.READS_OUTPUT)
        grads, dh, st, y_hat = impl.block_update(model, i, out, h, cache, y, Y)
        _, g = block_backward_from_h(b, dh, cache, model.nonlin, k=k, need_dx=False)
        grads.update(g)
        st["correct"] = (None if y_hat is None else
                         (impl.exit_prediction(model, i, y_hat) == y).sum())
        # drop this block's activations before handing over: a local rule holds
        # one block's activations at a time, whatever the depth
        del h, cache, dh, g, y_hat
        a = out  # the next block receives the dropped-out output, detached
        del out
        yield Update(b.name, grads, st)
        del grads
    return a


def output_update(model, a, y) -> Update:
    """The output layer's :class:`Update` under a blockwise rule, fed the last block's output ``a``."""
    xp, k = model.xp, model.k
    logits, lin = output_layer(model, a)
    L, dlogits = k.softmax_cross_entropy(logits, y)
    scale = model.weights.out
    _, dW, db = k.linear_backward(scale * dlogits, lin, need_dx=False)
    o = model.spec.out_name + "."
    return Update(model.spec.out_name, {o + "weight": dW, o + "bias": db},
                  {"loss_global": losses.value(L, scale),
                   "correct": (xp.argmax(logits, axis=1) == y).sum()})

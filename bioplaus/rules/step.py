r"""One training step of any rule, block by block, and the evaluation forward.

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

from bioplaus import backend, losses
from bioplaus.blocks import block_backward_from_h, block_backward_to_h, block_forward
from bioplaus.ops import dropout as drop_ops
from bioplaus.ops import linear as lin_ops
from bioplaus.rules.frc import frc_block_update
from bioplaus.rules.global_ import global_updates
from bioplaus.rules.local import decoder_input, local_block_update


class Update(NamedTuple):
    group: str
    grads: dict
    stats: dict


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
    max-pool (global and frc rules); see :func:`bioplaus.blocks.block_forward`.
    """
    cfg = model.cfg
    out, h, cache, nb = block_forward(b, model.params, model.buffers, x, training=training,
                                      mask=mask, nonlin=model.nonlin,
                                      bn_momentum=cfg.bn_momentum if cfg else 0.1,
                                      bn_eps=cfg.bn_eps if cfg else 1e-5,
                                      pool_backward=pool_backward)
    if training:
        model.buffers.update(nb)
    return out, h, cache


def bio_codes(model, b):
    """The binary target code of every class for block ``b``: rows 1[P e_c > 0] (C, T)."""
    P = model.fixed[f"{b.name}.proj_y.weight"]  # (T, C)
    return (P.T > 0).astype(P.dtype)


def exit_prediction(model, b, y_hat):
    """Class predicted by block ``b``'s local classifier from its outputs.

    pred / frc: the arg-max score. pred-bio's decoder predicts the label's
    binary code ``1[P y > 0]``; its class is the code of highest likelihood,
    which for independent Bernoulli outputs is ``argmax_c z . t_c``.
    """
    xp = backend.array_module(y_hat)
    if model.rule.bio:
        y_hat = y_hat @ bio_codes(model, b).T  # (n, C)
    return xp.argmax(y_hat, axis=1)


def output_layer(model, a):
    o = model.spec.out_name + "."
    f = a.reshape(a.shape[0], -1)  # (n, out_in)
    return lin_ops.linear_forward(f, model.params[o + "weight"], model.params[o + "bias"])


def step_updates(model, x, y, masks, *, training=True):
    """Yield :class:`Update` for every parameter group of one training step.

    ``x`` (n, c, h, w) float, ``y`` (n,) int; ``masks`` from :func:`dropout_masks`.
    Each block's stats: ``loss``, ``loss_pred``, ``loss_sim``, ``correct``
    (its local classifier's correct count, or None); the output layer's:
    ``loss_global`` and ``correct``.
    """
    rule = model.rule
    xp = model.xp
    Y = losses.one_hot(y, model.spec.num_classes, model.dtype, xp)
    if rule.family == "global":
        grads, logits, stats = global_updates(model, x, y, Y, masks, training=training)
        correct = int((xp.argmax(logits, axis=1) == y).sum())
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
    a = x
    for i, b in enumerate(model.spec.blocks):
        # a local loss reads h, and the output goes on detached: no error comes
        # back through the pool; frc's fixed classifier reads the pooled output
        out, h, cache = forward_block(model, b, a, masks[i], training,
                                      pool_backward=rule.family != "local")
        if rule.family == "local":
            r = local_block_update(model, b, model.heads[i], h, y, Y)
            dh, grads, y_hat = r.dh, dict(r.grads), r.y_hat
            st = {"loss": r.loss, "loss_pred": r.loss_pred, "loss_sim": r.loss_sim}
        else:
            L, grads, d_out, y_hat = frc_block_update(model, b, out, y)
            dh = block_backward_to_h(d_out, cache)
            st = {"loss": L, "loss_pred": L, "loss_sim": 0.0}
        _, g = block_backward_from_h(b, dh, cache, model.nonlin, need_dx=False)
        grads.update(g)
        st["correct"] = None if y_hat is None else int((exit_prediction(model, b, y_hat) == y).sum())
        # drop this block's activations before handing over: a local rule holds
        # one block's activations at a time, whatever the depth
        del h, cache, dh, g, y_hat
        if rule.family == "local":
            del r
        else:
            del d_out
        a = out  # the next block receives the dropped-out output, detached
        del out
        yield Update(b.name, grads, st)
        del grads
    logits, lin = output_layer(model, a)
    L, dlogits = losses.softmax_cross_entropy(logits, y)
    scale = (1.0 - model.beta) if rule.uses_beta else 1.0
    _, dW, db = lin_ops.linear_backward(scale * dlogits, lin, need_dx=False)
    o = model.spec.out_name + "."
    yield Update(model.spec.out_name, {o + "weight": dW, o + "bias": db},
                 {"loss_global": scale * float(L),
                  "correct": int((xp.argmax(logits, axis=1) == y).sum())})


def has_exits(model) -> bool:
    """Whether the rule gives every block a local classifier (an early exit)."""
    return bool(model.rule.pred or model.rule.frc)


def evaluate_batch(model, x):
    """Evaluation forward (running statistics, no dropout).

    Returns ``(logits, exits)``: ``exits[i]`` is block i's local classifier
    prediction (n,) or None when the rule has no local classifier.
    """
    exits = []
    a = x
    rule = model.rule
    for i, b in enumerate(model.spec.blocks):
        out, h, _ = forward_block(model, b, a, None, False, pool_backward=False)
        pred = None
        p = f"{b.name}."
        if rule.pred:
            f, _ = decoder_input(h, model.heads[i])
            y_hat, _ = lin_ops.linear_forward(f, model.params[p + "decoder_y.weight"],
                                              model.params[p + "decoder_y.bias"])
            pred = exit_prediction(model, b, y_hat)
        elif rule.frc:
            M = model.params.get(p + "frc.M")
            M = model.fixed[p + "frc.M"] if M is None else M
            y_l = out.reshape(out.shape[0], -1) @ M.T
            pred = exit_prediction(model, b, y_l)
        exits.append(pred)
        a = out
    logits, _ = output_layer(model, a)
    return logits, exits

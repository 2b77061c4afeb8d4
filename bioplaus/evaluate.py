"""Evaluation: the output layer's error and every local classifier's (early-exit) error.

Mostafa et al. (2018, Sec. 4) read every layer's local classifier as an
early exit: error at each depth against the compute spent to reach it.
:func:`exit_table` gives those rows, with multiply-accumulates per example.
"""
from __future__ import annotations

import numpy as np

from bioplaus import backend
from bioplaus.net.forward import forward_block, output_layer


def evaluate_batch(model, x):
    """Evaluation forward (running statistics, no dropout).

    Returns ``(logits, exits)``: ``exits[i]`` is block i's local classifier
    prediction (n,) or None when the rule has no local classifier (the rule
    module's ``exit_scores`` gives None, or it has none).
    """
    impl = model.rule.impl
    exit_scores = getattr(impl, "exit_scores", None)
    exits = []
    a = x
    for i, b in enumerate(model.spec.blocks):
        out, h, _ = forward_block(model, b, a, None, False, pool_backward=False)
        scores = None if exit_scores is None else exit_scores(model, i, h, out)
        exits.append(None if scores is None else impl.exit_prediction(model, i, scores))
        a = out
    logits, _ = output_layer(model, a)
    return logits, exits


def evaluate(model, batches, split: str = "test") -> dict:
    """Error (%) and mean loss of the output layer, and each block's exit error.

    ``batches`` yields (x, y) on the model's device. Running statistics,
    no dropout. ``exit_errors[i]`` is None for a block without a classifier.
    Nothing is read back to the host per batch: the losses and counts are read
    in one transfer at the end.
    """
    # per batch: (m, [loss, correct, each exit's correct or None]), left on the device
    # until the end, where they are read in one transfer and summed in batch order
    rows = []
    for x, y in batches:
        logits, exits = evaluate_batch(model, x)
        L, _ = model.k.softmax_cross_entropy(logits, y)
        rows.append((int(y.shape[0]), [L, (logits.argmax(axis=1) == y).sum()]
                     + [None if e is None else (e == y).sum() for e in exits]))
    n, correct, loss_sum, exit_correct = 0, 0, 0.0, None
    if rows:
        flat = [v for _, r in rows for v in r if v is not None]
        # one stack (the model's float losses and integer counts), one transfer, in float64
        values = iter(backend.to_numpy(model.xp.stack(flat).astype(np.float64)).tolist())
        exit_correct = [None if v is None else 0 for v in rows[0][1][2:]]
        for m, r in rows:
            L, c, *ex = [None if v is None else next(values) for v in r]
            loss_sum += L * m
            correct += int(c)
            for i, e in enumerate(ex):
                if e is not None:
                    exit_correct[i] += int(e)
            n += m
    n = max(n, 1)
    scale = model.weights.out  # as the reference prints it
    return {"split": split, "examples": n, "loss": scale * loss_sum / n,
            "error": 100.0 * (1 - correct / n),
            "exit_errors": [None if c is None else 100.0 * (1 - c / n)
                            for c in (exit_correct or [None] * len(model.spec.blocks))]}


def head_macs(model, i: int) -> int:
    """Multiply-accumulates per example of block i's local classifier (0 without one)."""
    macs = getattr(model.rule.impl, "head_macs", None)
    return 0 if macs is None else macs(model, i)


def exit_table(model, result: dict) -> list[dict]:
    """Rows (exit, error %, MACs per example to reach it) for every exit and the output."""
    rows = []
    cum = 0
    for i, b in enumerate(model.spec.blocks):
        cum += b.macs
        err = result["exit_errors"][i]
        if err is not None:
            rows.append({"exit": f"{b.name} (block {i})", "error": err,
                         "macs": cum + head_macs(model, i)})
    out_macs = cum + model.spec.out_in * model.spec.num_classes
    rows.append({"exit": f"{model.spec.out_name} (output)", "error": result["error"],
                 "macs": out_macs})
    return rows

r"""The matrix-product FLOPs of one training step, counted from the shapes.

What the FLOP count includes (2 FLOPs per multiply-accumulate, matrix
products only): encoders forward and their weight gradients (and the
error sent to the block's input under global rules, but not into the
first block), local decoders (forward, weight gradient, error to ``h``),
the label projection and code matrices of the bio rules, the learned sim
head (conv 3x3 or linear: forward, weight gradient, error to ``h``),
similarity matrices (forward and backward of ``S(r)``, forward of the
target's), Mostafa's local classifiers and the output layer. Not counted:
batch norm, nonlinearities, pooling, dropout, softmax, the average pools
of the decoders and the optimizer: elementwise work, small next to the
products at these shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step, by part (see the module notes for what is counted)."""

    encoders: float
    heads: float
    similarity: float
    output: float

    @property
    def total(self) -> float:
        return self.encoders + self.heads + self.similarity + self.output


def _sim_dim(c: int, hh: int, ww: int) -> int:
    """Features of ``S(x)`` for a 4-D x of (c, hh, ww): each map reduced to its std
    when c > 3 and hh > 1 (SPEC §1), else flattened."""
    return c if (c > 3 and hh > 1) else c * hh * ww


def step_flops(model, n: int) -> StepFlops:
    r"""Count the matrix-product FLOPs of one training step of ``model`` at batch ``n``.

    Notes
    -----
    A product of an (a x b) and a (b x c) matrix costs :math:`2abc` FLOPs.
    Per block with :math:`M` encoder MACs per example
    (conv: :math:`c_{out} c_{in} k^2 o^2`; linear: :math:`d_{out} d_{in}`):
    forward :math:`2nM`, weight gradient :math:`2nM`, and under global
    rules the error to the input :math:`2nM` (not into the first block).
    Local heads: decoder (``dim_in`` -> C, or -> T = 128 for bio) three
    products; learned sim head three products of :math:`c^2 9 o^2` (conv) or
    :math:`d^2` (linear) MACs; ``S(r)`` forward and backward :math:`2n^2 d`
    each, the target's :math:`2n^2 C` (bio: :math:`2nCT + 2n^2T`).
    Mostafa's classifier ``M`` (C x N): forward and error, plus ``dM`` when
    trained. Output layer (C x d): forward and weight gradient, plus the
    error under global rules.
    """
    rule, spec = model.rule, model.spec
    C = spec.num_classes
    T = int(model.cfg.target_proj_size) if model.cfg is not None else 128
    glob = rule.family == "global"
    enc = heads = sim = 0.0
    for i, b in enumerate(spec.blocks):
        macs = b.macs
        enc += 2 * n * macs * (2 + (1 if glob and i > 0 else 0))
        c, o = b.n_out, b.out_hw
        if rule.family == "local" and rule.pred:
            out_dim = T if rule.bio else C
            heads += 3 * 2 * n * model.heads[i].dim_in * out_dim
            if rule.bio:
                heads += 2 * n * C * T + 2 * n * T * C  # target projection, class codes of the exit
        if rule.sim and not rule.bio:  # learned NN head: local sim, predsim, glob+sim
            nn_macs = c * c * 9 * o * o if b.kind == "conv" else c * c
            heads += 3 * 2 * n * nn_macs
            d = _sim_dim(c, o, o) if b.kind == "conv" else c
            sim += 2 * (2 * n * n * d) + 2 * n * n * C
        elif rule.sim and rule.bio:
            geom = model.heads[i]
            if b.kind != "conv":
                d = c
            elif geom.pool_kernel is None:
                d = _sim_dim(c, o, o)
            else:  # sim-bio reads h average-pooled as the decoder does
                (kh, kw), (ph, pw) = geom.pool_kernel, geom.pool_pad
                d = _sim_dim(c, (o + 2 * ph - kh) // kh + 1, (o + 2 * pw - kw) // kw + 1)
            sim += 2 * (2 * n * n * d) + 2 * n * C * T + 2 * n * n * T
        if rule.family == "frc":
            N = int(np.prod(b.out_shape))
            heads += 2 * 2 * n * N * C + (2 * n * N * C if rule.frc == "trainable" else 0)
    out = 2 * n * spec.out_in * C * (3 if glob else 2)
    return StepFlops(float(enc), float(heads), float(sim), float(out))

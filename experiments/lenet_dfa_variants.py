"""Where does bioplaus's LeNet dfa lose to biotorch's?  Three placements of the direct error.

bioplaus's ``dfa`` (:mod:`bioplaus.rules.direct`) sends the output error ``e``
to every hidden block through a dense ``B_l`` (C x C_l*h*w) at the block's
output *before* its max-pool, so every position of a pooled map receives an
error, the max-pool's losers included. biotorch's conv DFA instead gives the
error at a layer's *input* (the block below's pooled output), through one
small kernel shared over all positions, and lets it reach the convolution
through the max-pool's backward (winners only). This script trains LeNet on
the recipe ``runs/fashion-mnist/lenet-dfa.toml`` (fewer epochs) under

* ``ours``: bioplaus's dfa, unchanged (the control: it must repeat the
  recorded run's first epochs);
* ``post-pool``: a dense ``B_l`` (C x C_l*h'*w') at the pooled output,
  routed through the max-pool and dropout's backward;
* ``shared``: ``B_l`` (C x C_l), the same error at every position of the
  pooled output (biotorch's transposed convolution of a constant map,
  without its border effects), routed through the max-pool; drawn at the
  dense post-pool B's bound, so each position's error is as large as under
  ``post-pool`` and only the sharing differs (at Xavier's bound for C x C_l
  the errors are ~20x larger and lr 1e-4 diverges in the first epoch).

Blocks without a pool (conv3, fc1) are the same under all three. Each B is
drawn at Xavier's bound for its shape from bioplaus's DFA stream. The rule
is swapped in this process only (no file of the package is changed).

    python experiments/lenet_dfa_variants.py --variant shared --epochs 5 --out out/dfa-shared
    python experiments/lenet_dfa_variants.py --variant shared --out out/dfa-shared --resume
"""
from __future__ import annotations

import argparse
import math

from bioplaus import feedback as fb
from bioplaus.net.block import block_backward_from_h, block_backward_to_h
from bioplaus.net.forward import forward_block, output_layer
from bioplaus.rules import direct
from bioplaus import losses

VARIANTS = ("ours", "post-pool", "shared")


def _width(block, variant):
    if variant == "ours" or not block.pool:
        return math.prod(block.h_shape)
    hw = block.out_hw // 2
    return block.n_out * (hw * hw if variant == "post-pool" else 1)


def make_rule(variant):
    def init_heads(rule, block, geom, init):
        B = fb.direct_matrix(fb.PURPOSE_DFA, init.xp, init.seed, block.index,
                             init.num_classes, _width(block, variant), init.dtype, init.scheme)
        if variant == "shared" and block.pool:
            # the bound of the dense post-pool B, so that each position's error has
            # the same size as under post-pool: only the sharing differs
            C, hw = init.num_classes, block.out_hw // 2
            B = B * (fb.init_bound((C, block.n_out * hw * hw), init.scheme)
                     / fb.init_bound((C, block.n_out), init.scheme))
        return {}, {block.name + direct.B_NAME: B}

    def global_updates(model, x, y, Y, masks, *, training=True, step=0):
        spec, k = model.spec, model.k
        caches, hs, outs = [], [], []
        a = x
        for i, b in enumerate(spec.blocks):
            a, h, cache = forward_block(model, b, a, masks[i], training, pool_backward=True)
            caches.append(cache)
            hs.append(h.shape)
            outs.append(a.shape)
        o = spec.out_name + "."
        logits, lin = output_layer(model, a)
        L, e = k.softmax_cross_entropy(logits, y)
        _, dW, db = k.linear_backward(e, lin, need_dx=False)
        grads = {o + "weight": dW, o + "bias": db}
        for i, b in enumerate(spec.blocks):
            d = e @ model.fixed[b.name + direct.B_NAME]
            if variant == "ours" or not b.pool:
                dh = k.dropout_backward(d.reshape(hs[i]), caches[i].drop)
            else:
                if variant == "shared":
                    n, c, hh, ww = outs[i]
                    d = d[:, :, None, None].repeat(hh, axis=2).repeat(ww, axis=3)
                dh = block_backward_to_h(d.reshape(outs[i]), caches[i], k=k)
            _, g = block_backward_from_h(b, dh, caches[i], model.nonlin, k=k, need_dx=False)
            grads.update(g)
        stats = {"loss_global": losses.value(L),
                 "blocks": [{"loss_sim": 0.0} for _ in spec.blocks]}
        return grads, logits, stats

    return init_heads, global_updates


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", required=True)
    p.add_argument("--recipe", default="runs/fashion-mnist/lenet-dfa.toml")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (same variant)")
    a = p.parse_args()
    direct.init_heads, direct.global_updates = make_rule(a.variant)
    from bioplaus.cli import main as cli
    if a.resume:
        cli(["train", "--out", a.out, "--resume", "--no-progress"], standalone_mode=True)
    else:
        cli(["train", "--recipe", a.recipe, "--epochs", str(a.epochs), "--out", a.out,
             "--overwrite", "--no-progress"], standalone_mode=True)


if __name__ == "__main__":
    main()

"""A net's arrays for one rule: parameters, running statistics, fixed matrices.

:func:`build_model` turns a :class:`~bioplaus.net.spec.NetSpec`, a rule and a
config into a :class:`Model`. Parameter names follow the papers' PyTorch
reference ``state_dict`` (``layers.0.encoder.weight``,
``layers.0.decoder_y.weight``, ``features.0.conv_loss.weight``,
``layer_out.weight``); weights are (out, in) and (out, in, kh, kw).

Fixed random matrices are never trained and never stored: they are
regenerated from ``(seed, layer)`` (SPEC §2-§3) and kept in ``Model.fixed``:
``<block>.proj_y.weight`` (P, C -> 128), ``<block>.decoder_y.weight_fa``
(the bio decoder's B), ``<block>.encoder.weight_fa`` and
``<out>.weight_fa`` (feedback alignment's B), ``<block>.frc.M`` and
``<block>.frc.K`` (Mostafa et al.'s classifier and feedback).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bioplaus import feedback
from bioplaus.net.block import init_block, init_uniform
from bioplaus.net.spec import NetSpec, build_net
from bioplaus.ops import avgpool as avgpool_ops
from bioplaus.rules.registry import RuleInfo, get_rule


@dataclass(frozen=True)
class HeadGeometry:
    """How a block's local decoder reads ``h``: average-pool kernel/padding
    (None: no pooling) and the decoder's input size."""

    pool_kernel: tuple | None
    pool_pad: tuple
    dim_in: int


@dataclass
class Model:
    spec: NetSpec
    rule: RuleInfo
    params: dict
    buffers: dict
    fixed: dict
    heads: tuple
    nonlin: str
    beta: float
    seed: int
    xp: object
    dtype: object
    cfg: object = None
    groups: dict = field(default_factory=dict)

    def group_params(self, group: str) -> dict:
        """The parameters one optimizer owns (a block and its heads, or the output layer)."""
        return {k: self.params[k] for k in self.groups[group]}

    def param_count(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in self.params.values()))


def head_geometry(block, dim_in_decoder: int) -> HeadGeometry:
    """Decoder input geometry of a block (SPEC §2 pool sizing for conv blocks)."""
    if block.kind != "conv":
        return HeadGeometry(None, (0, 0), block.n_out)
    kernel, pad, out = avgpool_ops.decoder_pool_geometry(block.n_out, block.out_hw, dim_in_decoder)
    if tuple(kernel) == (1, 1):
        return HeadGeometry(None, (0, 0), block.n_out * block.out_hw * block.out_hw)
    return HeadGeometry(tuple(kernel), tuple(pad), int(block.n_out * out[0] * out[1]))


def build_model(cfg, input_shape, num_classes: int, xp=np, dtype=np.float32) -> Model:
    """Initialise every array of ``cfg.net`` trained by ``cfg.rule``.

    Initialisation follows PyTorch's defaults (SPEC §5): weights and biases
    U(+-1/sqrt(fan_in)); batch norm weight 1, bias 0; local decoders' weights
    zero; the output layer's weight zero under every rule but backprop and fa.
    """
    rule = get_rule(cfg.rule)
    spec = build_net(cfg.net, input_shape, num_classes, num_layers=cfg.num_layers,
                     num_hidden=cfg.num_hidden, feat_mult=cfg.feat_mult)
    seed = int(cfg.seed)
    C, T = num_classes, int(cfg.target_proj_size)
    params, buffers, fixed, heads, groups = {}, {}, {}, [], {}
    for b in spec.blocks:
        p = f"{b.name}."
        bp, bb = init_block(b, xp, seed, dtype)
        params.update(bp)
        buffers.update(bb)
        geom = head_geometry(b, cfg.dim_in_decoder)
        heads.append(geom)
        if rule.pred:
            out_dim = T if rule.bio else C
            params[p + "decoder_y.weight"] = xp.zeros((out_dim, geom.dim_in), dtype=dtype)
            params[p + "decoder_y.bias"] = (xp.zeros(out_dim, dtype=dtype) if rule.bio else
                                            init_uniform(xp, seed, p + "decoder_y.bias", (out_dim,),
                                                         geom.dim_in, dtype))
            if rule.bio:
                fixed[p + "decoder_y.weight_fa"] = feedback.bio_decoder_feedback(
                    xp, seed, b.index, (out_dim, geom.dim_in), dtype=dtype)
        if rule.bio:
            fixed[p + "proj_y.weight"] = feedback.label_projection(xp, seed, b.index, C, size=T,
                                                                   dtype=dtype)
        if rule.sim and not rule.bio:
            if b.kind == "conv":
                shape, name = (b.n_out, b.n_out, 3, 3), "conv_loss.weight"
            else:
                shape, name = (b.n_out, b.n_out), "linear_loss.weight"
            params[p + name] = init_uniform(xp, seed, p + name, shape,
                                            int(np.prod(shape[1:])), dtype)
        if rule.feedback == "B" and rule.family == "global":
            fixed[p + "encoder.weight_fa"] = feedback.fa_matrix(xp, seed, b.index, b.encoder_shape,
                                                                dtype=dtype)
        if rule.frc:
            n_feat = int(np.prod(b.out_shape))
            M = feedback.frc_classifier(xp, seed, b.index, C, n_feat, dtype=dtype)
            if rule.frc == "trainable":
                params[p + "frc.M"] = M
            else:
                fixed[p + "frc.M"] = M
                fixed[p + "frc.K"] = feedback.frc_feedback(rule.frc, M, xp, seed, b.index,
                                                           dtype=dtype)
        groups[b.name] = [k for k in params if k.startswith(p)]
    o = spec.out_name + "."
    bound_in = spec.out_in
    params[o + "weight"] = (xp.zeros((C, spec.out_in), dtype=dtype) if rule.zero_out_init else
                            init_uniform(xp, seed, o + "weight", (C, spec.out_in), bound_in, dtype))
    params[o + "bias"] = init_uniform(xp, seed, o + "bias", (C,), bound_in, dtype)
    if rule.feedback == "B" and rule.family == "global":
        fixed[o + "weight_fa"] = feedback.fa_matrix(xp, seed, len(spec.blocks), (C, spec.out_in),
                                                    dtype=dtype)
    groups[spec.out_name] = [o + "weight", o + "bias"]
    return Model(spec=spec, rule=rule, params=params, buffers=buffers, fixed=fixed,
                 heads=tuple(heads), nonlin=cfg.nonlin, beta=float(cfg.beta), seed=seed,
                 xp=xp, dtype=dtype, cfg=cfg, groups=groups)


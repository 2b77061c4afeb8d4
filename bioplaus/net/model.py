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

from bioplaus import kernels
from bioplaus.net.block import init_block, init_layer
from bioplaus.net.spec import NetSpec, build_net
from bioplaus.ops import avgpool as avgpool_ops
from bioplaus.rules.registry import LossWeights, RuleInfo, get_rule


@dataclass(frozen=True)
class HeadGeometry:
    """How a block's local decoder reads ``h``: average-pool kernel/padding
    (None: no pooling) and the decoder's input size."""

    pool_kernel: tuple | None
    pool_pad: tuple
    dim_in: int


@dataclass(frozen=True)
class HeadInit:
    """What a rule's :func:`init_heads` needs to make a block's head arrays."""

    xp: object
    seed: int
    dtype: object
    num_classes: int
    proj_size: int  # T, the size of the -bio rules' label projection
    scheme: str = "torch"  # --init: the scale of fixed feedback matrices too


@dataclass
class Model:
    """A net's arrays for one rule, and the kernels its steps call.

    ``k`` is the :class:`bioplaus.kernels.Kernels` every op of a step goes
    through (the reference ops or the fast wing's twins); ``beta`` the run's
    ``--beta``, read only through :attr:`weights`.
    """

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
    k: kernels.Kernels
    cfg: object = None
    groups: dict = field(default_factory=dict)

    @property
    def weights(self) -> LossWeights:
        """The rule's loss weights under ``beta`` (``RuleInfo.weights``)."""
        return self.rule.weights(self.beta)

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


def build_model(cfg, input_shape, num_classes: int, xp=np, dtype=np.float32, *,
                reference: bool = False) -> Model:
    """Initialise every array of ``cfg.net`` trained by ``cfg.rule``.

    Initialisation follows PyTorch's defaults (SPEC §5): weights and biases
    U(+-1/sqrt(fan_in)); batch norm weight 1, bias 0; the output layer's
    weight zero where the rule's row says so (every rule but backprop and
    fa). Each block's heads (local decoders, similarity heads, fixed
    feedback and classifiers) come from the rule's module
    (:func:`init_heads`, see :mod:`bioplaus.rules`). ``reference``: the
    model's steps call the reference ops (:data:`bioplaus.kernels.REFERENCE`)
    instead of the fast ones.
    """
    rule = get_rule(cfg.rule)
    impl = rule.impl
    spec = build_net(cfg.net, input_shape, num_classes, num_layers=cfg.num_layers,
                     num_hidden=cfg.num_hidden, feat_mult=cfg.feat_mult)
    seed = int(cfg.seed)
    C = num_classes
    init = HeadInit(xp, seed, dtype, C, int(cfg.target_proj_size), cfg.init)
    params, buffers, fixed, heads, groups = {}, {}, {}, [], {}
    for b in spec.blocks:
        p = f"{b.name}."
        bp, bb = init_block(b, xp, seed, dtype, cfg.init)
        params.update(bp)
        buffers.update(bb)
        geom = head_geometry(b, cfg.dim_in_decoder)
        heads.append(geom)
        hp, hf = impl.init_heads(rule, b, geom, init)
        params.update(hp)
        fixed.update(hf)
        groups[b.name] = [k for k in params if k.startswith(p)]
    o = spec.out_name + "."
    W_out, b_out = init_layer(xp, seed, o, (C, spec.out_in), dtype, cfg.init)
    params[o + "weight"] = xp.zeros((C, spec.out_in), dtype=dtype) if rule.zero_out_init else W_out
    params[o + "bias"] = b_out
    if hasattr(impl, "init_output"):
        fixed.update(impl.init_output(rule, spec, init))
    groups[spec.out_name] = [o + "weight", o + "bias"]
    return Model(spec=spec, rule=rule, params=params, buffers=buffers, fixed=fixed,
                 heads=tuple(heads), nonlin=cfg.nonlin, beta=float(cfg.beta),
                 seed=seed, xp=xp, dtype=dtype, k=kernels.get_kernels(reference, xp), cfg=cfg,
                 groups=groups)

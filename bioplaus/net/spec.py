"""Network specifications: mlp, the VGG family of the reference, Mostafa's nets.

A net is a tuple of :class:`BlockSpec` (hidden blocks, in order) and an
output layer. Each block is ``encoder -> batch norm -> nonlinearity ->
dropout [-> max-pool 2x2]``; a block whose input is a feature map but whose
encoder is linear flattens its input first. Block names are the prefixes of
the papers' PyTorch reference ``state_dict`` (``layers.0``, ``features.3``,
``classifier.layers.0``), so parameter names map one to one.

This module is wiring only: shapes, names and counts, no math.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# The reference's VGG configurations: numbers are conv 3x3 widths, 'M' a
# 2x2 max-pool (Nøkland & Eidnes 2019, code `cfg`).
VGG_CFG = {
    "vgg6a": [128, "M", 256, "M", 512, "M", 512],
    "vgg6b": [128, "M", 256, "M", 512, "M", 512, "M"],
    "vgg8": [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"],
    "vgg8a": [128, 256, "M", 256, 512, "M", 512, "M", 512],
    "vgg8b": [128, 256, "M", 256, 512, "M", 512, "M", 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg11b": [128, 128, 128, 256, "M", 256, 512, "M", 512, 512, "M", 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
              "M", 512, 512, 512, 512, "M"],
}

# Mostafa, Ramesh & Cauwenberghs (2018), MNIST experiments: a network of
# three fully connected hidden layers (the paper's Fig. 3 compares it with
# 1- and 3-hidden-layer backprop nets). The width, 1000 units, is our
# reading of the paper and has not been checked against its text here; the
# paper's CIFAR-10 and SVHN conv nets are not provided for the same reason:
# use vgg* or mlp with the frc-* rules instead.
MOSTAFA_FC_HIDDEN = 1000

# LeNet-5 as biotorch benchmarks it (Sanfiz & Akrout 2021): conv 5x5 6 ->
# max-pool 2 -> conv 5x5 16 -> max-pool 2 -> conv 5x5 120 -> fc 84 -> fc C,
# ReLU, no batch norm, no padding; it needs 32x32 inputs (``--input-size 32``).
LENET_INPUT = 32

NETS = ("mlp", "mostafa-fc", "lenet", *VGG_CFG)


class NetError(ValueError):
    """An unknown net or an impossible net option."""


@dataclass(frozen=True)
class BlockSpec:
    """One hidden block.

    ``kind`` is 'conv' or 'linear'; ``n_in``/``n_out`` are channels (conv)
    or features (linear); ``in_hw``/``out_hw`` are the spatial size of the
    block's input and of its encoder output (1 for linear); ``pool`` adds a
    2x2 max-pool after the dropout; ``flatten_in`` flattens the input first;
    ``bn``: the block has batch norm (every net but LeNet).
    ``index`` numbers the blocks 0..L-1 (the ``layer`` of random streams).
    """

    name: str
    index: int
    kind: str
    n_in: int
    n_out: int
    in_hw: int = 1
    out_hw: int = 1
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    pool: bool = False
    flatten_in: bool = False
    bn: bool = True

    @property
    def encoder_shape(self) -> tuple:
        if self.kind == "conv":
            return (self.n_out, self.n_in, self.kernel, self.kernel)
        return (self.n_out, self.n_in)

    @property
    def h_shape(self) -> tuple:
        """Shape of one example's activation ``h`` (before dropout/pool)."""
        if self.kind == "conv":
            return (self.n_out, self.out_hw, self.out_hw)
        return (self.n_out,)

    @property
    def out_shape(self) -> tuple:
        """Shape of one example's block output (after dropout and pool)."""
        if self.kind == "conv":
            hw = self.out_hw // 2 if self.pool else self.out_hw
            return (self.n_out, hw, hw)
        return (self.n_out,)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the encoder for one example."""
        if self.kind == "conv":
            return self.n_out * self.n_in * self.kernel ** 2 * self.out_hw ** 2
        return self.n_out * self.n_in


@dataclass(frozen=True)
class NetSpec:
    """A whole net: hidden blocks, then the linear output layer ``out_name``."""

    name: str
    blocks: tuple
    out_name: str
    out_in: int
    num_classes: int
    input_shape: tuple

    def encoder_param_count(self) -> int:
        """Parameters of the forward net (encoders, batch norms, output layer):
        what backprop trains; local heads are not counted."""
        total = 0
        for b in self.blocks:
            c = 1
            for s in b.encoder_shape:
                c *= s
            total += c + b.n_out + (2 * b.n_out if b.bn else 0)  # weight, bias, bn weight/bias
        return total + self.out_in * self.num_classes + self.num_classes


def _fc_blocks(prefix: str, n_in: int, widths, start_index: int, flatten_first: bool):
    blocks = []
    for j, width in enumerate(widths):
        blocks.append(BlockSpec(
            name=f"{prefix}layers.{j}", index=start_index + j, kind="linear",
            n_in=n_in, n_out=width, flatten_in=flatten_first and j == 0))
        n_in = width
    return blocks, n_in


def build_net(name: str, input_shape, num_classes: int, *, num_layers: int | None = None,
              num_hidden: int = 1024, feat_mult: float = 1.0) -> NetSpec:
    """Build the spec of net ``name`` for inputs of ``input_shape`` (c, h, w).

    ``num_layers`` is the number of fully connected blocks: the hidden
    layers of ``mlp`` (default 3, the papers' 3x1024) or the blocks after
    the convolutions of a VGG net (default 1, as the reference).
    """
    c, h, w = (int(v) for v in input_shape)
    if h != w:
        raise NetError(f"inputs must be square, got {h}x{w}")
    if name == "mlp" or name == "mostafa-fc":
        if name == "mostafa-fc":
            num_layers = 3 if num_layers is None else num_layers
            num_hidden = MOSTAFA_FC_HIDDEN
        nl = 3 if num_layers is None else int(num_layers)
        if nl < 1:
            raise NetError(f"--num-layers must be >= 1 for {name}, got {nl}")
        if num_hidden < 1:
            raise NetError(f"--num-hidden must be >= 1, got {num_hidden}")
        blocks, d = _fc_blocks("", c * h * w, [num_hidden] * nl, 0, True)
        return NetSpec(name, tuple(blocks), "layer_out", d, num_classes, (c, h, w))
    if name == "lenet":
        return _lenet(c, h, num_classes)
    if name not in VGG_CFG:
        raise NetError(f"unknown net {name!r}; known nets: {', '.join(NETS)}")
    if feat_mult <= 0:
        raise NetError(f"--feat-mult must be positive, got {feat_mult}")
    nl = 1 if num_layers is None else int(num_layers)
    if nl < 0:
        raise NetError(f"--num-layers must be >= 0 for {name}, got {nl}")
    cfg = VGG_CFG[name]
    blocks = []
    size, ch, first = h, c, True
    for i, item in enumerate(cfg):
        if item == "M":
            if not blocks or blocks[-1].pool:
                raise NetError(f"{name}: max-pool without a block before it")
            blocks[-1] = replace(blocks[-1], pool=True)
            size //= 2
            if size < 1:
                raise NetError(f"{name}: inputs of {h}x{w} are too small for its pooling")
            continue
        width = int(item * feat_mult)
        if first and h > 64:  # STL-10: 7x7 stride-2 first layer (reference)
            k, s, p = 7, 2, 3
        else:
            k, s, p = 3, 1, 1
        out = (size + 2 * p - k) // s + 1
        blocks.append(BlockSpec(name=f"features.{i}", index=len(blocks), kind="conv",
                                n_in=ch, n_out=width, in_hw=size, out_hw=out,
                                kernel=k, stride=s, pad=p))
        size, ch, first = out, width, False
        if size < 1:
            raise NetError(f"{name}: inputs of {h}x{w} are too small for its pooling")
    d = ch * size * size
    if nl > 0:
        fc, d = _fc_blocks("classifier.", d, [num_hidden] * nl, len(blocks), True)
        blocks.extend(fc)
        out_name = "classifier.layer_out"
    else:
        out_name = "classifier"
    return NetSpec(name, tuple(blocks), out_name, d, num_classes, (c, h, w))


def _lenet(c: int, h: int, num_classes: int) -> NetSpec:
    """LeNet-5 (see :data:`LENET_INPUT`): blocks ``conv1``..``conv3``, ``fc1``, output ``fc2``."""
    if h != LENET_INPUT:
        raise NetError(f"lenet needs {LENET_INPUT}x{LENET_INPUT} inputs, got {h}x{h}; "
                       f"pass --input-size {LENET_INPUT} (with --input-fit resize or pad)")
    blocks = []
    size, ch = h, c
    for j, (width, pool) in enumerate(((6, True), (16, True), (120, False))):
        out = size - 4
        blocks.append(BlockSpec(name=f"conv{j + 1}", index=j, kind="conv", n_in=ch, n_out=width,
                                in_hw=size, out_hw=out, kernel=5, stride=1, pad=0, pool=pool,
                                bn=False))
        size, ch = (out // 2 if pool else out), width
    blocks.append(BlockSpec(name="fc1", index=3, kind="linear", n_in=ch * size * size, n_out=84,
                            flatten_in=True, bn=False))
    return NetSpec("lenet", tuple(blocks), "fc2", 84, num_classes, (c, h, h))

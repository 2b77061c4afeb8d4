r"""Counted memory traffic of one training step, as Mostafa et al. (2018, Sec. 5) argue it.

Nothing is timed here: the words are counted from the net's shapes and the
rule, under the model of counting written out in ``docs/traffic.md``
(4 bytes per word):

* **Buffered activations** (per example): every trained matrix product
  buffers its input until its weight gradient is formed; every hidden
  nonlinearity (batch norm + ReLU) buffers its pre-activation ``a`` until
  its derivative is applied; a similarity matrix buffers its input.
  Quantities on the loss side (logits, codes, a row of ``S``: at most
  ``max(C, 128, n)`` words) are not counted. Under a global rule every
  layer's buffer lives until the backward pass returns to the layer, so
  the peak is the *sum* over layers; under a local rule (and Mostafa's
  fixed random classifiers) a layer's buffer is freed once its own local
  update is done, right after its forward pass, so the peak is the *max*.
* **Weights** (per update, i.e. per mini-batch; divided by the batch for
  per example): under a global rule each layer's parameters are read in
  the forward pass and read again in the backward pass (to carry the
  error down and to update them), and written once; under a local rule
  the update follows the forward pass while the weights are still on
  chip: one read, one write. Fixed random matrices (``P``, ``B``, ``M``,
  ``K``, feedback alignment's ``B``) are regenerated from a per-layer seed
  (as Mostafa et al. propose and bioplaus does) and cost no traffic; they
  are listed as *regenerated* words.
"""
from __future__ import annotations

from dataclasses import dataclass

from bioplaus.net.model import head_geometry
from bioplaus.net.spec import build_net
from bioplaus.rules.registry import get_rule

WORD_BYTES = 4


@dataclass(frozen=True)
class LayerTraffic:
    """Counted words of one layer (a block with its local heads, or the output layer).

    ``buffered``: activation words per example, with ``buffers`` naming
    them (``x`` the input, ``a`` the pre-activation, ``h`` the activation a
    head reads, ``f`` the average-pooled ``h``, ``r`` the sim head's
    output, ``o`` the block output read by a trained classifier).
    ``params``: trained words; ``reads``/``writes``: trained words moved
    per update; ``regenerated``: fixed random words made from a seed per
    update instead of being read.
    """

    name: str
    shape: str
    buffers: tuple
    buffered: int
    params: int
    reads: int
    writes: int
    regenerated: int


@dataclass(frozen=True)
class TrafficTotals:
    """A rule's totals on a net: peak buffered words per example, weight words per update."""

    peak_buffered: int
    reads: int
    writes: int
    regenerated: int

    def per_example(self, batch: int) -> dict:
        """Bytes per example: peak buffered, weights read and written (per update / batch)."""
        return {"buffered": self.peak_buffered * WORD_BYTES,
                "read": self.reads * WORD_BYTES / batch,
                "written": self.writes * WORD_BYTES / batch}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def layer_traffic(spec, rule_name: str, dim_in_decoder: int = 4096,
                  target_proj_size: int = 128) -> list:
    """Counted words of every layer of net ``spec`` under rule ``rule_name``.

    Returns a list of :class:`LayerTraffic`, blocks in order, the output
    layer last.
    """
    rule = get_rule(rule_name)
    C, T = spec.num_classes, int(target_proj_size)
    glob = rule.family == "global"
    w_reads = 2 if glob else 1
    rows = []
    for b in spec.blocks:
        n_in = b.n_in * b.in_hw ** 2 if b.kind == "conv" else b.n_in  # input words
        n_a = _numel(b.h_shape)
        n_out = _numel(b.out_shape)
        geom = head_geometry(b, dim_in_decoder)
        enc = _numel(b.encoder_shape) + 3 * b.n_out  # weight, bias, bn weight and bias
        bufs = {"x": n_in, "a": n_a}
        heads = regen = 0
        reads_heads = 0
        if rule.family == "local" or (glob and rule.sim):
            reads_h = geom.dim_in if geom.pool_kernel is not None else 0
            if rule.pred:  # the decoder reads h (pooled for wide conv blocks)
                bufs["f" if reads_h else "h"] = geom.dim_in
                out_dim = T if rule.bio else C
                heads += out_dim * geom.dim_in + out_dim
                if rule.bio:
                    regen += out_dim * geom.dim_in + T * C  # B, P
            if rule.sim and rule.bio:  # S reads h (pooled as the decoder)
                bufs["f" if reads_h else "h"] = geom.dim_in
                regen += 0 if rule.pred else T * C  # P, unless already counted
            elif rule.sim:  # learned NN: reads h, its output r feeds S
                bufs["h"] = n_a
                bufs["r"] = n_a
                heads += b.n_out * b.n_out * (9 if b.kind == "conv" else 1)
            reads_heads = heads  # heads are used and updated at once: one read
        if rule.frc:
            if rule.frc == "trainable":
                bufs["o"] = n_out
                heads += C * n_out
                reads_heads = heads
            else:
                regen += 2 * C * n_out  # M and K
        if glob and rule.feedback == "B":
            regen += _numel(b.encoder_shape)  # feedback alignment's B
        shape = (f"conv {b.n_in}->{b.n_out} @{b.out_hw}" + (" M" if b.pool else "")
                 if b.kind == "conv" else f"fc {n_in}->{b.n_out}")
        rows.append(LayerTraffic(b.name, shape, tuple(bufs), sum(bufs.values()), enc + heads,
                                 w_reads * enc + reads_heads, enc + heads, regen))
    out_params = spec.out_in * C + C
    regen = spec.out_in * C if (glob and rule.feedback == "B") else 0
    rows.append(LayerTraffic(spec.out_name, f"fc {spec.out_in}->{C}", ("x",), spec.out_in,
                             out_params, w_reads * out_params, out_params, regen))
    return rows


def totals(rows, rule_name: str) -> TrafficTotals:
    """Peak buffered words (sum over layers for global rules, max for local ones) and weight words."""
    glob = get_rule(rule_name).family == "global"
    buffered = [r.buffered for r in rows]
    return TrafficTotals(sum(buffered) if glob else max(buffered),
                         sum(r.reads for r in rows), sum(r.writes for r in rows),
                         sum(r.regenerated for r in rows))


def _kb(words: float) -> str:
    return f"{words * WORD_BYTES / 1024:.1f}"


def run_traffic(nets=("mlp", "vgg8b"), rules=("backprop", "predsim", "pred-bio", "frc-sym"), *,
                batch: int = 128, num_hidden: int = 1024, dim_in_decoder: int = 4096,
                per_layer: bool = True, input_shape=(1, 28, 28), num_classes: int = 10,
                out=print) -> dict:
    """Print the counted traffic per layer and the totals per (net, rule).

    Returns ``{(net, rule): (rows, TrafficTotals)}``.
    """
    result = {}
    out(f"counted memory traffic per example (docs/traffic.md): {WORD_BYTES} bytes per word, "
        f"inputs {'x'.join(map(str, input_shape))}, {num_classes} classes; weights move once "
        f"per update of {batch} examples")
    for net in nets:
        spec = build_net(net, input_shape, num_classes, num_hidden=num_hidden)
        for rule in rules:
            rows = layer_traffic(spec, rule, dim_in_decoder)
            tot = totals(rows, rule)
            result[(net, rule)] = (rows, tot)
            if not per_layer:
                continue
            glob = get_rule(rule).family == "global"
            out("")
            out(f"{net} / {rule}: buffers {'held until the backward pass (peak = sum)' if glob else 'freed after each local update (peak = max)'}")
            out(f"{'layer':<24}{'shape':<22}{'buffers':<12}{'buf KB':>9}{'W read KB':>11}"
                f"{'W write KB':>11}{'regen KB':>10}")
            for r in rows:
                out(f"{r.name:<24}{r.shape:<22}{'+'.join(r.buffers):<12}{_kb(r.buffered):>9}"
                    f"{_kb(r.reads / batch):>11}{_kb(r.writes / batch):>11}"
                    f"{_kb(r.regenerated / batch):>10}")
            out(f"{'total':<58}{_kb(tot.peak_buffered):>9}{_kb(tot.reads / batch):>11}"
                f"{_kb(tot.writes / batch):>11}{_kb(tot.regenerated / batch):>10}")
    out("")
    out("totals per example (KB): peak buffered activations, weights read, weights written; "
        "x: ratio to backprop")
    out(f"{'net':<8}{'rule':<14}{'buffered':>10}{'x':>7}{'read':>10}{'x':>7}{'written':>10}{'x':>7}")
    for net in nets:
        base = result.get((net, "backprop"))
        if base is None:
            spec = build_net(net, input_shape, num_classes, num_hidden=num_hidden)
            base = (None, totals(layer_traffic(spec, "backprop", dim_in_decoder), "backprop"))
        b = base[1].per_example(batch)
        for rule in rules:
            t = result[(net, rule)][1].per_example(batch)
            out(f"{net:<8}{rule:<14}{t['buffered'] / 1024:>10.1f}{t['buffered'] / b['buffered']:>7.2f}"
                f"{t['read'] / 1024:>10.1f}{t['read'] / b['read']:>7.2f}"
                f"{t['written'] / 1024:>10.1f}{t['written'] / b['written']:>7.2f}")
    return result

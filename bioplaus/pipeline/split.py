"""How a net's blocks are cut into pipeline stages: contiguous, balanced by a step's FLOPs.

A stage is a run of consecutive hidden blocks; the last stage also holds
the output layer. :func:`block_flops` prices each block's share of one
training step (its encoder forward and weight gradient, its local heads,
its similarity matrices: :func:`bioplaus.bench.flops.step_flops` on the
block alone), the output layer is priced with the last block, and
:func:`balanced_split` picks the cut that makes the costliest stage as
cheap as it can be (exact, by dynamic programming over the cut points).
No Ray here: wiring and arithmetic only.
"""
from __future__ import annotations

import dataclasses


class PipelineError(ValueError):
    """A pipeline that cannot run as asked; the message names the option and what would do."""


def submodel(model, lo: int, hi: int, *, output: bool):
    """The view of ``model`` that holds hidden blocks ``lo..hi-1`` (and the
    output layer when ``output``): their parameters, running statistics,
    fixed matrices, heads and optimizer groups, and nothing else.

    Blocks keep their names and indices, so parameter names and the random
    streams keyed by a block (its dropout masks, its fixed matrices) are
    those of the whole model. The arrays are the model's own (not copies).
    """
    blocks = model.spec.blocks[lo:hi]
    names = [b.name for b in blocks] + ([model.spec.out_name] if output else [])
    groups = {g: list(model.groups[g]) for g in names}
    keep = {k for g in names for k in groups[g]}
    prefixes = tuple(f"{b.name}." for b in blocks)
    spec = dataclasses.replace(model.spec, blocks=tuple(blocks))
    return dataclasses.replace(
        model, spec=spec, heads=tuple(model.heads[lo:hi]), groups=groups,
        params={k: v for k, v in model.params.items() if k in keep},
        buffers={k: v for k, v in model.buffers.items() if k.startswith(prefixes)},
        fixed={k: v for k, v in model.fixed.items()
               if k.startswith(prefixes) or (output and k.startswith(model.spec.out_name + "."))})


def block_flops(model, n: int) -> list[float]:
    """FLOPs of one training step at batch ``n``, by hidden block; the output
    layer's are added to the last block's (it runs in the last stage)."""
    from bioplaus.bench.flops import step_flops

    nb = len(model.spec.blocks)
    costs = []
    for i in range(nb):
        f = step_flops(submodel(model, i, i + 1, output=False), n)
        costs.append(f.encoders + f.heads + f.similarity)
    costs[-1] += step_flops(model, n).output
    return costs


def balanced_split(costs, n_stages: int) -> list[tuple[int, int]]:
    """Cut ``costs`` (one per block, in order) into ``n_stages`` contiguous,
    non-empty runs ``(lo, hi)`` that minimise the largest run's total (the
    earliest such cut where several tie)."""
    nb = len(costs)
    if not 1 <= n_stages <= nb:
        raise PipelineError(f"--pipeline {n_stages}: this net has {nb} hidden blocks, so it "
                            f"splits into 1 to {nb} stages")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    INF = float("inf")
    # best[s][j]: least max-stage cost of blocks 0..j-1 in s stages; cut[s][j] its last cut
    best = [[INF] * (nb + 1) for _ in range(n_stages + 1)]
    cut = [[0] * (nb + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for s in range(1, n_stages + 1):
        for j in range(s, nb + 1):
            for i in range(s - 1, j):
                v = max(best[s - 1][i], prefix[j] - prefix[i])
                if v < best[s][j]:
                    best[s][j], cut[s][j] = v, i
    bounds, j = [], nb
    for s in range(n_stages, 0, -1):
        i = cut[s][j]
        bounds.append((i, j))
        j = i
    return bounds[::-1]


def describe_split(model, bounds, costs) -> str:
    """One line per stage: its blocks and its share of the step's FLOPs."""
    total = sum(costs) or 1.0
    lines = []
    for s, (lo, hi) in enumerate(bounds):
        names = [b.name for b in model.spec.blocks[lo:hi]]
        if hi == len(model.spec.blocks):
            names.append(model.spec.out_name)
        f = sum(costs[lo:hi])
        lines.append(f"  stage {s}: blocks {lo}..{hi - 1} ({', '.join(names)}): "
                     f"{f / 1e9:.3f} GFLOP a step, {100 * f / total:.1f} %")
    return "\n".join(lines)

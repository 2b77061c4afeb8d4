r"""``bioplaus bench pipeline``: images/s of the sequential step against the same step in N stages.

Each case (mlp 3x1024 and vgg8b under predsim, batch 128, 28x28x1
inputs, as :mod:`bioplaus.bench.steps`) is trained for a number of steps
on one fixed random batch, twice, through the same machinery as
``bioplaus train --pipeline`` (:class:`~bioplaus.pipeline.actors.StageActors`):
as one stage holding every block on C cores (the sequential step, one
process with C BLAS threads) and as N stages of C/N cores each (the
blocks split by FLOPs, :func:`~bioplaus.pipeline.split.balanced_split`).
Printed per layout: images/s and the speed-up over the sequential layout;
each stage's busy fraction (seconds inside its steps over the wall time of
the timed steps); the bubble, :math:`1 - \sum_s busy_s / (N \cdot wall)`,
the share of the stages' time spent idle (filling and draining the
pipeline, waiting on a slower stage, receiving its input); and the bytes
sent from stage to stage per step (activations and labels; the input
batch sent to the first stage is printed apart). ``--quick``: tiny
widths and three steps, to check that it runs.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np

from bioplaus import optim
from bioplaus.bench.steps import INPUT_SHAPE, NUM_CLASSES, make_batch
from bioplaus.config import Config
from bioplaus.net.model import build_model
from bioplaus.pipeline.actors import StageActors, require_ray
from bioplaus.pipeline.split import balanced_split, block_flops
from bioplaus.pipeline.stage import stage_arrays

CASES = {"mlp 3x1024": dict(net="mlp", num_layers=3, num_hidden=1024),
         "vgg8b": dict(net="vgg8b")}
QUICK = {"mlp 3x1024": ("mlp 3x64", dict(num_hidden=64)),
         "vgg8b": ("vgg8b x0.05", dict(feat_mult=0.05, num_hidden=32, dim_in_decoder=64))}


def case_configs(rule: str, batch: int, device: str, quick: bool) -> list[tuple[str, Config]]:
    out = []
    for name, kw in CASES.items():
        if quick:
            name, extra = QUICK[name]
            kw = {**kw, **extra}
        out.append((name, Config(rule=rule, batch_size=batch, device=device, **kw)))
    return out


def measure(cfg: Config, stages: int, cpus_per_stage: float, *, steps: int, warmup: int,
            window: int | None = None) -> dict:
    """Train ``warmup`` then ``steps`` timed steps of ``cfg`` in ``stages`` stages."""
    ray = require_ray()
    model = build_model(cfg, INPUT_SHAPE, NUM_CLASSES, xp=np, dtype=np.float32)
    ocfg = optim.OptimConfig(name=cfg.optim, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    states = {g: optim.init_state(model.group_params(g), ocfg) for g in model.groups}
    costs = block_flops(model, cfg.batch_size)
    bounds = balanced_split(costs, stages)
    nb = len(model.spec.blocks)
    arrays = [stage_arrays(model, states, lo, hi, hi == nb) for lo, hi in bounds]
    del model, states
    actors = StageActors(cfg.to_dict(), INPUT_SHAPE, NUM_CLASSES, bounds, arrays,
                         cpus_per_stage=cpus_per_stage)
    window = window or 2 * stages
    _, _, x, y = make_batch(np, cfg.batch_size)
    batch = ray.put((x, y))

    def run(k: int, start: int) -> int:
        inflight, sent = [], 0
        for t in range(k):
            inflight.append(actors.submit(batch, start + t, cfg.lr))
            while len(inflight) >= window or (t == k - 1 and inflight):
                sent += sum(r["sent_bytes"] for r in actors.get(inflight.pop(0)))
        return sent

    try:
        run(warmup, 0)
        actors.timing()
        t0 = time.perf_counter()
        sent = run(steps, warmup)
        wall = time.perf_counter() - t0
        busy = [t["busy_s"] / wall for t in actors.timing()]
    finally:
        actors.stop()
    return {"stages": stages, "cpus": cpus_per_stage, "bounds": bounds,
            "stage_gflop": [sum(costs[lo:hi]) / 1e9 for lo, hi in bounds],
            "images_per_s": steps * cfg.batch_size / wall, "wall_s": wall, "busy": busy,
            "bubble": 1.0 - sum(busy) / stages, "sent_per_step": sent / steps,
            "input_bytes": int(x.nbytes + y.nbytes)}


def layout_text(r: dict) -> str:
    cores = f"{r['cpus']:g} core" + ("" if r["cpus"] == 1 else "s")
    if r["stages"] == 1:
        return f"1 process x {cores}"
    return f"{r['stages']} stages x {cores}"


def run_pipeline_bench(*, stages: int = 2, cores: int = 2, rule: str = "predsim",
                       batch: int = 128, steps: int = 20, warmup: int = 3, device: str = "cpu",
                       quick: bool = False, out=print) -> list[dict]:
    """Both layouts of every case; prints the table, returns its rows. Ray must be started."""
    if quick:
        steps, warmup = 3, 1
    rows = []
    out(f"bioplaus bench pipeline: {rule}, batch {batch}, {steps} timed steps after {warmup} "
        f"warm-up, device {device}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; sequential = 1 process x {cores} cores, pipelined = {stages} "
        f"stages x {cores / stages:g} core(s)")
    out(f"{'case':<13} {'layout':<22} {'images/s':>9} {'speed-up':>8}  {'busy per stage':<22} "
        f"{'bubble':>6}  {'sent between stages / step':>26}  split (GFLOP a step per stage)")
    for name, cfg in case_configs(rule, batch, device, quick):
        base = None
        for n, cpus in ((1, float(cores)), (stages, cores / stages)):
            r = measure(cfg, n, cpus, steps=steps, warmup=warmup)
            r["case"] = name
            base = base or r["images_per_s"]
            r["speedup"] = r["images_per_s"] / base
            rows.append(r)
            busy = " ".join(f"{100 * b:.0f}%" for b in r["busy"])
            sent = "-" if n == 1 else f"{r['sent_per_step']:,.0f} B"
            split = " | ".join(f"blocks {lo}-{hi - 1}: {g:.2f}"
                               for (lo, hi), g in zip(r["bounds"], r["stage_gflop"]))
            out(f"{name:<13} {layout_text(r):<22} {r['images_per_s']:9.1f} {r['speedup']:8.2f}  "
                f"{busy:<22} {100 * r['bubble']:5.1f}%  {sent:>26}  {split}")
    out(f"(the input batch sent to the first stage: {rows[0]['input_bytes']:,} B a step)")
    return rows

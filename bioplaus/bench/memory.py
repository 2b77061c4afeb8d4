r"""Peak memory of a training step, and how it grows with depth.

Local learning's claim (Nøkland & Eidnes 2019, Sec. 1; Mostafa et al.
2018, Sec. 5) is that a block can be updated as soon as its own forward
pass is done, so a step needs one block's activations at a time, whatever
the depth; backprop keeps every block's activations until the backward
pass reaches it. This module measures it.

*Peak step memory* is the most bytes of arrays alive at once during one
step, on top of what was alive before it (parameters, running statistics,
fixed matrices, optimizer moments, the batch): activations, the ops'
caches (im2col columns, batch-norm's normalised input, ReLU masks, pool
winners), gradients and temporaries. On the CPU it is read from
:mod:`tracemalloc` (NumPy reports every array buffer to it); on a GPU from
CuPy's default memory pool (bytes in use, sampled after every allocation).
On the CPU the host pool (:class:`bioplaus.fast.memory.HostPool`) is switched
off while tracing, so that both count live arrays, and the optimizer's
updates run on one thread (chunks on several threads would overlap their
temporaries at random); what the host pool itself holds after a step is
reported beside it (*pool MB*).

*Kept at yield* is, under a local rule, what the step still holds when it
hands a block's update to the optimizer, beyond the two things it must
hold then (the block's output, which the next block reads, and the
update itself): memory of the finished block that lives on into the next
block's forward pass.
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from bioplaus import backend
from bioplaus.fast import memory, threads
from bioplaus.rules.step import step_updates

# nets compared for depth: (label, net, num_layers)
DEPTH_PAIRS = ((("vgg8b", "vgg8b", None), ("vgg11b", "vgg11b", None)),
               (("mlp-3", "mlp", 3), ("mlp-9", "mlp", 9)))


class _Tracker:
    """Current and peak bytes of live arrays since :meth:`start` (CPU or GPU)."""

    def __init__(self, xp):
        self.xp = xp
        self.gpu = xp is not np

    def __enter__(self):
        if self.gpu:
            backend.synchronize(self.xp)
            pool = self.xp.get_default_memory_pool()
            self.base = pool.used_bytes()
            self._peak = self.base
            tracker = self

            class _PeakHook(self.xp.cuda.MemoryHook):
                name = "bioplaus_peak"

                def malloc_postprocess(self, **kwargs):
                    tracker._peak = max(tracker._peak, pool.used_bytes())

            self._hook = _PeakHook()
            self._hook.__enter__()
        else:
            # measure live arrays, as CuPy's used bytes do: the host pool's
            # reuse would hide them from tracemalloc (its size is reported apart)
            self._pool_off = memory.host_pool.disabled()
            self._pool_off.__enter__()
            self._one_thread = threads.one_host_thread()
            self._one_thread.__enter__()
            self._was_tracing = tracemalloc.is_tracing()
            if not self._was_tracing:
                tracemalloc.start()
            self.base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        return self

    def current(self) -> int:
        """Bytes alive now beyond those alive at the start."""
        if self.gpu:
            return self.xp.get_default_memory_pool().used_bytes() - self.base
        return tracemalloc.get_traced_memory()[0] - self.base

    def peak(self) -> int:
        if self.gpu:
            backend.synchronize(self.xp)
            return self._peak - self.base
        return tracemalloc.get_traced_memory()[1] - self.base

    def __exit__(self, *exc):
        if self.gpu:
            self._hook.__exit__(*exc)
        else:
            self.final_peak = self.peak()
            if not self._was_tracing:
                tracemalloc.stop()
            self._one_thread.__exit__(*exc)
            self._pool_off.__exit__(*exc)
        return False


def step_peak_bytes(step, xp) -> int:
    """Peak bytes one call of ``step`` (a :class:`~bioplaus.bench.steps.BioplausStep`)
    allocates on top of what is alive before it."""
    with _Tracker(xp) as tr:
        step()
        peak = tr.peak()
    return int(peak)


def step_memory_profile(step, xp) -> dict:
    """One step of ``step`` (a BioplausStep) with its memory traced block by block.

    Returns ``{"peak": bytes, "kept": [bytes per block]}``: ``kept[i]`` is
    what is alive when block i's update is handed out, less the block's
    output and the update's gradients (see the module notes); empty for
    global rules, whose updates come after the whole backward pass.
    """
    m = step.model
    n = step.x.shape[0]
    itemsize = np.dtype(m.dtype).itemsize
    blocks = {b.name: b for b in m.spec.blocks}
    kept = []
    with _Tracker(xp) as tr:
        for upd in step_updates(m, step.x, step.y, step.masks()):
            b = blocks.get(upd.group)
            if b is not None and m.rule.family != "global":
                out_bytes = n * int(np.prod(b.out_shape)) * itemsize
                grad_bytes = sum(int(g.nbytes) for g in upd.grads.values() if g is not None)
                kept.append(max(0, tr.current() - out_bytes - grad_bytes))
            m.k.optimizer_step(m.group_params(upd.group), upd.grads, step.states[upd.group],
                               step.cfg.lr, step.ocfg)
        del upd
        peak = tr.peak()
    step.t += 1
    return {"peak": int(peak), "kept": kept}


def run_memory_bench(rules=("predsim", "pred-bio"), *, batch: int = 32, device: str = "cpu",
                     out=print, pairs=DEPTH_PAIRS, num_hidden: int = 1024, feat_mult: float = 1.0,
                     dim_in_decoder: int = 4096, input_shape=None, num_classes=None) -> list:
    """Peak step memory of each rule (and backprop) on a shallow and a deep net.

    Prints one row per (pair, rule): the shallow and the deep net's peak
    step memory, their ratio, and the largest *kept at yield* of each.
    Returns the rows as dicts (``shallow_mb``, ``deep_mb``, ``ratio``,
    ``kept_shallow_mb``, ``kept_deep_mb``).
    """
    from bioplaus.bench import steps as st

    input_shape = input_shape or st.INPUT_SHAPE
    num_classes = num_classes or st.NUM_CLASSES
    xp = backend.get_xp(device)
    rules = [r for r in rules if r != "backprop"] + ["backprop"]
    x, y, _, _ = st.make_batch(xp, batch, input_shape, num_classes)
    out(f"peak step memory vs depth: device {device}, float32, batch {batch}, inputs "
        f"{'x'.join(map(str, input_shape))}; MB of arrays a step allocates on top of "
        f"parameters and optimizer state ({'CuPy pool' if xp is not np else 'tracemalloc'})")
    out("kept: the most a local step still holds when it hands a block's update to the "
        "optimizer, beyond the block's output and the update")
    if xp is np:
        out("pool MB: what the host pool holds after two steps (large buffers reused from step "
            "to step instead of fresh memory), shallow and deep")
    out("")
    out(f"{'nets':<16}{'rule':<10}{'shallow MB':>12}{'deep MB':>10}{'deep/shallow':>14}"
        f"{'kept MB':>10}{'kept MB':>10}{'pool MB':>10}{'pool MB':>10}")
    rows = []
    for shallow, deep in pairs:
        for rule in rules:
            res = []
            for _, net, nl in (shallow, deep):
                cfg = st.bench_config(net, rule, batch=batch, num_layers=nl, num_hidden=num_hidden,
                                      feat_mult=feat_mult, dim_in_decoder=dim_in_decoder,
                                      device=device)
                memory.host_pool.clear()
                step = st.BioplausStep(cfg, xp, x, y, input_shape, num_classes)
                step()  # warm-up: moments and pools allocated before measuring
                step()
                held = memory.host_pool.held_bytes() if xp is np else None
                res.append({**step_memory_profile(step, xp), "pool": held})
                del step
                memory.host_pool.clear()
            a, b = res
            row = {"nets": f"{shallow[0]}/{deep[0]}", "rule": rule,
                   "shallow_mb": a["peak"] / 2**20, "deep_mb": b["peak"] / 2**20,
                   "ratio": b["peak"] / max(a["peak"], 1),
                   "kept_shallow_mb": max(a["kept"], default=None),
                   "kept_deep_mb": max(b["kept"], default=None),
                   "pool_shallow_mb": a["pool"], "pool_deep_mb": b["pool"]}
            for k in ("kept_shallow_mb", "kept_deep_mb", "pool_shallow_mb", "pool_deep_mb"):
                if row[k] is not None:
                    row[k] /= 2**20
            rows.append(row)
            ks = "-" if row["kept_shallow_mb"] is None else f"{row['kept_shallow_mb']:.1f}"
            kd = "-" if row["kept_deep_mb"] is None else f"{row['kept_deep_mb']:.1f}"
            ps = "-" if row["pool_shallow_mb"] is None else f"{row['pool_shallow_mb']:.1f}"
            pd = "-" if row["pool_deep_mb"] is None else f"{row['pool_deep_mb']:.1f}"
            out(f"{row['nets']:<16}{rule:<10}{row['shallow_mb']:>12.1f}{row['deep_mb']:>10.1f}"
                f"{row['ratio']:>14.2f}{ks:>10}{kd:>10}{ps:>10}{pd:>10}")
    return rows

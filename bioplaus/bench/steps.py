r"""Whole training steps: time, FLOP rate against the matmul peak, memory, and PyTorch.

A *step* is what the training loop does for one mini-batch: every
:class:`~bioplaus.rules.step.Update` of :func:`~bioplaus.rules.step.step_updates`
(forward, local or global updates) followed at once by
:func:`bioplaus.optim.step` (Adam) on its parameter group. The benchmark
times it at batch 128 on 28x28x1 inputs (10 classes), counts its FLOPs
from the shapes (:func:`bioplaus.bench.flops.step_flops`), divides by the
float32 matmul peak measured in the same run, records the peak memory of
live arrays, and, when PyTorch is importable, times the same step written
in PyTorch (``benchmarks/torch_step.py``, the papers' formulation) in the
same run, interleaving the two so that a busy machine slows both alike.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bioplaus import backend, optim
from bioplaus.bench.flops import step_flops
from bioplaus.fast import threads
from bioplaus.config import Config
from bioplaus.net.model import build_model
from bioplaus.net.forward import dropout_masks
from bioplaus.rules.step import step_updates

INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
TORCH_STEP_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "torch_step.py"


# -- the two steps -------------------------------------------------------------------------
def bench_config(net: str, rule: str, *, batch: int = 128, num_layers=None, num_hidden: int = 1024,
                 feat_mult: float = 1.0, dim_in_decoder: int = 4096, dropout: float = 0.0,
                 seed: int = 1, device: str = "cpu") -> Config:
    """The :class:`Config` of a benchmarked step (the papers' defaults otherwise)."""
    return Config(net=net, rule=rule, batch_size=batch, num_layers=num_layers,
                  num_hidden=num_hidden, feat_mult=feat_mult, dim_in_decoder=dim_in_decoder,
                  dropout=dropout, seed=seed, device=device)


class BioplausStep:
    """One training step as the loop runs it: updates, each applied by Adam at once.

    Parameters
    ----------
    cfg : Config
    xp : module
        numpy or cupy.
    x : array (n, c, h, w) float32, y : int array (n,)
        The batch every call trains on (on ``xp``).
    """

    def __init__(self, cfg: Config, xp, x, y, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES):
        self.cfg, self.xp, self.x, self.y = cfg, xp, x, y
        self.model = build_model(cfg, input_shape, num_classes, xp=xp, dtype=np.float32)
        self.ocfg = optim.OptimConfig(name=cfg.optim)
        self.states = {g: optim.init_state(self.model.group_params(g), self.ocfg)
                       for g in self.model.groups}
        self.t = 0
        #: seconds spent in the optimizer's updates, one entry per call (on a
        #: GPU the time to queue them, as nothing waits for the device)
        self.update_log = []

    def masks(self):
        return dropout_masks(self.model, self.x.shape[0], self.cfg.dropout, self.cfg.seed, self.t)

    def __call__(self):
        m = self.model
        upd_s = 0.0
        for upd in step_updates(m, self.x, self.y, self.masks()):
            t0 = time.perf_counter()
            m.k.optimizer_step(m.group_params(upd.group), upd.grads, self.states[upd.group],
                               self.cfg.lr, self.ocfg)
            upd_s += time.perf_counter() - t0
        self.update_log.append(upd_s)
        self.t += 1

    def state_bytes(self) -> int:
        """Bytes of the arrays the step keeps between calls: parameters, buffers,
        fixed matrices and optimizer moments."""
        m = self.model
        arrays = [*m.params.values(), *m.buffers.values(), *m.fixed.values()]
        for st in self.states.values():
            for slot, d in st.items():
                if slot != "step":
                    arrays.extend(d.values())
        return int(sum(a.nbytes for a in arrays))


def load_torch_step():
    """The PyTorch formulation (``benchmarks/torch_step.py``) as a module, or ``(None, why)``."""
    if importlib.util.find_spec("torch") is None:
        return None, "torch is not installed"
    if not TORCH_STEP_FILE.is_file():
        return None, f"{TORCH_STEP_FILE} not found (bioplaus installed without its benchmarks/)"
    spec = importlib.util.spec_from_file_location("bioplaus_bench_torch_step", TORCH_STEP_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, ""


def make_batch(xp, n: int, input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, seed: int = 0):
    """A fixed random float32 batch on ``xp`` whose labels cover every class."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + tuple(input_shape), dtype=np.float32)
    y = (np.arange(n) % num_classes).astype(np.int64)
    rng.shuffle(y)
    return backend.to_device(x, xp), backend.to_device(y, xp), x, y


class MatmulPeak:
    """The float32 matrix-product peak: one ``size``^3 product per call.

    Called as one more contender in :func:`time_interleaved`, it is sampled
    beside every step, so each row's ``%peak`` compares the step with the
    peak the machine gave at the same moment.
    """

    def __init__(self, xp, size: int = 4096):
        rng = np.random.default_rng(0)
        self.xp, self.size = xp, int(size)
        self.a = backend.to_device(rng.standard_normal((size, size), dtype=np.float32), xp)
        self.b = backend.to_device(rng.standard_normal((size, size), dtype=np.float32), xp)
        self.c = xp.empty((size, size), dtype=np.float32)
        self.calls = 1
        sync = lambda: backend.synchronize(xp)  # noqa: E731
        _timed(self, sync)
        once = _timed(self, sync)
        self.calls = max(1, int(0.05 / max(once, 1e-9)))  # a call lasts 50 ms at least

    def __call__(self):
        for _ in range(self.calls):
            self.xp.matmul(self.a, self.b, out=self.c)

    def gflops(self, seconds: float) -> float:
        """GFLOP/s of a call that took ``seconds``."""
        return 2.0 * self.size ** 3 * self.calls / seconds / 1e9

    def measure(self, repeats: int = 3) -> float:
        """Median GFLOP/s of ``repeats`` products after one warm-up."""
        sync = lambda: backend.synchronize(self.xp)  # noqa: E731
        s = time_interleaved({"peak": self}, {"peak": sync}, repeats)["peak"]
        return self.gflops(statistics.median(s))


def _timed(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def time_interleaved(fns: dict, syncs: dict, repeats: int, warmup: int = 1,
                     pause: float = 0.3) -> dict:
    """Seconds of each call of every ``fns[k]``, the callables taking turns.

    Returns ``{k: [seconds, ...]}`` (``repeats`` samples each) after
    ``warmup`` untimed calls of each. With more than one callable, every
    timed call is preceded by ``pause`` seconds of sleep: the BLAS threads
    of one library spin for a while after their last call (OpenBLAS about
    0.1 s) and, on a machine with few cores, would steal the next library's
    cores; measured on 2 cores, PyTorch's mlp step takes 2.7x as long right
    after a NumPy step as after a 0.2 s pause.
    """
    for _ in range(warmup):
        for k, fn in fns.items():
            _timed(fn, syncs[k])
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if len(fns) > 1 and pause > 0:
                time.sleep(pause)
            samples[k].append(_timed(fn, syncs[k]))
    return samples


# -- the table ------------------------------------------------------------------------------
COLUMNS = ("net", "rule", "ms/step", "min ms", "img/s", "GFLOP", "GFLOP/s", "%peak",
           "state MB", "peak MB", "torch ms", "ratio", "min ratio", "upd ms", "torch upd")


def _fmt_row(r: dict) -> str:
    def f(v, spec):
        return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))

    return (f"{r['net']:<8}{r['rule']:<10}{f(r['ms'], '10.1f')}{f(r['min_ms'], '10.1f')}"
            f"{f(r['img_s'], '9.1f')}{f(r['gflop'], '9.2f')}{f(r['gflops'], '9.1f')}"
            f"{f(r['pct_peak'], '7.0f')}%{f(r['state_mb'], '10.1f')}{f(r['peak_mb'], '9.1f')}"
            f"{f(r['torch_ms'], '10.1f')}{f(r['ratio'], '7.2f')}{f(r['min_ratio'], '11.2f')}"
            f"{f(r['upd_ms'], '8.1f')}{f(r['torch_upd_ms'], '11.1f')}")


def _header() -> str:
    w = (8, 10, 10, 10, 9, 9, 9, 8, 10, 9, 10, 7, 11, 8, 11)
    return "".join(f"{c:<{n}}" if i < 2 else f"{c:>{n}}" for i, (c, n) in enumerate(zip(COLUMNS, w)))


def machine_line() -> str:
    """The load average: the figures are only as quiet as the machine."""
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "load average n/a"


def run_steps_bench(nets=("mlp", "vgg8b"), rules=("predsim", "pred-bio", "backprop"), *,
                    batch: int = 128, repeats: int = 3, device: str = "cpu", use_torch: bool = True,
                    out=print, num_hidden: int = 1024, feat_mult: float = 1.0,
                    dim_in_decoder: int = 4096, dropout: float = 0.0, peak_size: int = 4096,
                    input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, tf32: bool = False) -> dict:
    """Time whole training steps of every (net, rule) and print one row each.

    Both libraries multiply in strict float32 unless ``tf32`` (``--tf32``, GPU
    only): then both allow TF32 tensor cores (CuPy's compute type, torch's
    ``allow_tf32``), so the comparison stays like with like.

    Returns ``{"peak": GFLOP/s at the start, "rows": [dict per (net, rule)]}``;
    each row holds ``ms`` (median ms/step), ``min_ms``, ``img_s``, ``gflop``,
    ``gflops``, ``peak`` (median matmul peak sampled beside the row's steps),
    ``pct_peak``, ``state_mb`` (parameters, buffers, fixed
    matrices, optimizer moments), ``peak_mb`` (the most bytes a step
    allocates on top of them: tracemalloc on the CPU, CuPy's pool on a
    GPU), ``torch_ms``, ``ratio`` (bioplaus / torch, of the medians) and
    ``min_ratio`` (of the fastest steps: on a busy machine the least
    disturbed ones); None without torch.
    """
    from bioplaus.bench.memory import step_peak_bytes

    xp = backend.get_xp(device)
    precision = backend.set_tf32(xp, tf32)  # refuses --tf32 on the CPU
    torch_mod, why = load_torch_step() if use_torch else (None, "--no-torch")
    if torch_mod is not None and device == "gpu" and not torch_mod.torch.cuda.is_available():
        torch_mod, why = None, "this torch has no CUDA; a CPU time is no comparison for a GPU step"
    peak_fn = MatmulPeak(xp, peak_size)
    peak = peak_fn.measure(3)
    lib = f"{xp.__name__} {xp.__version__}"
    out(f"bioplaus step benchmark: device {device} ({lib}), {precision}, batch {batch}, "
        f"inputs {'x'.join(map(str, input_shape))}, {num_classes} classes, dropout {dropout}, "
        f"Adam; median of {repeats} steps after 1 warm-up")
    from bioplaus.runinfo import machine_description

    out(f"machine: {machine_description(xp)}; {machine_line()}")
    if device == "cpu":
        out(f"host threads: {threads.host_threads()} (im2col, col2im, optimizer); OpenBLAS idle "
            f"threads spin 2^{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '28 (its default)')} "
            "cycles (OPENBLAS_THREAD_TIMEOUT; the command line sets 22)")
    out(f"float32 matmul peak ({peak_size}^3): {peak:.1f} GFLOP/s at the start; sampled again "
        f"beside every timed step, and each row's %peak uses the median of its own samples")
    if torch_mod is None:
        out(f"PyTorch formulation: not timed ({why})")
    else:
        torch = torch_mod.torch
        where = (f"CUDA ({torch.cuda.get_device_name()}), {torch_mod.float32_products(tf32)}"
                 if device == "gpu" else f"{torch.get_num_threads()} threads")
        out(f"PyTorch formulation: benchmarks/torch_step.py, torch {torch.__version__}, "
            f"{where}, timed in turn with bioplaus (0.3 s pause "
            f"before each timed step, so neither library's idle BLAS threads spin on the other's)")
    out("GFLOP: matrix products of the step (encoders fwd + dW [+ dx for backprop], local "
        "decoders, sim heads, similarity matrices, output layer); peak MB: arrays a step "
        "allocates on top of state MB; upd ms: the optimizer's updates within the step "
        "(CPU only; a GPU queues them without waiting)")
    out("")
    out(_header())
    rows = []
    x, y, x_host, y_host = make_batch(xp, batch, input_shape, num_classes)
    for net in nets:
        for rule in rules:
            cfg = bench_config(net, rule, batch=batch, num_hidden=num_hidden, feat_mult=feat_mult,
                               dim_in_decoder=dim_in_decoder, dropout=dropout, device=device)
            bp = BioplausStep(cfg, xp, x, y, input_shape, num_classes)
            flops = step_flops(bp.model, batch)
            fns = {"bioplaus": bp, "peak": peak_fn}
            syncs = {"bioplaus": lambda: backend.synchronize(xp),
                     "peak": lambda: backend.synchronize(xp)}
            if torch_mod is not None and rule in torch_mod.RULES:
                tdev = "cuda" if device == "gpu" else "cpu"
                ts = torch_mod.TorchStep(bp.model, lr=cfg.lr, dropout=dropout, device=tdev,
                                         tf32=tf32)
                xt, yt = torch_mod.inputs(x_host, y_host, tdev)
                fns["torch"] = lambda ts=ts, xt=xt, yt=yt: ts.step(xt, yt)
                syncs["torch"] = lambda tdev=tdev: torch_mod.synchronize(tdev)
            samples = time_interleaved(fns, syncs, repeats)
            upd = bp.update_log[-repeats:]  # the timed calls' optimizer updates
            peak_bytes = step_peak_bytes(bp, xp)
            med = statistics.median(samples["bioplaus"])
            row_peak = peak_fn.gflops(statistics.median(samples["peak"]))
            row = {"net": net, "rule": rule, "ms": 1e3 * med, "peak": row_peak,
                   "min_ms": 1e3 * min(samples["bioplaus"]), "img_s": batch / med,
                   "gflop": flops.total / 1e9, "gflops": flops.total / med / 1e9,
                   "pct_peak": 100 * flops.total / med / 1e9 / row_peak,
                   "state_mb": bp.state_bytes() / 2**20, "peak_mb": peak_bytes / 2**20,
                   "torch_ms": None, "ratio": None, "min_ratio": None, "samples": samples,
                   "flops": flops, "torch_upd_ms": None,
                   "upd_ms": 1e3 * statistics.median(upd) if device == "cpu" else None}
            if "torch" in samples:
                tmed = statistics.median(samples["torch"])
                row["torch_ms"] = 1e3 * tmed
                row["ratio"] = med / tmed
                row["min_ratio"] = min(samples["bioplaus"]) / min(samples["torch"])
                if device == "cpu":
                    row["torch_upd_ms"] = 1e3 * statistics.median(ts.update_log[-repeats:])
            rows.append(row)
            out(_fmt_row(row))
            del bp, fns
    out("")
    peaks = [r["peak"] for r in rows]
    out(f"matmul peak beside the rows: {min(peaks):.1f} to {max(peaks):.1f} GFLOP/s; "
        f"machine after the run: {machine_line()}")
    return {"peak": peak, "rows": rows}

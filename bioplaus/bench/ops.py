"""Throughput of the dense and convolution ops against the machine's matmul peak.

The shapes are those of the papers' nets at batch 128 on 28x28 inputs:
the fully connected layers of ``mlp`` 3x1024 and the conv layers of
``vgg8b`` (cfg ``128 256 M 256 512 M 512 M 512 M``, 3x3 pad 1). Each op
runs forward then backward (``dW``, ``db`` and ``dx``, the latter with
``B = W``); the FLOP count is :math:`2 \\cdot MACs` for the forward and
twice that for the backward (one product for ``dW``, one for ``dx``). The
peak is a large square float32 ``matmul`` measured in the same run, so the
ratio says how close each op comes to what the BLAS (or cuBLAS) can do on
this machine. Every number is a median over ``repeats`` timed samples; on a
GPU the device is synchronised before each clock reading.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from bioplaus import backend
from bioplaus.ops.conv import conv2d_backward, conv2d_forward
from bioplaus.ops.linear import linear_backward, linear_forward

VGG8B_CFG = (128, 256, "M", 256, 512, "M", 512, "M", 512, "M")


def mlp_linear_shapes(d_in=784, num_hidden=1024, num_layers=3, num_classes=10):
    """``(name, d_in, d_out)`` of every dense layer of an mlp, output layer last."""
    dims = [d_in] + [num_hidden] * num_layers + [num_classes]
    names = [f"fc{i + 1}" for i in range(num_layers)] + ["out"]
    return [(name, a, b) for name, a, b in zip(names, dims[:-1], dims[1:])]


def vgg_conv_shapes(cfg=VGG8B_CFG, c_in=1, size=28):
    """``(name, c_in, c_out, size)`` of every conv layer of a VGG cfg (``M`` halves the size)."""
    shapes = []
    for v in cfg:
        if v == "M":
            size //= 2
            continue
        shapes.append((f"conv{len(shapes) + 1}", c_in, int(v), size))
        c_in = int(v)
    return shapes


def _median_seconds(fn, xp, repeats, min_sample=0.02):
    """Median seconds per call of ``fn`` over ``repeats`` samples.

    One warm-up call; a sample repeats ``fn`` enough times to last at least
    ``min_sample`` seconds (fast ops), then divides.
    """
    fn()
    backend.synchronize(xp)
    t0 = time.perf_counter()
    fn()
    backend.synchronize(xp)
    once = time.perf_counter() - t0
    calls = max(1, int(min_sample / max(once, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        backend.synchronize(xp)
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def _random(xp, rng, shape, scale=1.0, channel_major=False):
    """A float32 normal array on ``xp``; ``channel_major`` lays out (n, c, h, w) as (c, n, h, w) in memory."""
    if channel_major:
        n, c, h, w = shape
        a = rng.standard_normal((c, n, h, w), dtype=np.float32).transpose(1, 0, 2, 3)
    else:
        a = rng.standard_normal(shape, dtype=np.float32)
    a = backend.to_device(a * np.float32(scale), xp)
    return a


def matmul_peak(xp, size, repeats):
    """Median GFLOP/s of a ``size``^3 float32 matrix product (the reference peak)."""
    rng = np.random.default_rng(0)
    a = _random(xp, rng, (size, size))
    b = _random(xp, rng, (size, size))
    c = xp.empty((size, size), dtype=np.float32)
    seconds = _median_seconds(lambda: xp.matmul(a, b, out=c), xp, repeats)
    return 2.0 * size**3 / seconds / 1e9


def _row(out, name, shape, t_fwd, t_bwd, gflop, peak):
    rate = gflop / (t_fwd + t_bwd)
    out(f"{name:<10}{shape:<26}{t_fwd * 1e3:>10.2f}{t_bwd * 1e3:>10.2f}"
        f"{gflop:>10.2f}{rate:>11.1f}{100 * rate / peak:>8.0f}%")
    return rate


def run_ops_bench(repeats=5, out=print, device="cpu", batch=128, peak_size=4096):
    """Time linear and conv2d forward+backward at mlp 3x1024 and vgg8b shapes.

    Parameters
    ----------
    repeats : int
        Timed samples per measurement; medians are reported.
    out : callable
        Receives each line of the report (``print`` by default).
    device : {'cpu', 'gpu'}
        NumPy or CuPy (:func:`bioplaus.backend.get_xp`).
    batch : int
        Mini-batch size (128 in the papers' recipes).
    peak_size : int
        Side of the square float32 matmul that measures the peak.

    Returns
    -------
    dict
        ``peak`` (GFLOP/s, measured first; the ratios use it), ``peak_end``
        (measured again last, as a check that the machine's speed did not
        change during the run), ``linear`` and ``conv`` (name -> GFLOP/s),
        ``all_linear`` and ``all_conv`` (GFLOP/s over the whole set).
    """
    xp = backend.get_xp(device)
    rng = np.random.default_rng(0)
    lib = f"{xp.__name__} {xp.__version__}"
    out(f"bioplaus op benchmark: device {device} ({lib}), float32, batch {batch}, "
        f"median of {repeats}")
    peak = matmul_peak(xp, peak_size, max(repeats, 5))
    out(f"float32 matmul peak ({peak_size}^3): {peak:.1f} GFLOP/s")
    out("forward + backward (dW, db, dx with B = W); GFLOP = 3 x 2 x MACs")
    header = f"{'op':<10}{'shape':<26}{'fwd ms':>10}{'bwd ms':>10}{'GFLOP':>10}{'GFLOP/s':>11}{'peak':>9}"
    result = {"peak": peak, "linear": {}, "conv": {}}

    out("")
    out(header)
    totals = [0.0, 0.0]
    for name, d_in, d_out in mlp_linear_shapes():
        x = _random(xp, rng, (batch, d_in))
        W = _random(xp, rng, (d_out, d_in), d_in**-0.5)
        b = _random(xp, rng, (d_out,), d_in**-0.5)
        dy = _random(xp, rng, (batch, d_out))
        cache = linear_forward(x, W, b)[1]
        t_fwd = _median_seconds(lambda: linear_forward(x, W, b), xp, repeats)
        t_bwd = _median_seconds(lambda: linear_backward(dy, cache), xp, repeats)
        gflop = 3 * 2 * batch * d_in * d_out / 1e9
        result["linear"][name] = _row(out, name, f"{batch}x{d_in} -> {d_out}", t_fwd, t_bwd, gflop, peak)
        totals = [totals[0] + gflop, totals[1] + t_fwd + t_bwd]
    result["all_linear"] = totals[0] / totals[1]
    out(f"{'all linear':<36}{'':>20}{totals[0]:>10.2f}{result['all_linear']:>11.1f}"
        f"{100 * result['all_linear'] / peak:>8.0f}%")

    out("")
    out(header)
    totals = [0.0, 0.0]
    for name, c_in, c_out, size in vgg_conv_shapes():
        # inputs and upstream errors laid out as the conv, pool and norm ops hand them on
        x = _random(xp, rng, (batch, c_in, size, size), channel_major=True)
        W = _random(xp, rng, (c_out, c_in, 3, 3), (9 * c_in) ** -0.5)
        b = _random(xp, rng, (c_out,), (9 * c_in) ** -0.5)
        dy = _random(xp, rng, (batch, c_out, size, size), channel_major=True)
        fwd = lambda: conv2d_forward(x, W, b, 1, 1)  # noqa: E731
        cache = fwd()[1]
        t_fwd = _median_seconds(fwd, xp, repeats)
        t_bwd = _median_seconds(lambda: conv2d_backward(dy, cache), xp, repeats)
        del cache
        gflop = 3 * 2 * batch * size * size * c_out * c_in * 9 / 1e9
        shape = f"{c_in}->{c_out} @{size}x{size} 3x3"
        result["conv"][name] = _row(out, name, shape, t_fwd, t_bwd, gflop, peak)
        totals = [totals[0] + gflop, totals[1] + t_fwd + t_bwd]
    result["all_conv"] = totals[0] / totals[1]
    out(f"{'all conv':<36}{'':>20}{totals[0]:>10.2f}{result['all_conv']:>11.1f}"
        f"{100 * result['all_conv'] / peak:>8.0f}%")
    out("")
    peak_end = matmul_peak(xp, peak_size, max(repeats, 5))
    result["peak_end"] = peak_end
    out(f"float32 matmul peak measured again at the end: {peak_end:.1f} GFLOP/s"
        + ("" if abs(peak_end - peak) <= 0.1 * peak else
           " (differs by more than 10%: the machine was busy; the ratios are unreliable)"))
    return result

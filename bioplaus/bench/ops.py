"""Throughput of the dense and convolution ops against the machine's matmul peak.

The shapes are those of the papers' nets at batch 128 on 28x28 inputs:
the fully connected layers of ``mlp`` 3x1024 and the conv layers of
``vgg8b`` (cfg ``128 256 M 256 512 M 512 M 512 M``, 3x3 pad 1). Each op
runs forward then backward (``dW``, ``db`` and ``dx``, the latter with
``B = W``); the FLOP count is :math:`2 \\cdot MACs` for the forward and
twice that for the backward (one product for ``dW``, one for ``dx``). The
peak is a large square float32 ``matmul`` measured in the same run,
interleaved with the ops' samples, so the ratio says how close each op
comes to what the BLAS (or cuBLAS) can do on this machine at that moment.
Every number is a median over ``repeats`` timed samples; on a GPU the
device is synchronised before each clock reading.

The tables time the fast path (:func:`bioplaus.kernels.fast`), which
training uses by default. A last table times the fast path beside the
reference (:data:`bioplaus.kernels.REFERENCE`) for vgg8b's second conv
layer, the max pooling after it and its local decoder's average pooling,
at batch 32 (or the bench's batch if smaller): the reference reads as the
equations and is not meant to be fast, the ratio says what the fast wing
buys.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from bioplaus import backend, kernels
from bioplaus.ops.avgpool import decoder_pool_geometry

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


def _calls_per_sample(fn, xp, min_sample=0.02):
    """Calls of ``fn`` that make a sample of at least ``min_sample`` seconds (after a warm-up)."""
    fn()
    backend.synchronize(xp)
    t0 = time.perf_counter()
    fn()
    backend.synchronize(xp)
    return max(1, int(min_sample / max(time.perf_counter() - t0, 1e-9)))


def _sample(fn, xp, calls):
    """Seconds per call of ``fn``, averaged over ``calls`` back-to-back calls."""
    backend.synchronize(xp)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    backend.synchronize(xp)
    return (time.perf_counter() - t0) / calls


def _random(xp, rng, shape, scale=1.0, channel_major=False):
    """A float32 normal array on ``xp``.

    ``channel_major`` lays a shape ``(n, c, h, w)`` out as ``(c, n, h, w)`` in memory.
    """
    if channel_major:
        n, c, h, w = shape
        a = rng.standard_normal((c, n, h, w), dtype=np.float32).transpose(1, 0, 2, 3)
    else:
        a = rng.standard_normal(shape, dtype=np.float32)
    a = backend.to_device(a * np.float32(scale), xp)
    return a


def _peak_fn(xp, size):
    """A ``size``^3 float32 matrix product into a preallocated output, and its FLOPs."""
    rng = np.random.default_rng(0)
    a = _random(xp, rng, (size, size))
    b = _random(xp, rng, (size, size))
    c = xp.empty((size, size), dtype=np.float32)
    return (lambda: xp.matmul(a, b, out=c)), 2.0 * size**3


class _Timer:
    """Times ops in samples interleaved with samples of the matmul peak.

    Each of ``repeats`` rounds takes one peak sample, then one sample of each
    op, so an op and the peak it is compared with see the same machine
    (other processes on a shared machine slow both alike).
    """

    def __init__(self, xp, repeats, peak_size):
        self.xp, self.repeats = xp, repeats
        self.peak_fn, self.peak_flop = _peak_fn(xp, peak_size)
        self.peak_calls = _calls_per_sample(self.peak_fn, xp)
        self.peak_samples = []  # GFLOP/s, every sample taken

    def run(self, fns):
        """Median seconds per call of each of ``fns``, and the median peak (GFLOP/s) beside them."""
        calls = [_calls_per_sample(fn, self.xp) for fn in fns]
        samples, peaks = [[] for _ in fns], []
        for _ in range(self.repeats):
            peaks.append(self.peak_flop / _sample(self.peak_fn, self.xp, self.peak_calls) / 1e9)
            for fn, n, acc in zip(fns, calls, samples):
                acc.append(_sample(fn, self.xp, n))
        self.peak_samples += peaks
        return [statistics.median(acc) for acc in samples], statistics.median(peaks)


def _table(out, title, rows, timer):
    """Time and print one section; ``rows`` yields ``(name, shape, gflop, fwd, bwd)``.

    Returns ``(GFLOP/s per row name, GFLOP/s of the whole section, peak beside it)``.
    """
    out("")
    out(f"{title:<36}{'fwd ms':>10}{'bwd ms':>10}{'GFLOP':>9}{'GFLOP/s':>10}{'peak':>8}"
        f"{'of peak':>9}")
    rates, total_flop, total_s, peaks = {}, 0.0, 0.0, []
    for name, shape, gflop, fwd, bwd in rows:
        (t_fwd, t_bwd), peak = timer.run([fwd, bwd])
        rates[name] = gflop / (t_fwd + t_bwd)
        out(f"{name:<8}{shape:<28}{t_fwd * 1e3:>10.2f}{t_bwd * 1e3:>10.2f}{gflop:>9.2f}"
            f"{rates[name]:>10.1f}{peak:>8.0f}{100 * rates[name] / peak:>8.0f}%")
        total_flop, total_s = total_flop + gflop, total_s + t_fwd + t_bwd
        peaks.append(peak)
    rate, peak = total_flop / total_s, statistics.median(peaks)
    out(f"{'all ' + title.split(' ')[0]:<36}{'':>20}{total_flop:>9.2f}{rate:>10.1f}{peak:>8.0f}"
        f"{100 * rate / peak:>8.0f}%")
    return rates, rate, peak


def _linear_rows(xp, rng, batch, k):
    """Rows of :func:`_table` for the dense layers of mlp 3x1024, with the kernels ``k``."""
    linear_forward, linear_backward = k.linear_forward, k.linear_backward
    for name, d_in, d_out in mlp_linear_shapes():
        x = _random(xp, rng, (batch, d_in))
        W = _random(xp, rng, (d_out, d_in), d_in**-0.5)
        b = _random(xp, rng, (d_out,), d_in**-0.5)
        dy = _random(xp, rng, (batch, d_out))
        cache = linear_forward(x, W, b)[1]
        gflop = 3 * 2 * batch * d_in * d_out / 1e9
        yield (name, f"{batch}x{d_in} -> {d_out}", gflop,
               lambda x=x, W=W, b=b: linear_forward(x, W, b),
               lambda dy=dy, cache=cache: linear_backward(dy, cache))


def _conv_rows(xp, rng, batch, k):
    """Rows of :func:`_table` for the conv layers of vgg8b (one layer's arrays alive at a time)."""
    conv2d_forward, conv2d_backward = k.conv2d_forward, k.conv2d_backward
    for name, c_in, c_out, size in vgg_conv_shapes():
        # input and upstream error laid out as the conv, pool and norm ops hand them on
        x = _random(xp, rng, (batch, c_in, size, size), channel_major=True)
        W = _random(xp, rng, (c_out, c_in, 3, 3), (9 * c_in) ** -0.5)
        b = _random(xp, rng, (c_out,), (9 * c_in) ** -0.5)
        dy = _random(xp, rng, (batch, c_out, size, size), channel_major=True)
        cache = conv2d_forward(x, W, b, 1, 1)[1]
        gflop = 3 * 2 * batch * size * size * c_out * c_in * 9 / 1e9
        yield (name, f"{c_in}->{c_out} @{size}x{size} 3x3 p1", gflop,
               lambda x=x, W=W, b=b: conv2d_forward(x, W, b, 1, 1),
               lambda dy=dy, cache=cache: conv2d_backward(dy, cache))
        del x, dy, cache


def _like(xp, a, values):
    """``values`` copied into an array with ``a``'s shape, dtype and memory order."""
    out = xp.empty_like(a)
    out[...] = values
    return out


def _path_fns(xp, rng, batch, k):
    """``{row name: (forward, backward)}`` of conv2, its max pooling and its decoder's
    average pooling with the kernels ``k``, each fed the layout ``k``'s ops hand on."""
    _, c_in, c_out, size = vgg_conv_shapes()[1]
    x = _random(xp, rng, (batch, c_in, size, size))
    W = _random(xp, rng, (c_out, c_in, 3, 3), (9 * c_in) ** -0.5)
    b = _random(xp, rng, (c_out,), (9 * c_in) ** -0.5)
    h, conv_cache = k.conv2d_forward(x, W, b, 1, 1)
    dh = _like(xp, h, _random(xp, rng, h.shape))
    p, pool_cache = k.maxpool2d_forward(h, 2, 2)
    dp = _like(xp, p, _random(xp, rng, p.shape))
    kernel, pad, _ = decoder_pool_geometry(c_out, size, 4096)
    a, avg_cache = k.avgpool2d_forward(h, kernel, pad)
    da = _random(xp, rng, a.shape)
    return {
        "conv2": (lambda: k.conv2d_forward(x, W, b, 1, 1),
                  lambda: k.conv2d_backward(dh, conv_cache)),
        "maxpool": (lambda: k.maxpool2d_forward(h, 2, 2),
                    lambda: k.maxpool2d_backward(dp, pool_cache)),
        "avgpool": (lambda: k.avgpool2d_forward(h, kernel, pad),
                    lambda: k.avgpool2d_backward(da, avg_cache)),
    }, {
        "conv2": f"{c_in}->{c_out} @{size}x{size} 3x3 p1",
        "maxpool": f"{c_out} @{size}x{size} 2x2 s2",
        "avgpool": f"{c_out} @{size}x{size} {kernel[0]}x{kernel[1]} p{pad[0]},{pad[1]}",
    }


def _compare_paths(out, xp, batch, timer):
    """Time and print the fast path beside the reference; ``{row: (fast fwd, fast bwd,
    reference fwd, reference bwd)}`` in seconds."""
    rng = np.random.default_rng(1)
    fast, shapes = _path_fns(xp, rng, batch, kernels.fast(xp))
    ref, _ = _path_fns(xp, np.random.default_rng(1), batch, kernels.REFERENCE)
    out("")
    out(f"{f'fast vs reference (vgg8b, batch {batch})':<36}{'fwd ms':>10}{'bwd ms':>10}"
        f"{'ref fwd':>10}{'ref bwd':>10}{'ref/fast':>10}")
    result = {}
    for name in fast:
        times, _ = timer.run([*fast[name], *ref[name]])
        result[name] = tuple(times)
        f_fwd, f_bwd, r_fwd, r_bwd = (t * 1e3 for t in times)
        out(f"{name:<8}{shapes[name]:<28}{f_fwd:>10.2f}{f_bwd:>10.2f}{r_fwd:>10.2f}{r_bwd:>10.2f}"
            f"{(r_fwd + r_bwd) / (f_fwd + f_bwd):>9.1f}x")
    return result


def run_ops_bench(repeats=5, out=print, device="cpu", batch=128, peak_size=None):
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
    peak_size : int, optional
        Side of the square float32 matmul that measures the peak
        (default 2048 on the CPU, 4096 on the GPU).

    Returns
    -------
    dict
        ``peak`` (median GFLOP/s of every peak sample of the run),
        ``linear`` and ``conv`` (name -> GFLOP/s), ``all_linear`` and
        ``all_conv`` (GFLOP/s over each set), ``ratio_linear``,
        ``ratio_conv`` (each set's rate over the peak measured beside it)
        and ``paths`` (row -> seconds of the fast forward, fast backward,
        reference forward and reference backward).

    Notes
    -----
    Each row's samples are interleaved with samples of the peak product
    (:class:`_Timer`), and its ratio is taken against the peak measured
    during that row: on a shared machine, load from other processes then
    slows the op and its reference alike.
    """
    xp = backend.get_xp(device)
    peak_size = peak_size or (2048 if device == "cpu" else 4096)
    rng = np.random.default_rng(0)
    timer = _Timer(xp, repeats, peak_size)
    out(f"bioplaus op benchmark: device {device} ({xp.__name__} {xp.__version__}), float32, "
        f"batch {batch}, median of {repeats} samples")
    out(f"forward + backward (dW, db, dx with B = W): GFLOP = 3 x 2 x MACs; 'peak' is the "
        f"GFLOP/s of a {peak_size}^3 float32 matmul, sampled between the op's samples")
    out("path: fast (bioplaus.fast where it has a twin, as training uses by default)")
    k = kernels.fast(xp)
    result = {}
    result["linear"], result["all_linear"], peak_lin = _table(
        out, "linear (mlp 3x1024, 28x28)", _linear_rows(xp, rng, batch, k), timer)
    result["conv"], result["all_conv"], peak_conv = _table(
        out, "conv2d (vgg8b, 28x28)", _conv_rows(xp, rng, batch, k), timer)
    result["paths"] = _compare_paths(out, xp, min(batch, 32), timer)
    result["ratio_linear"] = result["all_linear"] / peak_lin
    result["ratio_conv"] = result["all_conv"] / peak_conv
    result["peak"] = statistics.median(timer.peak_samples)
    lo, hi = min(timer.peak_samples), max(timer.peak_samples)
    out("")
    out(f"matmul peak over the run: median {result['peak']:.1f} GFLOP/s "
        f"(samples {lo:.1f} to {hi:.1f})"
        + (" -- the machine's speed varied (other load?)" if hi > 1.25 * lo else ""))
    return result

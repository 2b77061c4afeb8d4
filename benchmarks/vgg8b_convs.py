r"""The encoder convolutions of one vgg8b training step, alone, in bioplaus and in PyTorch.

``bioplaus bench steps`` times whole steps; this script times only the part
that dominates a vgg8b step, its six 3x3 convolutions, each forward and
backward as a training step runs it, in both libraries:

* bioplaus (the fast table, ``bioplaus.kernels.fast()``): ``conv2d_forward``
  (im2col, one product, the bias) and ``conv2d_backward`` (``dW`` and ``db``;
  with ``--dx``, also ``dx`` through one more product and col2im);
* PyTorch: ``F.conv2d`` forward and its autograd backward for the same
  tensors (``dW``, ``db``; ``dx`` with ``--dx``), oneDNN's direct
  convolution on this CPU.

With ``--products``, two more columns: the same matrix products alone, as
bioplaus's fast convolution forms them from its unrolled input (forward
``W (c_out, c_in*9) @ cols (c_in*9, n*h*w)``, ``dW = cols @ dY^T``, with
``--dx`` also ``W^T @ dY``), on ready-made random matrices, in NumPy (its
BLAS) and in ``torch.mm`` (torch's): whether a gap between the libraries'
convolutions is in bioplaus's code around the products or in the products.

Without ``--dx`` the work is that of a local rule (``pred``, ``pred-bio``:
every block's input is detached, so no error crosses a convolution); with it,
that of backprop and feedback alignment (every layer but the first).

Shapes: vgg8b's encoders on 28x28x1 inputs (Fashion-MNIST) at batch 128
(``--batch``), float32; the inputs of the later layers have the sizes the
2x2 max-pools give. Inputs are random: a convolution's time does not depend
on its values. The two libraries take turns (``--repeats`` rounds, a pause
before each so that neither library's idle BLAS threads hold the cores the
other needs); medians per layer and for the sum, and their ratio. Run it as
``python benchmarks/vgg8b_convs.py [--dx]``; it needs torch (the test extra).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "22")  # as the command line sets it

import numpy as np  # noqa: E402


def layers(batch):
    """``(name, x shape, W shape)`` of vgg8b's convolutions (3x3, stride 1, pad 1)."""
    from bioplaus.net.spec import build_net

    spec = build_net("vgg8b", (1, 28, 28), 10)
    return [(b.name, (batch, b.n_in, b.in_hw, b.in_hw), (b.n_out, b.n_in, 3, 3))
            for b in spec.blocks if b.kind == "conv"]


def flops(shapes, dx: bool) -> float:
    """FLOPs of the products (2 per multiply-add): forward and dW, and dx where asked."""
    total = 0.0
    for i, (_, xs, ws) in enumerate(shapes):
        n, c, h, w = xs
        one = 2.0 * n * h * w * ws[0] * c * 9
        total += one * (3 if dx and i > 0 else 2)
    return total


def bioplaus_layer(xs, ws, need_dx, rng):
    from bioplaus import kernels

    k = kernels.fast()
    x = rng.standard_normal(xs, dtype=np.float32)
    W = rng.standard_normal(ws, dtype=np.float32) * 0.05
    b = rng.standard_normal(ws[0], dtype=np.float32)
    dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3]), dtype=np.float32)

    def run():
        y, cache = k.conv2d_forward(x, W, b, stride=1, pad=1)
        # the upstream error arrives in the output's memory order, as in a step
        d = np.empty_like(y)
        d[...] = dy
        k.conv2d_backward(d, cache, need_dx=need_dx)

    return run


def products_layer(xs, ws, need_dx, rng, mm, wrap):
    """The products of one layer's forward and backward on random matrices of the
    shapes bioplaus's unrolled convolution multiplies (``mm``: a matrix product;
    ``wrap``: NumPy array -> the library's)."""
    n, c, h, w = xs
    W = wrap(rng.standard_normal((ws[0], c * 9), dtype=np.float32))
    cols = wrap(rng.standard_normal((c * 9, n * h * w), dtype=np.float32))
    dY = wrap(rng.standard_normal((ws[0], n * h * w), dtype=np.float32))

    def run():
        mm(W, cols)  # forward
        mm(cols, dY.T)  # dW
        if need_dx:
            mm(W.T, dY)  # the unrolled input's error

    return run


def torch_layer(xs, ws, need_dx, rng, torch):
    F = torch.nn.functional
    x = torch.from_numpy(rng.standard_normal(xs, dtype=np.float32)).requires_grad_(need_dx)
    W = torch.from_numpy(rng.standard_normal(ws, dtype=np.float32) * 0.05).requires_grad_()
    b = torch.from_numpy(rng.standard_normal(ws[0], dtype=np.float32)).requires_grad_()
    dy = torch.from_numpy(rng.standard_normal((xs[0], ws[0], xs[2], xs[3]), dtype=np.float32))

    def run():
        y = F.conv2d(x, W, b, stride=1, padding=1)
        torch.autograd.grad(y, [x, W, b] if need_dx else [W, b], dy)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dx", action="store_true",
                    help="also the error at each input but the first (backprop, fa)")
    ap.add_argument("--products", action="store_true",
                    help="also the products alone, NumPy against torch.mm")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of turns (5)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds before each turn (0.3)")
    args = ap.parse_args(argv)
    for name in ("batch", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    rng = np.random.default_rng(0)
    shapes = layers(args.batch)
    fns = {}
    for i, (name, xs, ws) in enumerate(shapes):
        need = args.dx and i > 0
        fns[name] = {"bioplaus": bioplaus_layer(xs, ws, need, rng),
                     "torch": torch_layer(xs, ws, need, rng, torch)}
        if args.products:
            fns[name]["numpy products"] = products_layer(xs, ws, need, rng, np.matmul, np.asarray)
            fns[name]["torch.mm"] = products_layer(xs, ws, need, rng, torch.mm, torch.from_numpy)
    samples = {name: {lib: [] for lib in pair} for name, pair in fns.items()}
    for name in fns:  # one untimed call each (allocations, oneDNN's primitive cache)
        for fn in fns[name].values():
            fn()
    for _ in range(args.repeats):
        for name, pair in fns.items():
            for lib, fn in pair.items():
                time.sleep(args.pause)
                t0 = time.perf_counter()
                fn()
                samples[name][lib].append(time.perf_counter() - t0)
    flop = flops(shapes, args.dx)
    print(f"vgg8b's six 3x3 convolutions, forward + dW + db{' + dx (not the first)' if args.dx else ''}"
          f", batch {args.batch}, 28x28x1 inputs, float32: {flop / 1e9:.1f} GFLOP of products; "
          f"median of {args.repeats} turns")
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    print(f"versions: numpy {np.__version__} ({cfg.get('name')} {cfg.get('version')}); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}")
    extra = ["numpy products", "torch.mm"] if args.products else []
    head = f"{'layer':<12} {'x':>18} {'bioplaus ms':>12} {'torch ms':>10} {'ratio':>6}"
    if extra:
        head += f" {'numpy products ms':>18} {'torch.mm ms':>12} {'ratio':>6}"
    print(head)
    tot = {lib: 0.0 for lib in ["bioplaus", "torch"] + extra}

    def row(name, xs, med):
        line = (f"{name:<12} {xs:>18} {1e3 * med['bioplaus']:12.1f} {1e3 * med['torch']:10.1f} "
                f"{med['bioplaus'] / med['torch']:6.2f}")
        if extra:
            line += (f" {1e3 * med['numpy products']:18.1f} {1e3 * med['torch.mm']:12.1f} "
                     f"{med['numpy products'] / med['torch.mm']:6.2f}")
        print(line)

    for name, xs, _ in shapes:
        med = {lib: statistics.median(v) for lib, v in samples[name].items()}
        for lib in tot:
            tot[lib] += med[lib]
        row(name, str(xs), med)
    row("sum", "", tot)
    print(f"GFLOP/s of the products: " + ", ".join(f"{lib} {flop / t / 1e9:.1f}" for lib, t in tot.items()))


if __name__ == "__main__":
    main()

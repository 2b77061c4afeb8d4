r"""The matrix products of one mlp local training step, alone, in NumPy and in PyTorch.

``bioplaus bench steps`` times whole steps; this script separates the part
both libraries hand to their BLAS library. It replays, with the shapes and
memory layouts each formulation uses, every product of one step of an mlp
with linear blocks under a local rule with a learned similarity head
(``predsim``; the defaults are the papers' mlp 3x1024 at batch 128):

per block, forward ``x W^T + b`` (``F.linear`` / ``x @ W.T``), the
decoder's forward, weight gradient and error, the sim head's forward,
weight gradient and error, ``S = X X^T`` and its gradient's product, the
labels' ``S(Y)``, and
the encoder's weight gradient ``dy^T x``; then the output layer's forward
and weight gradient. Inputs are random: a product's time does not depend
on its values.

The two libraries take turns (``--repeats`` rounds, a pause before each so
that neither library's idle BLAS threads hold the cores the other needs);
each turn times ``--calls`` replays back to back after one untimed replay.
Run it as ``python benchmarks/mlp_products.py``; it needs torch (the test
extra) and prints medians and their ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "22")  # as the command line sets it

import numpy as np  # noqa: E402


def shapes(dims, num_classes):
    """Per block ``(d_in, d_out)``; the output layer reads the last ``d_out``."""
    return list(zip(dims[:-1], dims[1:])), (dims[-1], num_classes)


def replay_flops(blocks, out, n) -> float:
    """FLOPs of one replay (2 per multiply-add; the same count as ``bench steps``)."""
    C = out[1]
    flop = 0.0
    for d_in, d_out in blocks:  # encoder fwd + dW, decoder x3, sim head x3, S(r), its gradient
        flop += 2 * n * (2 * d_in * d_out + 3 * d_out * C + 3 * d_out * d_out + 2 * n * d_out
                         + n * C)  # and S(Y) of the one-hot labels
    return flop + 2 * n * 2 * out[0] * C  # output layer fwd + dW


def numpy_replay(blocks, out, n, rng):
    """One step's products with NumPy, as bioplaus's ops compute them."""
    a = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    arrays = []
    for d_in, d_out in blocks:
        arrays.append(dict(x=a(n, d_in), W=a(d_out, d_in), b=a(d_out), Wd=a(out[1], d_out),
                           Ws=a(d_out, d_out), dy=a(n, d_out), dz=a(n, out[1]),
                           dS=a(n, n), Y=a(n, out[1])))
    Wo, xo, dzo = a(out[1], out[0]), a(n, out[0]), a(n, out[1])

    def replay():
        for p in arrays:
            h = p["x"] @ p["W"].T  # encoder forward, (n, d_out)
            h += p["b"]
            _ = h @ p["Wd"].T  # decoder forward (n, C)
            _ = p["dz"].T @ h  # decoder dW (C, d_out)
            _ = p["dz"] @ p["Wd"]  # decoder error (n, d_out)
            r = h @ p["Ws"].T  # sim head forward (n, d_out)
            _ = r @ r.T  # S(r) (n, n)
            _ = p["Y"] @ p["Y"].T  # S(Y) of the labels (n, n)
            dr = (p["dS"] + p["dS"].T) @ r  # gradient of S through the product (n, d_out)
            _ = dr.T @ h  # sim head dW (d_out, d_out)
            _ = dr @ p["Ws"]  # sim head error (n, d_out)
            _ = p["dy"].T @ p["x"]  # encoder dW (d_out, d_in)
        _ = xo @ Wo.T  # output layer forward
        _ = dzo.T @ xo  # output layer dW

    return replay


def torch_replay(blocks, out, n, rng, torch):
    """The same products with PyTorch, as autograd computes them for ``F.linear``."""
    F = torch.nn.functional
    a = lambda *s: torch.from_numpy(rng.standard_normal(s, dtype=np.float32))  # noqa: E731
    arrays = []
    for d_in, d_out in blocks:
        arrays.append(dict(x=a(n, d_in), W=a(d_out, d_in), b=a(d_out), Wd=a(out[1], d_out),
                           bd=a(out[1]), Ws=a(d_out, d_out), dy=a(n, d_out),
                           dz=a(n, out[1]), dS=a(n, n), Y=a(n, out[1])))
    Wo, bo, xo, dzo = a(out[1], out[0]), a(out[1]), a(n, out[0]), a(n, out[1])

    def replay():
        with torch.no_grad():
            for p in arrays:
                h = F.linear(p["x"], p["W"], p["b"])
                _ = F.linear(h, p["Wd"], p["bd"])
                _ = p["dz"].t() @ h
                _ = p["dz"] @ p["Wd"]
                r = F.linear(h, p["Ws"])
                _ = r @ r.t()
                _ = p["Y"] @ p["Y"].t()
                dr = (p["dS"] + p["dS"].t()) @ r
                _ = dr.t() @ h
                _ = dr @ p["Ws"]
                _ = p["dy"].t() @ p["x"]
            _ = F.linear(xo, Wo, bo)
            _ = dzo.t() @ xo

    return replay


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1024, help="units per block (1024)")
    ap.add_argument("--blocks", type=int, default=3, help="hidden blocks (3)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=15, help="rounds of turns (15)")
    ap.add_argument("--calls", type=int, default=3, help="timed replays per turn (3)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds before each turn (0.3)")
    args = ap.parse_args(argv)
    for name in ("hidden", "blocks", "batch", "repeats", "calls"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    import torch

    blocks, out = shapes([28 * 28] + [args.hidden] * args.blocks, 10)
    rng = np.random.default_rng(0)
    fns = {"numpy": numpy_replay(blocks, out, args.batch, rng),
           "torch": torch_replay(blocks, out, args.batch, rng, torch)}
    flop = replay_flops(blocks, out, args.batch)
    samples = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            time.sleep(args.pause)
            fn()
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            samples[k].append((time.perf_counter() - t0) / args.calls)
    cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    print(f"matrix products of one mlp {args.blocks}x{args.hidden} local step (sim head, decoder), "
          f"batch {args.batch}: {flop / 1e9:.2f} GFLOP; median of {args.repeats} turns of "
          f"{args.calls} replays")
    print(f"versions: numpy {np.__version__} ({cfg.get('name')} {cfg.get('version')}); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}")
    med = {k: statistics.median(v) for k, v in samples.items()}
    for k, v in med.items():
        print(f"{k:<6} {1e3 * v:8.2f} ms   {flop / v / 1e9:7.4g} GFLOP/s   "
              f"(min {1e3 * min(samples[k]):.2f} ms)")
    print(f"ratio numpy / torch: {med['numpy'] / med['torch']:.2f}")


if __name__ == "__main__":
    main()

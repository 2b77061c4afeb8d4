"""Adam, AMSGrad and SGD, fast twin of :func:`bioplaus.optim.step`: in place, in cache-sized
blocks, on the host threads.

The same signature, the same state (created, saved and restored by
:mod:`bioplaus.optim`) and, up to rounding, the same updates as the
reference (``tests/fast/test_fast_optim.py``). What differs:

* every moment and parameter is updated in place (``out=``), with at most
  two temporaries of a parameter's size;
* Adam's step is rearranged: ``m <- m + (1 - beta1)(g - m)``, and the bias
  corrections are folded into the step size and eps,
  :math:`\\eta c / (1-\\beta_1^t) \\cdot m / (\\sqrt{v} + \\epsilon c)` with
  :math:`c = \\sqrt{1-\\beta_2^t}`, one pass fewer than the textbook form;
* large NumPy parameters are cut into blocks of :data:`CACHE_BLOCK` values,
  each run through every pass while it is in a core's cache, the blocks and
  the small parameters spread over the host threads
  (:func:`bioplaus.fast.threads.run_shared`).
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import threads
from bioplaus.optim import _count_steps


def step(params, grads, state, lr, cfg):
    """Fast :func:`bioplaus.optim.step` (same arguments, same effect)."""
    jobs = []
    for name, p, g, t in _count_steps(params, grads, state, cfg):
        if cfg.name == "sgd":  # b: the momentum buffer (None without momentum)
            b = state["momentum_buffer"][name] if cfg.momentum != 0 else None
            jobs.append((_sgd, [p, g, b], (t == 1, lr, cfg)))
        else:  # v_hat: AMSGrad's running max (None for Adam)
            v_hat = state["max_exp_avg_sq"][name] if cfg.name == "amsgrad" else None
            jobs.append((_adam, [p, g, state["exp_avg"][name], state["exp_avg_sq"][name], v_hat],
                         (t, lr, cfg)))
    _run_elementwise(jobs)


# Large parameters are updated in blocks of this many values, each block run
# through every pass of the kernel (an Adam update makes twelve) while its
# arrays are still in the core's cache, so the arrays cross the memory bus about
# once per step instead of once per pass. 2^17 values (512 KiB per float32 array)
# was the fastest block on this project's 2-core CPU (2 MiB L2 per core): smaller
# blocks pay more per-call overhead, larger ones spill the cache.
CACHE_BLOCK = 1 << 17


def _run_elementwise(jobs):
    """Run ``fn(*arrays, *args)`` for each job; large NumPy ones in cache-sized blocks.

    ``arrays`` starts with the parameter; entries may be None (a state the
    optimizer does not keep). A NumPy parameter of at least two
    :data:`CACHE_BLOCK` values (C-contiguous, as its state) is cut into
    blocks of its flattened arrays, each run through the whole kernel
    before the next; the host threads (:func:`bioplaus.fast.threads.host_threads`)
    take the blocks in turn, each the next one as soon as it is free. Every kernel is
    elementwise, so a block is updated exactly as the whole would be: the
    result does not depend on the block size or the number of threads.
    """
    inline, blocks = [], []
    for fn, arrays, args in jobs:
        p, g, state = arrays[0], arrays[1], arrays[2:]
        if (array_module(p) is np and p.size >= 2 * CACHE_BLOCK
                and all(a.flags.c_contiguous for a in [p, *state] if a is not None)):
            # flat views (the gradient may need a copy); then the blocks
            flat = [p.reshape(-1), np.ascontiguousarray(g).reshape(-1)]
            flat += [None if a is None else a.reshape(-1) for a in state]
            for lo in range(0, p.size, CACHE_BLOCK):
                hi = lo + CACHE_BLOCK
                blocks.append((fn, [None if a is None else a[lo:hi] for a in flat], args))
        else:
            inline.append((fn, arrays, args))
    # in turn to whichever host thread is free
    threads.run_shared([partial(fn, *arrays, *args) for fn, arrays, args in inline + blocks])


def _adam(p, g, m, v, v_hat, t, lr, cfg):
    """Adam on one set of arrays; AMSGrad when ``v_hat`` (its running max of v) is given."""
    xp = array_module(p)
    beta1, beta2 = cfg.betas
    if cfg.weight_decay != 0:
        g_wd = p * cfg.weight_decay  # temporary 1
        g_wd += g
        g = g_wd  # g + weight_decay * p
    buf = xp.empty_like(p)  # temporary 2
    xp.subtract(g, m, out=buf)
    buf *= 1 - beta1
    m += buf  # m <- m + (1 - beta1)(g - m)
    xp.multiply(g, g, out=buf)
    buf *= 1 - beta2
    v *= beta2
    v += buf  # v <- beta2 v + (1 - beta2) g^2
    if v_hat is not None:
        xp.maximum(v_hat, v, out=v_hat)
        v = v_hat
    # lr/(1-beta1^t) * m / (sqrt(v)/c + eps) with c = sqrt(1-beta2^t), written as
    # (lr c/(1-beta1^t)) * m / (sqrt(v) + eps c): one pass fewer, same value up to rounding
    c = math.sqrt(1 - beta2**t)
    xp.sqrt(v, out=buf)
    buf += cfg.eps * c  # denominator, times c
    xp.divide(m, buf, out=buf)
    buf *= lr * c / (1 - beta1**t)
    p -= buf


def _sgd(p, g, b, first, lr, cfg):
    """SGD on one set of arrays; with momentum when its buffer ``b`` is given
    (``first``: the parameter's first step)."""
    xp = array_module(p)
    if cfg.weight_decay != 0:
        g_wd = p * cfg.weight_decay  # temporary 1
        g_wd += g
        g = g_wd  # g + weight_decay * p
    if b is not None:
        if first:
            xp.copyto(b, g)  # torch: buffer = clone(g) at the first step
        else:
            b *= cfg.momentum
            b += g
        g = b
    buf = xp.multiply(g, lr)  # temporary 2
    p -= buf

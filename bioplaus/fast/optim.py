"""Adam, AMSGrad and SGD, fast twin of :func:`bioplaus.optim.step`: one compiled pass per parameter.

The same signature, the same state (created, saved and restored by
:mod:`bioplaus.optim`) and the same updates as the reference
(``tests/fast/test_fast_optim.py``):

* NumPy parameters (C-contiguous, as :mod:`bioplaus.optim` makes them and
  their state) are updated by the compiled loops of :mod:`bioplaus.fast.jit`:
  each element of the parameter, its gradient and its moments is read and
  written once, on one thread (see :mod:`bioplaus.fast.jit` for why), with the
  reference's operations in the reference's order, so the result is the
  reference's bitwise. On this project's 2-core CPU, nothing else running,
  the optimizer's share of an mlp 3x1024 predsim step (``bench steps``'s
  ``upd ms``, median of 15) went from 15.3 ms before the reference/fast split
  (the operators below in cache-sized blocks on two threads) to 6.6 ms
  (runs/bench/cpu-steps-ab-f1f5251-e2f61f6.txt).
* Other arrays (CuPy's) take NumPy/CuPy operators in place (``out=``), with
  at most two temporaries of a parameter's size; Adam's step is rearranged
  there: ``m <- m + (1 - beta1)(g - m)``, and the bias corrections are folded
  into the step size and eps,
  :math:`\\eta c / (1-\\beta_1^t) \\cdot m / (\\sqrt{v} + \\epsilon c)` with
  :math:`c = \\sqrt{1-\\beta_2^t}`: the same values up to rounding, one pass fewer.
"""
from __future__ import annotations

import math

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import jit
from bioplaus.optim import _count_steps


def step(params, grads, state, lr, cfg):
    """Fast :func:`bioplaus.optim.step` (same arguments, same effect)."""
    for name, p, g, t in _count_steps(params, grads, state, cfg):
        if cfg.name == "sgd":  # b: the momentum buffer (None without momentum)
            b = state["momentum_buffer"][name] if cfg.momentum != 0 else None
            arrays = jit.flat(p, _like(g, p), *([] if b is None else [b]))
            if arrays is None:
                _sgd(p, g, b, t == 1, lr, cfg)
            else:
                _sgd_compiled(*arrays[:2], arrays[2] if b is not None else arrays[0],
                              t == 1, lr, cfg, use_momentum=b is not None)
        else:  # v_hat: AMSGrad's running max (None for Adam)
            v_hat = state["max_exp_avg_sq"][name] if cfg.name == "amsgrad" else None
            m, v = state["exp_avg"][name], state["exp_avg_sq"][name]
            arrays = jit.flat(p, _like(g, p), m, v, *([] if v_hat is None else [v_hat]))
            if arrays is None:
                _adam(p, g, m, v, v_hat, t, lr, cfg)
            else:
                _adam_compiled(*arrays[:4], arrays[4] if v_hat is not None else arrays[3],
                               t, lr, cfg, amsgrad=v_hat is not None)


def _like(g, p):
    """The gradient in the parameter's memory order (a copy only where it differs)."""
    if type(g) is np.ndarray and type(p) is np.ndarray and g.strides != p.strides:
        return np.ascontiguousarray(g) if p.flags.c_contiguous else g
    return g


def _adam_compiled(p, g, m, v, v_max, t, lr, cfg, amsgrad):
    """One Adam/AMSGrad update of flat NumPy arrays (:func:`bioplaus.fast.jit.adam`), its
    scalars computed as the reference computes them, then taken into the arrays' dtype."""
    T = p.dtype.type
    beta1, beta2 = cfg.betas
    jit.call(jit.adam, p, g, m, v, v_max, T(beta1), T(beta2), T(1 - beta1), T(1 - beta2),
             T(1 - beta1**t), T(1 - beta2**t), T(lr), T(cfg.eps), T(cfg.weight_decay),
             cfg.weight_decay != 0, amsgrad)


def _sgd_compiled(p, g, b, first, lr, cfg, use_momentum):
    """One SGD update of flat NumPy arrays (:func:`bioplaus.fast.jit.sgd`)."""
    T = p.dtype.type
    jit.call(jit.sgd, p, g, b, T(lr), T(cfg.momentum), T(cfg.weight_decay), cfg.weight_decay != 0,
             use_momentum, first)


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

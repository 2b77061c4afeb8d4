"""Functional optimizers (Adam, AMSGrad, SGD) applied in place, and the lr schedule.

Rules compute gradients; these functions apply them. Each parameter group
(one block, or the output layer) has its own state, as the reference code
gives every block its own ``torch.optim`` optimizer. The updates equal
``torch.optim.Adam`` (``amsgrad=False/True``) and ``torch.optim.SGD``
(dampening 0, no Nesterov), including weight decay as an L2 term added to
the gradient.

State layout
------------
The state is a plain dict, so a checkpoint can save and restore it exactly::

    {"step":           {name: int},     # updates applied to that parameter
     "exp_avg":        {name: array},   # Adam/AMSGrad: first moment m
     "exp_avg_sq":     {name: array},   # Adam/AMSGrad: second moment v
     "max_exp_avg_sq": {name: array},   # AMSGrad only: running max of v
     "momentum_buffer": {name: array}}  # SGD with momentum != 0 only

Every array has its parameter's shape, dtype and device. The step count is
kept per parameter, as torch does, so a parameter that receives no gradient
in a step is left entirely alone. :func:`state_arrays` flattens the state to
``{"<slot>/<name>": array}`` (step counts as 0-d int64 arrays) for a file;
:func:`load_state_arrays` inverts it.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import partial

import numpy as np

from .fast import threads
from .backend import array_module, to_device, to_numpy

#: Optimizer names accepted by :class:`OptimConfig` (the reference's ``--optim``).
OPTIMIZERS = ("adam", "amsgrad", "sgd")

_ADAM_SLOTS = ("exp_avg", "exp_avg_sq")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings (the learning rate is passed to :func:`step`).

    Attributes
    ----------
    name : {'adam', 'amsgrad', 'sgd'}
    betas : tuple of float
        Adam's ``(beta1, beta2)``.
    eps : float
        Adam's denominator term.
    momentum : float
        SGD momentum (0: plain SGD, no buffer).
    weight_decay : float
        L2 coefficient added to the gradient: ``g + weight_decay * p``.
    """

    name: str = "adam"
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        object.__setattr__(self, "betas", betas)
        for field in ("eps", "momentum", "weight_decay"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")


def _slots(cfg):
    if cfg.name == "sgd":
        return ("momentum_buffer",) if cfg.momentum != 0 else ()
    return _ADAM_SLOTS + (("max_exp_avg_sq",) if cfg.name == "amsgrad" else ())


def init_state(params, cfg):
    """Fresh optimizer state for one parameter group.

    Parameters
    ----------
    params : dict of str -> array
        The group's parameters.
    cfg : OptimConfig

    Returns
    -------
    state : dict
        Step counts 0 and zero moments/buffers shaped like each parameter
        (layout in the module docstring).
    """
    state = {"step": {name: 0 for name in params}}
    for slot in _slots(cfg):
        state[slot] = {name: array_module(p).zeros_like(p) for name, p in params.items()}
    return state


def step(params, grads, state, lr, cfg):
    """Apply one update to every parameter that has a gradient, in place.

    Parameters
    ----------
    params : dict of str -> array
        Updated in place: each array keeps its identity (views of it see
        the new values).
    grads : dict of str -> array or None
        Gradients by parameter name; a name that is absent or None is
        skipped (its parameter, moments and step count are left alone).
    state : dict
        From :func:`init_state` with the same ``cfg``; updated in place.
    lr : float
        Learning rate for this step (see :func:`lr_at_epoch`).
    cfg : OptimConfig

    Notes
    -----
    With :math:`g \\leftarrow g + \\lambda p` (weight decay :math:`\\lambda`)
    and :math:`t` the parameter's step count after increment, Adam
    (Kingma & Ba 2015, as ``torch.optim.Adam``):

    .. math::

        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\quad
        p \\leftarrow p - \\frac{\\eta}{1-\\beta_1^t}
            \\frac{m}{\\sqrt{v} / \\sqrt{1-\\beta_2^t} + \\epsilon}

    AMSGrad (Reddi et al. 2018, as torch) keeps
    :math:`\\hat v \\leftarrow \\max(\\hat v, v)` and uses :math:`\\hat v`
    in place of :math:`v` in the denominator. SGD (as ``torch.optim.SGD``,
    dampening 0): :math:`b \\leftarrow g` at the first step, then
    :math:`b \\leftarrow \\mu b + g`; :math:`p \\leftarrow p - \\eta b`
    (:math:`b = g` when :math:`\\mu = 0`).

    Each parameter costs at most two temporaries of its size; float32
    stays float32.
    """
    missing = [slot for slot in _slots(cfg) if slot not in state]
    if missing:
        raise ValueError(
            f"optimizer state lacks {', '.join(missing)} needed by {cfg.name!r}; "
            "build it with init_state(params, cfg) for the same config"
        )
    jobs = []
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            continue
        if name not in state["step"]:
            raise KeyError(f"parameter {name!r} has no optimizer state; add it with init_state")
        if g.shape != p.shape:
            raise ValueError(f"gradient of {name!r} has shape {g.shape}, the parameter {p.shape}")
        state["step"][name] += 1
        t = state["step"][name]
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


def lr_at_epoch(epoch, lr, milestones, factor):
    """Learning rate of an epoch (epochs counted from 1, as the reference).

    Parameters
    ----------
    epoch : int
        1-based epoch.
    lr : float
        Initial learning rate.
    milestones : sequence of int
        Epochs after which the rate is multiplied by ``factor``.
    factor : float
        Decay factor (the reference's ``--lr-decay-fact``, 0.25).

    Returns
    -------
    float
        ``lr * factor ** bisect_right(sorted(milestones), epoch - 1)``: with
        milestones 100, 150, the rate drops at epochs 101 and 151.
    """
    return lr * factor ** bisect_right(sorted(milestones), epoch - 1)


def state_arrays(state):
    """Flatten a state to ``{"<slot>/<name>": array}`` for a checkpoint.

    Step counts become 0-d int64 NumPy arrays; moments stay on their device
    (the caller moves them to the host when writing).
    """
    out = {f"step/{name}": np.asarray(t, dtype=np.int64) for name, t in state["step"].items()}
    for slot, arrays in state.items():
        if slot != "step":
            out.update({f"{slot}/{name}": a for name, a in arrays.items()})
    return out


def load_state_arrays(arrays, xp=np):
    """Inverse of :func:`state_arrays`: rebuild a state on ``xp``.

    Parameters
    ----------
    arrays : dict of str -> array
        ``{"<slot>/<name>": array}`` as written by :func:`state_arrays`.
    xp : module
        numpy or cupy: where the moments should live.
    """
    state = {"step": {}}
    for key, a in arrays.items():
        slot, _, name = key.partition("/")
        if not name:
            raise ValueError(f"bad optimizer state key {key!r}; expected '<slot>/<name>'")
        if slot == "step":
            state["step"][name] = int(to_numpy(a))
        else:
            state.setdefault(slot, {})[name] = to_device(a, xp).copy()
    return state

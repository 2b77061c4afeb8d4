"""Functional optimizers (Adam, AMSGrad, SGD) applied in place, and the lr schedule.

This is the reference: each update written as the textbook states it, with
explicit bias correction (docs/paths.md: the two paths). The optimizer
state is created and serialised here for both paths.

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

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

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


def _count_steps(params, grads, state, cfg):
    """Check one step's inputs and count it: ``[(name, p, g, t)]`` for every parameter
    with a gradient, ``t`` its step count after the increment."""
    missing = [slot for slot in _slots(cfg) if slot not in state]
    if missing:
        raise ValueError(
            f"optimizer state lacks {', '.join(missing)} needed by {cfg.name!r}; "
            "build it with init_state(params, cfg) for the same config"
        )
    todo = []
    for name, p in params.items():
        g = grads.get(name)
        if g is None:
            continue
        if name not in state["step"]:
            raise KeyError(f"parameter {name!r} has no optimizer state; add it with init_state")
        if g.shape != p.shape:
            raise ValueError(f"gradient of {name!r} has shape {g.shape}, the parameter {p.shape}")
        todo.append((name, p, g))
    for name, _, _ in todo:
        state["step"][name] += 1
    return [(name, p, g, state["step"][name]) for name, p, g in todo]


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
    (Kingma & Ba 2015, Algorithm 1, as ``torch.optim.Adam``):

    .. math::

        m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad
        v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\quad
        \\hat m = \\frac{m}{1-\\beta_1^t}, \\quad
        \\hat v = \\frac{v}{1-\\beta_2^t}, \\quad
        p \\leftarrow p - \\eta \\frac{\\hat m}{\\sqrt{\\hat v} + \\epsilon}

    AMSGrad (Reddi et al. 2018, as torch) keeps the running maximum
    :math:`v_{\\max} \\leftarrow \\max(v_{\\max}, v)` and bias-corrects it in
    place of :math:`v`. SGD (as ``torch.optim.SGD``, dampening 0, no
    Nesterov): :math:`b \\leftarrow g` at the first step, then
    :math:`b \\leftarrow \\mu b + g`; :math:`p \\leftarrow p - \\eta b`
    (:math:`b = g` when :math:`\\mu = 0`). float32 stays float32.
    """
    for name, p, g, t in _count_steps(params, grads, state, cfg):
        if cfg.weight_decay != 0:
            g = g + cfg.weight_decay * p  # L2 term added to the gradient
        if cfg.name == "sgd":
            if cfg.momentum != 0:
                b = g.copy() if t == 1 else cfg.momentum * state["momentum_buffer"][name] + g
                state["momentum_buffer"][name] = b
                g = b
            p -= lr * g
            continue
        beta1, beta2 = cfg.betas
        m = beta1 * state["exp_avg"][name] + (1 - beta1) * g  # first moment
        v = beta2 * state["exp_avg_sq"][name] + (1 - beta2) * (g * g)  # second moment
        state["exp_avg"][name], state["exp_avg_sq"][name] = m, v
        if cfg.name == "amsgrad":
            v = array_module(v).maximum(state["max_exp_avg_sq"][name], v)  # running maximum
            state["max_exp_avg_sq"][name] = v
        m_hat = m / (1 - beta1**t)  # bias corrections
        v_hat = v / (1 - beta2**t)
        p -= lr * m_hat / (array_module(p).sqrt(v_hat) + cfg.eps)


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

"""Adam as one CuPy kernel per parameter: twin of :func:`bioplaus.optim.step`.

The reference's Adam update is about twelve kernels per parameter (the
moments, the bias corrections, the square root, the step), each reading and
writing parameter-sized arrays; here one pass reads the gradient and updates
the parameter and both moments in place, with the reference's expression
term by term (:data:`ADAM`). AMSGrad and SGD are left to the fast wing's
host-side twin (:func:`bioplaus.fast.optim.step`, which on CuPy runs the
reference arithmetic).
"""
from __future__ import annotations

from bioplaus.fast import optim as fast_optim
from bioplaus.fast.cuda import elementwise
from bioplaus.optim import _count_steps

#: The reference's Adam, term by term: m and v updated, bias-corrected, the step taken.
ADAM = """
T m_new = beta1 * m + omb1 * gg;
T v_new = beta2 * v + omb2 * (gg * gg);
m = m_new;
v = v_new;
T m_hat = m_new / bc1;
T v_hat = v_new / bc2;
p = p - (lr * m_hat) / (sqrt(v_hat) + eps);
"""
_PARAMS = "T g, T wd, T beta1, T omb1, T beta2, T omb2, T bc1, T bc2, T lr, T eps"


def _kernel(weight_decay: bool):
    # the reference adds weight_decay * p only when weight_decay != 0 (0 * inf would be NaN)
    grad = "T gg = g + wd * p;" if weight_decay else "T gg = g;"
    return elementwise(_PARAMS, "T p, T m, T v", grad + ADAM,
                       "bioplaus_adam_wd" if weight_decay else "bioplaus_adam")


def step(params, grads, state, lr, cfg):
    """CUDA :func:`bioplaus.optim.step` (same arguments, same effect); Adam fused."""
    if cfg.name != "adam":
        return fast_optim.step(params, grads, state, lr, cfg)
    beta1, beta2 = cfg.betas
    k = _kernel(cfg.weight_decay != 0)
    for name, p, g, t in _count_steps(params, grads, state, cfg):
        d = p.dtype.type  # Python floats meet a float32 array as float32, as in the reference
        k(g, d(cfg.weight_decay), d(beta1), d(1 - beta1), d(beta2), d(1 - beta2),
          d(1 - beta1**t), d(1 - beta2**t), d(lr), d(cfg.eps),
          p, state["exp_avg"][name], state["exp_avg_sq"][name])

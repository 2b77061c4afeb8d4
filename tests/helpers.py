"""Test utilities: central finite differences and relative errors.

Used by every backward test: the analytic gradient contracted with a random
upstream gradient ``g`` is compared with central differences of
``sum(g * f(x))`` in float64.
"""
import numpy as np

from bioplaus import backend


def rel_error(a, b):
    """max |a-b| / max(|a|, |b|, tiny): a scale-free relative error."""
    a = backend.to_numpy(a).astype(np.float64)
    b = backend.to_numpy(b).astype(np.float64)
    denom = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-12)
    return float(np.abs(a - b).max(initial=0.0) / denom)


def numerical_grad(f, x, g, eps=1e-6, max_entries=None, rng=None):
    """Central differences of ``sum(g * f(x))`` w.r.t. ``x`` (float64, in place).

    ``f`` takes no arguments and reads ``x``; ``x`` is perturbed in place and
    restored. With ``max_entries``, only that many random entries are
    checked; the returned ``idx`` says which (flat indices), others are 0.
    """
    xp = backend.array_module(x)
    flat = x.reshape(-1)
    n = flat.size
    if max_entries is not None and max_entries < n:
        rng = rng or np.random.default_rng(0)
        idx = np.sort(rng.choice(n, size=max_entries, replace=False))
    else:
        idx = np.arange(n)
    grad = np.zeros(n)
    for i in idx:
        old = float(flat[i])
        flat[i] = old + eps
        fp = float(xp.sum(g * f()))
        flat[i] = old - eps
        fm = float(xp.sum(g * f()))
        flat[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad.reshape(x.shape), idx


def check_grad(f, x, g, analytic, eps=1e-6, tol=1e-6, max_entries=None):
    """Assert the analytic gradient matches central differences; return the error."""
    num, idx = numerical_grad(f, x, g, eps=eps, max_entries=max_entries)
    ana = backend.to_numpy(analytic).reshape(-1)[idx]
    err = rel_error(ana, num.reshape(-1)[idx])
    assert err < tol, f"relative error {err:.3e} >= {tol:.1e}"
    return err

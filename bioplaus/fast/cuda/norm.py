"""Batch normalisation with fused CuPy kernels: twin of :mod:`bioplaus.ops.norm` in training.

Training forward: the batch mean as the reference takes it, the variance as
one reduction of ``(x - mu)^2`` (the reference: subtract, square, mean,
three passes and a centred copy of ``x``), then one elementwise pass writing
``xhat`` and ``y``. Training backward: ``dbeta`` as the reference sums it,
``dgamma`` as one reduction of ``dy * xhat`` (no product array), then one
pass for ``dx``. Each elementwise body is the reference's expression term by
term; the reductions sum in CuPy's order. Evaluation (not a step's work) is
the reference's. Same cache (:class:`bioplaus.ops.norm.BatchNormCache`).
"""
from __future__ import annotations

from bioplaus.backend import array_module
from bioplaus.fast.cuda import elementwise, reduction
from bioplaus.ops import norm as ref
from bioplaus.ops.norm import BatchNormCache, _check_shapes, _layout, running_statistics


def _sum_sq_dev(x, mu, axes):
    """``sum((x - mu)^2)`` over ``axes`` (mu broadcast), one pass."""
    k = reduction("T x, T mu", "T out", "(x - mu) * (x - mu)", "a + b", "out = a", "0",
                  "bioplaus_bn_sqdev")
    return k(x, mu, axis=axes)


def _sum_prod(a, b, axes):
    """``sum(a * b)`` over ``axes``, one pass."""
    # (the inputs are not named a, b: those are the reduction's own variables)
    k = reduction("T u, T w", "T out", "u * w", "a + b", "out = a", "0", "bioplaus_bn_dot")
    return k(a, b, axis=axes)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training,
                      momentum=0.1, eps=1e-5):
    """CUDA :func:`bioplaus.ops.norm.batchnorm_forward` (same arguments and results)."""
    axes, pshape, m = _layout(x)
    if not training or m < 2:  # evaluation, and the reference's refusal of m < 2
        return ref.batchnorm_forward(x, gamma, beta, running_mean, running_var, training,
                                     momentum, eps)
    xp = array_module(x)
    _check_shapes(x.shape[1], gamma, beta, running_mean, running_var)
    g = gamma.astype(x.dtype, copy=False).reshape(pshape)
    b = beta.astype(x.dtype, copy=False).reshape(pshape)
    mu = x.mean(axis=axes)  # (c,)
    var = _sum_sq_dev(x, mu.reshape(pshape), axes) / m  # (c,) biased variance
    inv_std = 1.0 / xp.sqrt(var + eps)  # (c,)
    k = elementwise("T x, T mu, T inv_std, T g, T shift", "T xhat, T y",
                    "xhat = (x - mu) * inv_std; y = g * xhat + shift;", "bioplaus_bn_fwd")
    xhat, y = k(x, mu.reshape(pshape), inv_std.reshape(pshape), g, b)
    new_mean, new_var = running_statistics(running_mean, running_var, mu, var, m, momentum)
    cache = BatchNormCache(training=True, xhat=xhat, x=None, mean=None,
                           inv_std=inv_std, gamma=gamma)
    return y, cache, new_mean, new_var


def batchnorm_backward(dy, cache):
    """CUDA :func:`bioplaus.ops.norm.batchnorm_backward` (same arguments and results)."""
    if not cache.training:
        return ref.batchnorm_backward(dy, cache)
    axes, pshape, m = _layout(dy)
    kk = (cache.gamma * cache.inv_std).astype(dy.dtype, copy=False).reshape(pshape)
    xhat = cache.xhat
    dbeta = dy.sum(axis=axes)  # (c,)
    dgamma = _sum_prod(dy, xhat, axes)  # (c,)
    k = elementwise("T dy, T xhat, T kg, T dbm, T dgm", "T dx",
                    "dx = kg * ((dy - dbm) - xhat * dgm);", "bioplaus_bn_bwd")
    dx = k(dy, xhat, kk, dbeta.reshape(pshape) / m, dgamma.reshape(pshape) / m)
    return dx, dgamma, dbeta

"""Batch normalisation, fast twin of :mod:`bioplaus.ops.norm`: channel groups on the host threads.

The same signatures, the same cache (:class:`bioplaus.ops.norm.BatchNormCache`)
and, up to the rounding of the per-channel sums, the same values as the
reference (``tests/fast/test_fast_norm.py``). What differs is how the work
is laid out:

* in training, both passes work on groups of channels of about
  :data:`GROUP_VALUES` values; each group's statistics and elementwise passes
  run while it is still in a core's cache, and the groups spread over the
  host threads (:func:`bioplaus.fast.threads.channel_groups`);
* the elementwise passes write in place (``out=``) into buffers from the
  host pool (:mod:`bioplaus.fast.memory`), keeping the input's memory order;
* per-channel dot products use ``einsum`` on NumPy (one pass, no
  temporary);
* evaluation folds the running statistics into one scale and one shift per
  channel.
"""
from __future__ import annotations

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import memory, threads
from bioplaus.ops.norm import BatchNormCache, _check_shapes, _layout, running_statistics

# In training, both passes work on groups of channels of about this many values
# (1 MiB of float32), each group's statistics and elementwise passes run while
# it is still in a core's cache, the groups spread over the host threads
# (bioplaus.fast.threads.channel_groups). Every channel is normalised on its own, so
# a group gives what the whole batch would, up to the rounding of the
# per-channel sums; the groups depend on the shape only, not on the threads. On
# this project's 2-core CPU the five batch norms of vgg8b's first convolutions
# (channel-major, batch 128) took 215 ms forward and backward as whole arrays,
# 158 ms in groups of 2^17 values and 130 ms in groups of 2^18 or 2^19. An (n, d)
# batch of the mlp (n = 128, d = 1024) is a single group.
GROUP_VALUES = 1 << 18


def _channel_dot(xp, a, b):
    """``sum(a * b)`` per channel over all other axes, shape (c,).

    The same sum either way; only the speed differs. NumPy's ``einsum``
    does it in one pass without a temporary (about 4x faster than
    ``(a * b).sum`` on a (128, 128, 16, 16) float32 batch, same rounding),
    while CuPy's ``einsum`` carries a large fixed cost, so CuPy takes the
    product and a reduction (about 2x faster there).
    """
    if xp is np:
        sub = "nc" + "hwxyz"[: a.ndim - 2]  # 'nc' or 'nchw'
        return np.einsum(f"{sub},{sub}->c", a, b)
    axes = (0,) + tuple(range(2, a.ndim))
    return (a * b).sum(axis=axes)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training,
                      momentum=0.1, eps=1e-5):
    """Fast :func:`bioplaus.ops.norm.batchnorm_forward` (same arguments and results)."""
    xp = array_module(x)
    axes, pshape, m = _layout(x)
    c = x.shape[1]
    _check_shapes(c, gamma, beta, running_mean, running_var)

    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch norm in evaluation mode needs running_mean and running_var")
        inv_std = 1.0 / xp.sqrt(running_var.astype(x.dtype, copy=False) + eps)  # (c,)
        scale = gamma * inv_std  # (c,)
        shift = beta - running_mean * scale  # (c,)
        y = x * scale.astype(x.dtype, copy=False).reshape(pshape)
        y += shift.astype(x.dtype, copy=False).reshape(pshape)
        cache = BatchNormCache(training=False, xhat=None, x=x, mean=running_mean,
                               inv_std=inv_std, gamma=gamma)
        return y, cache, running_mean, running_var

    if m < 2:
        raise ValueError(
            f"batch norm in training mode needs more than 1 value per channel, got input {x.shape}"
        )
    xhat, y = memory.empty_like(x), memory.empty_like(x)
    mu, var, inv_std = (xp.empty(c, dtype=x.dtype) for _ in range(3))  # (c,) each
    g, b = gamma.astype(x.dtype, copy=False), beta.astype(x.dtype, copy=False)
    gshape = (1, -1) + (1,) * (x.ndim - 2)  # a group's per-channel shape

    def normalise(s):  # the channels s, each channel on its own
        xs, xh = x[:, s], xhat[:, s]
        mu_s = xs.mean(axis=axes, keepdims=True)  # (1, |s|[, 1, 1])
        xp.subtract(xs, mu_s, out=xh)  # centred, x-hat in place below
        var_s = _channel_dot(xp, xh, xh) / m  # (|s|,) biased variance
        inv_s = 1.0 / xp.sqrt(var_s + eps)  # (|s|,)
        xh *= inv_s.reshape(gshape)
        ys = y[:, s]
        xp.multiply(xh, g[s].reshape(gshape), out=ys)
        ys += b[s].reshape(gshape)
        mu[s], var[s], inv_std[s] = mu_s.reshape(-1), var_s, inv_s

    threads.channel_groups(normalise, c, m, GROUP_VALUES, on_host=xp is np)

    new_mean, new_var = running_statistics(running_mean, running_var, mu, var, m, momentum)
    cache = BatchNormCache(training=True, xhat=xhat, x=None, mean=None,
                           inv_std=inv_std, gamma=gamma)
    return y, cache, new_mean, new_var


def batchnorm_backward(dy, cache):
    """Fast :func:`bioplaus.ops.norm.batchnorm_backward` (same arguments and results)."""
    xp = array_module(dy)
    axes, pshape, m = _layout(dy)
    inv_std, gamma = cache.inv_std, cache.gamma
    k = (gamma * inv_std).astype(dy.dtype, copy=False)  # (c,) gamma / sqrt(var + eps)
    if not cache.training:
        dbeta = dy.sum(axis=axes)  # (c,)
        xhat = (cache.x - cache.mean.astype(cache.x.dtype, copy=False).reshape(pshape))
        xhat *= inv_std.reshape(pshape)
        dgamma = _channel_dot(xp, dy, xhat)  # (c,)
        dx = dy * k.reshape(pshape)
        return dx, dgamma, dbeta

    xhat, c = cache.xhat, dy.shape[1]
    dx = memory.empty_like(dy)
    dbeta, dgamma = xp.empty(c, dtype=dy.dtype), xp.empty(c, dtype=dy.dtype)
    gshape = (1, -1) + (1,) * (dy.ndim - 2)  # a group's per-channel shape

    def grad(s):  # the channels s, each channel on its own
        dys, xh, dxs = dy[:, s], xhat[:, s], dx[:, s]
        db = dys.sum(axis=axes)  # (|s|,)
        dg = _channel_dot(xp, dys, xh)  # (|s|,)
        xp.multiply(xh, (dg / m).reshape(gshape), out=dxs)
        dxs += (db / m).reshape(gshape)
        xp.subtract(dys, dxs, out=dxs)  # delta - mean(delta) - xhat * mean(delta * xhat)
        dxs *= k[s].reshape(gshape)
        dbeta[s], dgamma[s] = db, dg

    threads.channel_groups(grad, c, m, GROUP_VALUES, on_host=xp is np)
    return dx, dgamma, dbeta

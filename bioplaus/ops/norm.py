"""Batch normalisation over the batch (1d) or over batch and space (2d).

One function pair covers ``BatchNorm1d`` on ``(n, d)`` and ``BatchNorm2d``
on ``(n, c, h, w)``: statistics are taken per channel (axis 1) over every
other axis. It is stateless: the running statistics go in as arrays and
the updated ones come back as new arrays; nothing passed in is modified.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bioplaus import backend
from bioplaus.fast import memory, threads
from bioplaus.backend import array_module


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


class BatchNormCache(NamedTuple):
    """What :func:`batchnorm_backward` needs from the forward pass.

    Attributes
    ----------
    training : bool
        Whether batch statistics (True) or running statistics (False) were used.
    xhat : array, shape of x, or None
        Training: the normalised input :math:`\\hat x`. None in evaluation.
    x : array, shape of x, or None
        Evaluation: the input (for ``dgamma``). None in training.
    mean : array, shape (c,), or None
        Evaluation: the running mean used. None in training.
    inv_std : array, shape (c,)
        :math:`1 / \\sqrt{\\sigma^2 + \\epsilon}` with the variance used.
    gamma : array, shape (c,)
        The scale used.
    """

    training: bool
    xhat: object
    x: object
    mean: object
    inv_std: object
    gamma: object


def _layout(x):
    """Reduction axes, broadcast shape of a per-channel array, and count per channel."""
    if x.ndim < 2:
        raise ValueError(f"batch norm needs an input of shape (n, c, ...), got shape {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channel axis
    pshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # (1, c) or (1, c, 1, 1)
    m = x.size // x.shape[1]  # values per channel: n or n*h*w
    return axes, pshape, m


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
    """Batch normalisation with an affine map, in training or evaluation mode.

    Parameters
    ----------
    x : array, shape (n, d) or (n, c, h, w)
        Input; statistics are per channel (axis 1) over all other axes.
    gamma, beta : array, shape (c,)
        Scale and shift (PyTorch's ``weight`` and ``bias``).
    running_mean, running_var : array, shape (c,), or None
        Running statistics. Required in evaluation. In training they may be
        None (no running statistics kept); then None is returned for them.
    training : bool
        True: normalise with the batch statistics and update the running
        ones. False: normalise with the running statistics.
    momentum : float
        Weight of the batch statistic in the running update (PyTorch's
        convention, default 0.1).
    eps : float
        Added to the variance (default 1e-5).

    Returns
    -------
    y : array, shape of ``x``
    cache : BatchNormCache
    new_running_mean, new_running_var : array, shape (c,), or None
        Training: new arrays holding the updated statistics. Evaluation: the
        running arrays that were passed in, unchanged.

    Raises
    ------
    ValueError
        On mismatched shapes, missing running statistics in evaluation, or a
        training batch with a single value per channel.

    Notes
    -----
    Training (Ioffe & Szegedy 2015, Alg. 1), with :math:`m` values per channel:

    .. math::

        \\mu = \\frac1m \\sum_i x_i, \\quad
        \\sigma^2 = \\frac1m \\sum_i (x_i - \\mu)^2, \\quad
        \\hat x_i = \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad
        y_i = \\gamma \\hat x_i + \\beta

    and the running statistics, as ``torch.nn.BatchNorm1d/2d`` (used by the
    reference code of Nøkland & Eidnes 2019) updates them, with the
    *unbiased* variance:

    .. math::

        \\bar\\mu \\leftarrow (1 - \\rho)\\bar\\mu + \\rho\\mu, \\qquad
        \\bar\\sigma^2 \\leftarrow (1 - \\rho)\\bar\\sigma^2 + \\rho \\frac{m}{m-1}\\sigma^2

    Evaluation: :math:`y = \\gamma (x - \\bar\\mu) / \\sqrt{\\bar\\sigma^2 + \\epsilon} + \\beta`,
    computed as one scale and one shift per channel.
    """
    xp = array_module(x)
    axes, pshape, m = _layout(x)
    c = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta),
                    ("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and a.shape != (c,):
            raise ValueError(f"batch norm: {name} must have shape ({c},), got {a.shape}")

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

    new_mean = new_var = None
    if running_mean is not None:
        new_mean = (1.0 - momentum) * running_mean + momentum * mu.astype(
            running_mean.dtype, copy=False)
    if running_var is not None:
        unbiased = var * (m / (m - 1.0))  # (c,)
        new_var = (1.0 - momentum) * running_var + momentum * unbiased.astype(
            running_var.dtype, copy=False)
    cache = BatchNormCache(training=True, xhat=xhat, x=None, mean=None,
                           inv_std=inv_std, gamma=gamma)
    return y, cache, new_mean, new_var


def batchnorm_backward(dy, cache):
    """Gradients of :func:`batchnorm_forward`, exact in both modes.

    Parameters
    ----------
    dy : array, shape of the forward input
        Upstream gradient.
    cache : BatchNormCache

    Returns
    -------
    dx : array, shape of ``dy``
    dgamma, dbeta : array, shape (c,)

    Notes
    -----
    With :math:`m` values per channel and sums over them,

    .. math::

        \\frac{\\partial L}{\\partial \\beta} = \\sum_i \\delta_i, \\qquad
        \\frac{\\partial L}{\\partial \\gamma} = \\sum_i \\delta_i \\hat x_i

    Training (the batch statistics depend on :math:`x`; Ioffe & Szegedy
    2015, Sec. 3, simplified):

    .. math::

        \\frac{\\partial L}{\\partial x_i} = \\frac{\\gamma}{\\sqrt{\\sigma^2+\\epsilon}}
        \\Big(\\delta_i - \\frac1m \\frac{\\partial L}{\\partial \\beta}
        - \\frac{\\hat x_i}{m} \\frac{\\partial L}{\\partial \\gamma}\\Big)

    Evaluation (fixed statistics, an affine map):
    :math:`\\partial L / \\partial x_i = \\gamma \\delta_i / \\sqrt{\\bar\\sigma^2 + \\epsilon}`.
    """
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

"""Batch normalisation over the batch (1d) or over batch and space (2d).

One function pair covers ``BatchNorm1d`` on ``(n, d)`` and ``BatchNorm2d``
on ``(n, c, h, w)``: statistics are taken per channel (axis 1) over every
other axis. It is stateless: the running statistics go in as arrays and
the updated ones come back as new arrays; nothing passed in is modified.

This is the reference, written as the equations read (mean, variance,
normalise, scale); see docs/paths.md for the two paths.
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus.backend import array_module


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


def _check_shapes(c, gamma, beta, running_mean, running_var):
    for name, a in (("gamma", gamma), ("beta", beta),
                    ("running_mean", running_mean), ("running_var", running_var)):
        if a is not None and a.shape != (c,):
            raise ValueError(f"batch norm: {name} must have shape ({c},), got {a.shape}")


def running_statistics(running_mean, running_var, mu, var, m, momentum):
    """The updated running mean and (unbiased) variance after a training batch.

    .. math:: \\bar\\mu \\leftarrow (1-m_o)\\bar\\mu + m_o\\mu, \\qquad
              \\bar\\sigma^2 \\leftarrow (1-m_o)\\bar\\sigma^2 + m_o \\tfrac{m}{m-1}\\sigma^2

    with momentum :math:`m_o` and :math:`m` values per channel (PyTorch's
    convention); None stays None.
    """
    new_mean = new_var = None
    if running_mean is not None:
        new_mean = (1.0 - momentum) * running_mean + momentum * mu.astype(
            running_mean.dtype, copy=False)
    if running_var is not None:
        unbiased = var * (m / (m - 1.0))  # (c,)
        new_var = (1.0 - momentum) * running_var + momentum * unbiased.astype(
            running_var.dtype, copy=False)
    return new_mean, new_var


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

    Evaluation: :math:`y = \\gamma (x - \\bar\\mu) / \\sqrt{\\bar\\sigma^2 + \\epsilon} + \\beta`.
    """
    xp = array_module(x)
    axes, pshape, m = _layout(x)
    _check_shapes(x.shape[1], gamma, beta, running_mean, running_var)
    g = gamma.astype(x.dtype, copy=False).reshape(pshape)  # (1, c[, 1, 1])
    b = beta.astype(x.dtype, copy=False).reshape(pshape)

    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch norm in evaluation mode needs running_mean and running_var")
        mu = running_mean.astype(x.dtype, copy=False)  # (c,)
        inv_std = 1.0 / xp.sqrt(running_var.astype(x.dtype, copy=False) + eps)  # (c,)
        xhat = (x - mu.reshape(pshape)) * inv_std.reshape(pshape)
        y = g * xhat + b
        cache = BatchNormCache(training=False, xhat=None, x=x, mean=running_mean,
                               inv_std=inv_std, gamma=gamma)
        return y, cache, running_mean, running_var

    if m < 2:
        raise ValueError(
            f"batch norm in training mode needs more than 1 value per channel, got input {x.shape}"
        )
    mu = x.mean(axis=axes)  # (c,)
    xc = x - mu.reshape(pshape)  # centred, shape of x
    var = (xc * xc).mean(axis=axes)  # (c,) biased variance
    inv_std = 1.0 / xp.sqrt(var + eps)  # (c,)
    xhat = xc * inv_std.reshape(pshape)  # normalised
    y = g * xhat + b  # scaled and shifted

    new_mean, new_var = running_statistics(running_mean, running_var, mu, var, m, momentum)
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
    axes, pshape, m = _layout(dy)
    # k = gamma / sqrt(var + eps), (1, c[, 1, 1])
    k = (cache.gamma * cache.inv_std).astype(dy.dtype, copy=False).reshape(pshape)
    if cache.training:
        xhat = cache.xhat
    else:  # the running statistics, fixed
        mu = cache.mean.astype(cache.x.dtype, copy=False).reshape(pshape)
        xhat = (cache.x - mu) * cache.inv_std.reshape(pshape)
    dbeta = dy.sum(axis=axes)  # (c,)
    dgamma = (dy * xhat).sum(axis=axes)  # (c,)
    if not cache.training:
        dx = k * dy  # an affine map per channel
        return dx, dgamma, dbeta
    dx = k * (dy - dbeta.reshape(pshape) / m - xhat * (dgamma.reshape(pshape) / m))
    return dx, dgamma, dbeta

"""The similarity matrix, fast twin of :mod:`bioplaus.similarity`: the std path on channel groups.

The same signatures, the same cache (:class:`bioplaus.similarity.SimilarityCache`)
and the same bits as the reference (``tests/fast/test_fast_similarity.py``).
On the std path (feature maps reduced to their standard deviations) the
maps' std and its gradient run over groups of channels of about
:data:`GROUP_VALUES` values on the host threads
(:func:`bioplaus.fast.threads.channel_groups`): each group's centred maps
are a temporary that stays in a core's cache instead of one of the input's
full size, and the gradient is written in place into a buffer from the host
pool (:mod:`bioplaus.fast.memory`) in the input's memory order. The
(n, n) matrix itself is the reference's.
"""
from __future__ import annotations

import numpy as np

from bioplaus.backend import array_module
from bioplaus.fast import memory, threads
from bioplaus.similarity import SimilarityCache, _matrix, _matrix_backward, _use_std

# The feature maps' standard deviations (and their gradient) are taken over
# groups of channels of about this many values, each group's centred maps a
# temporary that stays in a core's cache, the groups spread over the host
# threads (bioplaus.fast.threads.channel_groups). Every map is reduced on its own, so
# the grouping does not change the result.
GROUP_VALUES = 1 << 18


def _map_std(xp, z):
    """Unbiased standard deviation and mean of each row ``z[i, k, :]``, both (n, c)
    (``z.std(axis=2, ddof=1)`` and ``z.mean(axis=2)``)."""
    n, c, N = z.shape
    s, mean = xp.empty((n, c), dtype=z.dtype), xp.empty((n, c), dtype=z.dtype)

    def maps(k):  # the channels k
        zk = z[:, k]
        mk = zk.mean(axis=2, keepdims=True)  # (n, |k|, 1)
        d = zk - mk  # centred maps of the group
        d *= d
        s[:, k], mean[:, k] = xp.sqrt(d.sum(axis=2) / (N - 1)), mk[:, :, 0]

    threads.channel_groups(maps, c, n * N, GROUP_VALUES, on_host=xp is np)
    return s, mean


def similarity_matrix_forward(x, use_std=True):
    """Fast :func:`bioplaus.similarity.similarity_matrix_forward` (same arguments and results)."""
    return forward_with(_map_std, x, use_std)


def forward_with(map_std, x, use_std=True):
    """:func:`bioplaus.similarity.similarity_matrix_forward` with the maps' statistics
    taken by ``map_std(xp, z) -> (std, mean)`` (the host's channel groups here, one
    CuPy reduction in :mod:`bioplaus.fast.cuda.similarity`)."""
    xp = array_module(x)
    n = x.shape[0]
    if x.ndim not in (2, 4):
        raise ValueError(f"similarity_matrix_forward: x must be 2-D or 4-D, got shape {x.shape}")
    if _use_std(x, use_std):
        z = x.reshape(n, x.shape[1], -1)  # (n, c, h*w)
        s, z_mean = map_std(xp, z)  # (n, c) each
        X = s
    else:
        z = s = z_mean = None
        X = x.reshape(n, -1)  # (n, d)
    S, Xc, norm, Xn, inside = _matrix(X)
    return S, SimilarityCache(x.shape, z, s, Xc, norm, Xn, inside, z_mean)


def similarity_matrix_backward(dS, cache):
    """Fast :func:`bioplaus.similarity.similarity_matrix_backward` (same arguments and results)."""
    xp = array_module(dS)
    x_shape, z, s, Xc, norm, Xn, inside, z_mean = cache
    dX = _matrix_backward(dS, Xc, norm, Xn, inside)  # (n, d)
    if z is None:
        return dX.reshape(x_shape)
    n, c, m = z.shape  # m: spatial positions N
    safe_s = xp.where(s > 0, s, 1)
    ds_coef = xp.where(s > 0, dX / ((m - 1) * safe_s), 0)  # (n, c)
    dz = memory.empty_like(z)  # (n, c, N), x's memory order

    def maps(k):  # the channels k
        dk = dz[:, k]
        xp.subtract(z[:, k], z_mean[:, k, None], out=dk)  # centred maps
        dk *= ds_coef[:, k, None]

    threads.channel_groups(maps, c, n * m, GROUP_VALUES, on_host=xp is np)
    return dz.reshape(x_shape)

"""The similarity matrix's map statistics in one CuPy reduction: twin of
:func:`bioplaus.similarity.similarity_matrix_forward`.

On the std path each feature map is reduced to its unbiased standard
deviation. The reference centres the maps (a copy of the input's size),
squares and sums them: three passes. Here one reduction sums
``(z - mean)^2`` straight from the input. The (n, n) matrix and the cache
(:class:`bioplaus.similarity.SimilarityCache`) are the reference's, so the
backward is the fast wing's or the reference's.
"""
from __future__ import annotations

from bioplaus.backend import array_module
from bioplaus.fast.cuda import reduction
from bioplaus.similarity import SimilarityCache, _matrix, _use_std


def similarity_matrix_forward(x, use_std=True):
    """CUDA :func:`bioplaus.similarity.similarity_matrix_forward` (same arguments and results)."""
    xp = array_module(x)
    n = x.shape[0]
    if x.ndim not in (2, 4):
        raise ValueError(f"similarity_matrix_forward: x must be 2-D or 4-D, got shape {x.shape}")
    if _use_std(x, use_std):
        z = x.reshape(n, x.shape[1], -1)  # (n, c, h*w): one row per feature map
        N = z.shape[2]
        z_mean = z.mean(axis=2)  # (n, c)
        k = reduction("T z, T mu", "T out", "(z - mu) * (z - mu)", "a + b", "out = a", "0",
                      "bioplaus_map_sqdev")
        s = xp.sqrt(k(z, z_mean[:, :, None], axis=2) / (N - 1))  # (n, c) unbiased std
        X = s
    else:
        z = s = z_mean = None
        X = x.reshape(n, -1)
    S, Xc, norm, Xn, inside = _matrix(X)
    return S, SimilarityCache(x.shape, z, s, Xc, norm, Xn, inside, z_mean)

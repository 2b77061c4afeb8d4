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

from bioplaus.fast.cuda import reduction
from bioplaus.fast.similarity import forward_with


def _map_std(xp, z):
    """Unbiased std and mean of each map ``z[i, k, :]``, both (n, c): one reduction of
    ``(z - mean)^2`` for the std."""
    N = z.shape[2]
    z_mean = z.mean(axis=2)  # (n, c)
    k = reduction("T z, T mu", "T out", "(z - mu) * (z - mu)", "a + b", "out = a", "0",
                  "bioplaus_map_sqdev")
    return xp.sqrt(k(z, z_mean[:, :, None], axis=2) / (N - 1)), z_mean  # (n, c) unbiased std


def similarity_matrix_forward(x, use_std=True):
    """CUDA :func:`bioplaus.similarity.similarity_matrix_forward` (same arguments and results)."""
    return forward_with(_map_std, x, use_std)

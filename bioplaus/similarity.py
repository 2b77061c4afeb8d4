"""The similarity matrix of a batch, as the sim losses compare it: forward and backward.

A forward/backward pair with a cache, like the ops in :mod:`bioplaus.ops`;
:func:`bioplaus.losses.sim_loss` compares two such matrices. This is the
reference, plain vectorised code (docs/paths.md: the two paths).
"""
from __future__ import annotations

from typing import NamedTuple

from .backend import array_module

#: The constant added to each row's norm before dividing (reference code).
SIM_EPS = 1e-8


class SimilarityCache(NamedTuple):
    """What :func:`similarity_matrix_backward` needs from the forward pass.

    Attributes
    ----------
    x_shape : tuple
        Shape of the input ``x``.
    z : array, shape (n, c, h*w), or None
        ``x`` viewed as one row per feature map (std path only).
    s : array, shape (n, c), or None
        The maps' unbiased standard deviations (std path only).
    Xc : array, shape (n, d)
        Row-centred features.
    norm : array, shape (n, 1)
        ``||Xc_i||``.
    Xn : array, shape (n, d)
        ``Xc_i / (1e-8 + ||Xc_i||)``.
    inside : bool array, shape (n, n)
        Where ``-1 <= Xn Xn^T <= 1`` (the clamp passes the gradient).
    z_mean : array, shape (n, c), or None
        The maps' means (std path only).
    """

    x_shape: tuple
    z: object
    s: object
    Xc: object
    norm: object
    Xn: object
    inside: object
    z_mean: object = None


def _use_std(x, use_std):
    """Whether the forward reduces each feature map of ``x`` to its std first."""
    return x.ndim == 4 and use_std and x.shape[1] > 3 and x.shape[2] > 1


def _matrix(X):
    """``S = clamp(Xn Xn^T, -1, 1)`` of the rows of ``X`` (n, d), and what the backward needs."""
    xp = array_module(X)
    Xc = X - X.mean(axis=1, keepdims=True)  # (n, d) centred rows
    norm = xp.sqrt((Xc * Xc).sum(axis=1, keepdims=True))  # (n, 1)
    Xn = Xc / (SIM_EPS + norm)  # (n, d) unit rows
    S_raw = Xn @ Xn.T  # (n, n)
    inside = (S_raw >= -1) & (S_raw <= 1)  # where the clamp passes the gradient
    return xp.clip(S_raw, -1, 1), Xc, norm, Xn, inside


def _matrix_backward(dS, Xc, norm, Xn, inside):
    """Gradient of :func:`_matrix` with respect to ``X`` (n, d)."""
    xp = array_module(dS)
    delta = dS * inside  # (n, n)
    dXn = (delta + delta.T) @ Xn  # (n, d)
    den = SIM_EPS + norm  # (n, 1)
    proj = (dXn * Xc).sum(axis=1, keepdims=True)  # (n, 1)
    safe_norm = xp.where(norm > 0, norm, 1)
    coef = xp.where(norm > 0, proj / (den * den * safe_norm), 0)  # (n, 1); 0 for a zero row
    dXc = dXn / den - Xc * coef  # (n, d)
    return dXc - dXc.mean(axis=1, keepdims=True)  # through the centring


def similarity_matrix_forward(x, use_std=True):
    """Adjusted cosine similarity matrix ``S(x)`` of a batch.

    Parameters
    ----------
    x : array, shape (n, d) or (n, c, h, w)
        A batch of activations (or of label vectors).
    use_std : bool
        For a 4-D ``x`` with ``c > 3`` and ``h > 1``, first replace each
        feature map by its standard deviation over the spatial positions
        (the reference's default; ``False`` is its ``--no-similarity-std``).
        Any other 4-D ``x`` is flattened.

    Returns
    -------
    S : array, shape (n, n)
        Pairwise similarities in [-1, 1], dtype of ``x``.
    cache : SimilarityCache
        For :func:`similarity_matrix_backward`.

    Notes
    -----
    With :math:`X` (n x d) the flattened ``x`` or the maps' stds
    :math:`X_{ik} = \\mathrm{std}_{N-1}(x_{ik\\cdot\\cdot})`,

    .. math::

        X^c_i = X_i - \\tfrac{1}{d} \\textstyle\\sum_k X_{ik}, \\qquad
        \\hat X_i = \\frac{X^c_i}{10^{-8} + \\lVert X^c_i \\rVert_2}, \\qquad
        S = \\mathrm{clamp}(\\hat X \\hat X^\\top, -1, 1)

    (Nøkland & Eidnes 2019, Method: similarity matching loss; their code's
    ``similarity_matrix``).
    """
    xp = array_module(x)
    n = x.shape[0]
    if x.ndim not in (2, 4):
        raise ValueError(f"similarity_matrix_forward: x must be 2-D or 4-D, got shape {x.shape}")
    if _use_std(x, use_std):
        z = x.reshape(n, x.shape[1], -1)  # (n, c, h*w): one row per feature map
        N = z.shape[2]
        z_mean = z.mean(axis=2)  # (n, c)
        zc = z - z_mean[:, :, None]  # (n, c, N) centred maps
        s = xp.sqrt((zc * zc).sum(axis=2) / (N - 1))  # (n, c) unbiased std
        X = s
    else:
        z = s = z_mean = None
        X = x.reshape(n, -1)  # (n, d)
    S, Xc, norm, Xn, inside = _matrix(X)
    return S, SimilarityCache(x.shape, z, s, Xc, norm, Xn, inside, z_mean)


def similarity_matrix_backward(dS, cache):
    """Gradient of :func:`similarity_matrix_forward` with respect to ``x``.

    Parameters
    ----------
    dS : array, shape (n, n)
        Upstream gradient at ``S``.
    cache : SimilarityCache
        From :func:`similarity_matrix_forward`.

    Returns
    -------
    dx : array, shape of ``x``
        Gradient with respect to the forward's input; always finite.

    Notes
    -----
    .. math::

        \\delta = dS \\odot 1[-1 \\le \\hat X \\hat X^\\top \\le 1], \\qquad
        d\\hat X = (\\delta + \\delta^\\top) \\hat X,

        dX^c_i = \\frac{d\\hat X_i}{10^{-8} + \\lVert X^c_i \\rVert}
            - X^c_i \\frac{\\langle d\\hat X_i, X^c_i \\rangle}
              {(10^{-8} + \\lVert X^c_i \\rVert)^2 \\lVert X^c_i \\rVert}, \\qquad
        dX_i = dX^c_i - \\tfrac{1}{d}\\textstyle\\sum_k dX^c_{ik}

    and on the std path :math:`dx_{ikp} = dX_{ik} (x_{ikp} - \\bar x_{ik})
    / ((N - 1)\\, \\mathrm{std}(x_{ik}))` with ``N = h*w``.

    The clamp passes the gradient where :math:`-1 \\le s_{ij} \\le 1`, as
    ``torch.clamp`` does. Two points where a formula divides by zero are
    defined explicitly:

    * **All-zero centred row** (:math:`X^c_i = 0`, e.g. a constant row):
      the second term of :math:`dX^c_i` is taken as 0, so
      :math:`dX^c_i = d\\hat X_i / 10^{-8}`. This is the true derivative:
      :math:`v \\mapsto v / (10^{-8} + \\lVert v \\rVert)` is differentiable
      at 0 with Jacobian :math:`I / 10^{-8}` (the norm enters only at second
      order). The value is finite but large. Torch autograd gives NaN there.
    * **Zero-variance feature map** (std 0): the square root has no
      derivative at 0; the gradient through that map is defined as 0, a
      subgradient of the (norm-like) std at 0 and what central differences
      give. Torch 2.x gives 0 there as well.
    """
    xp = array_module(dS)
    x_shape, z, s, Xc, norm, Xn, inside, z_mean = cache
    dX = _matrix_backward(dS, Xc, norm, Xn, inside)  # (n, d)
    if z is None:
        return dX.reshape(x_shape)
    N = z.shape[2]  # spatial positions
    safe_s = xp.where(s > 0, s, 1)
    ds_coef = xp.where(s > 0, dX / ((N - 1) * safe_s), 0)  # (n, c); 0 for a constant map
    dz = (z - z_mean[:, :, None]) * ds_coef[:, :, None]  # (n, c, N)
    return dz.reshape(x_shape)

"""Inverted dropout, elementwise or whole channels (Dropout2d).

Masks are drawn on the host from a NumPy ``Generator`` and then moved to
the array module, so NumPy and CuPy runs drop the same units and a
checkpoint can store the generator's state to resume the same sequence of
masks. The mask already carries the ``1 / (1 - p)`` scale, so evaluation
needs no rescaling (no mask at all) and the backward reuses the mask
unchanged, as feedback alignment requires (Mostafa et al. 2018: dropout
masks are reused in the backward pass).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bioplaus.backend import to_device


class DropoutCache(NamedTuple):
    """The mask applied in the forward pass.

    Attributes
    ----------
    mask : array broadcastable to the input, or None
        ``keep / (1 - p)``; None means dropout was off (identity).
    """

    mask: object


def dropout_mask(rng, xp, shape, p, channel=False, dtype=np.float32):
    """Draw an inverted-dropout mask on the host and move it to ``xp``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The host generator the mask is drawn from (advanced by the draw).
    xp : module
        ``numpy`` or ``cupy``: where the mask should live.
    shape : tuple of int
        Shape of the activation to drop: ``(n, d)`` or ``(n, c, h, w)``.
    p : float
        Drop probability, ``0 <= p < 1``.
    channel : bool
        If True, drop whole channels (``Dropout2d``): the input must have at
        least 3 dimensions ``(n, c, ...)`` and the mask has shape
        ``(n, c, 1, ..., 1)``, constant over the spatial positions.
    dtype : numpy dtype
        dtype of the returned mask.

    Returns
    -------
    mask : array, shape ``shape`` or ``(n, c, 1, 1)``, or None
        Each entry is ``1 / (1 - p)`` with probability ``1 - p`` and 0
        otherwise. None when ``p == 0`` (nothing is drawn; the generator is
        not advanced).

    Raises
    ------
    ValueError
        If ``p`` is not in ``[0, 1)`` or a channel mask is asked for an
        input with fewer than 3 dimensions.

    Notes
    -----
    .. math::

        m_i = \\frac{r_i}{1 - p}, \\quad r_i \\sim \\mathrm{Bernoulli}(1 - p),
        \\qquad \\mathbb{E}[m_i] = 1

    (Srivastava et al. 2014, with the scaling moved to training time, as in
    ``torch.nn.Dropout`` / ``Dropout2d`` used by Nøkland & Eidnes 2019).
    A unit is kept when a uniform draw ``u`` in ``[0, 1)`` satisfies
    ``u >= p``.
    """
    p = float(p)
    if not (0.0 <= p < 1.0) or math.isnan(p):
        raise ValueError(f"dropout probability must satisfy 0 <= p < 1, got {p}")
    shape = tuple(int(s) for s in shape)
    if channel:
        if len(shape) < 3:
            raise ValueError(
                f"channel dropout needs an input of shape (n, c, h, w); got shape {shape}"
            )
        shape = shape[:2] + (1,) * (len(shape) - 2)  # (n, c, 1, 1)
    if p == 0.0:
        return None
    dtype = np.dtype(dtype)
    keep = rng.random(shape, dtype=np.float32) >= p  # bool, shape of the mask
    mask = keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))
    return to_device(mask, xp)


def dropout_forward(x, mask):
    """Apply a dropout mask: ``y = x * mask``.

    Parameters
    ----------
    x : array, shape (n, d) or (n, c, h, w)
    mask : array broadcastable to ``x``, or None
        From :func:`dropout_mask`; None is the identity (p = 0, or evaluation).

    Returns
    -------
    y : array, shape of ``x``, dtype of ``x``
    cache : DropoutCache

    Notes
    -----
    .. math:: y = x \\odot m
    """
    if mask is None:
        return x, DropoutCache(mask=None)
    mask = mask.astype(x.dtype, copy=False)
    return x * mask, DropoutCache(mask=mask)


def dropout_backward(dy, cache):
    """Gradient of :func:`dropout_forward`: the same mask, ``dx = dy * mask``.

    Parameters
    ----------
    dy : array, shape of the forward input
    cache : DropoutCache

    Returns
    -------
    dx : array, shape of ``dy``

    Notes
    -----
    .. math:: \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y} \\odot m
    """
    if cache.mask is None:
        return dy
    return dy * cache.mask

"""Losses: each returns its value and its gradient.

Every loss here returns ``(loss, grad)``: ``loss`` is a 0-d array (or NumPy
scalar) of the input's dtype, left on the input's device so that training on
a GPU does not wait for it; ``float(loss)`` reads it. ``grad`` is the
gradient of ``loss`` with respect to the first argument, with that
argument's shape and dtype. The reduction (mean over what) is stated in each
docstring; all follow the PyTorch functions used by the reference code of
Nøkland & Eidnes (2019), so the gradients equal torch autograd's.

The similarity matrix that :func:`sim_loss` compares is in
:mod:`bioplaus.similarity`.
"""
from __future__ import annotations

import numpy as np

from .backend import TRAIN_DTYPE, array_module, is_gpu_array


def _check_labels(y, num_classes):
    """Labels' shape always; their range where they are host arrays.

    On a device the range check would read ``y.min()`` back to the host at
    every loss of every step, stopping the device's queue; the labels a run
    puts there were checked once, when its data set was read
    (:mod:`bioplaus.data.formats` refuses labels out of range).
    """
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape}")
    if y.size and not is_gpu_array(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got min {int(y.min())}, max {int(y.max())}"
        )


def value(loss, scale=1.0):
    """``scale * loss`` as a float64 scalar on the loss's device.

    The number ``scale * float(loss)`` gives, without reading the loss back
    to the host: a training step's statistics stay on the device until the
    training loop reads them at its reporting interval.
    """
    return scale * loss.astype(np.float64)


def one_hot(y, num_classes, dtype=TRAIN_DTYPE, xp=None):
    """One-hot label matrix ``Y``.

    Parameters
    ----------
    y : int array, shape (n,)
        Class labels in ``[0, num_classes)``.
    num_classes : int
        ``C``.
    dtype : dtype
        dtype of the result (float32 for training, float64 in checks).
    xp : module, optional
        numpy or cupy; by default the module that owns ``y``.

    Returns
    -------
    Y : array, shape (n, C)
        ``Y[i, y_i] = 1``, zeros elsewhere.
    """
    xp = array_module(y) if xp is None else xp
    y = xp.asarray(y)
    _check_labels(y, num_classes)
    n = y.shape[0]
    Y = xp.zeros((n, num_classes), dtype=dtype)
    Y[xp.arange(n), y] = 1
    return Y


def softmax_cross_entropy(logits, y):
    """Softmax cross-entropy, mean over the batch (``F.cross_entropy``).

    Parameters
    ----------
    logits : array, shape (n, C)
        Unnormalised scores ``z``.
    y : int array, shape (n,)
        Class labels.

    Returns
    -------
    loss : 0-d array
        Mean over the n examples of ``-log softmax(z_i)[y_i]``.
    dlogits : array, shape (n, C)
        ``(softmax(z) - Y) / n``.

    Notes
    -----
    Computed through the log-sum-exp with the row maximum subtracted, so
    that no ``exp`` overflows:

    .. math::

        L = \\frac{1}{n} \\sum_i \\Big( m_i + \\log \\sum_k e^{z_{ik} - m_i}
            - z_{i y_i} \\Big), \\quad m_i = \\max_k z_{ik}, \\qquad
        \\frac{\\partial L}{\\partial z} = \\frac{1}{n}\\big(\\mathrm{softmax}(z) - Y\\big).

    The prediction loss of Nøkland & Eidnes (2019, Method: prediction loss) and the
    output layer's loss.
    """
    xp = array_module(logits)
    y = xp.asarray(y)
    n, C = logits.shape
    _check_labels(y, C)
    zs = logits - logits.max(axis=1, keepdims=True)  # (n, C), max 0 per row
    logp = zs - xp.log(xp.exp(zs).sum(axis=1, keepdims=True))  # (n, C) log-softmax
    loss = -logp[xp.arange(n), y].mean()
    Y = one_hot(y, C, dtype=logits.dtype, xp=xp)  # (n, C)
    dlogits = (xp.exp(logp) - Y) / n  # (softmax(z) - Y) / n
    return loss, dlogits


def bce_with_logits(logits, targets):
    """Binary cross-entropy on logits, mean over all ``n * k`` entries.

    Parameters
    ----------
    logits : array, shape (n, k)
        Scores ``z``.
    targets : array, shape (n, k)
        Targets ``t`` in [0, 1] (the ``-bio`` rules use ``1[P y > 0]``).

    Returns
    -------
    loss : 0-d array
        ``mean(max(z, 0) - z t + log(1 + exp(-|z|)))``.
    dlogits : array, shape (n, k)
        ``(sigmoid(z) - t) / (n k)``.

    Notes
    -----
    .. math::

        L = \\frac{1}{nk} \\sum_{ij} \\big( \\max(z_{ij}, 0) - z_{ij} t_{ij}
            + \\log(1 + e^{-|z_{ij}|}) \\big), \\qquad
        \\frac{\\partial L}{\\partial z} = \\frac{\\sigma(z) - t}{nk}

    the stable form of ``F.binary_cross_entropy_with_logits`` (mean), used
    by pred-bio (Nøkland & Eidnes 2019, the backprop-free version). The sigmoid is evaluated
    from ``e = exp(-|z|)`` on either side of 0, so it never overflows.
    """
    xp = array_module(logits)
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the logits' shape {logits.shape}, got {targets.shape}")
    e = xp.exp(-xp.abs(logits))  # (n, k), in (0, 1]
    loss = (xp.maximum(logits, 0) - logits * targets + xp.log1p(e)).mean()
    sig = xp.where(logits >= 0, 1 / (1 + e), e / (1 + e))  # sigmoid(z), (n, k)
    dlogits = (sig - targets) / logits.size
    return loss, dlogits.astype(logits.dtype, copy=False)


def squared_hinge(logits, y):
    """Multi-class squared hinge loss, mean over the batch, sum over classes.

    Parameters
    ----------
    logits : array, shape (n, C)
        Scores ``z`` of a local classifier.
    y : int array, shape (n,)
        Class labels.

    Returns
    -------
    loss : 0-d array
        ``(1/n) sum_i sum_k max(0, 1 - t_ik z_ik)^2``.
    dlogits : array, shape (n, C)
        ``-(2/n) t * max(0, 1 - t z)``.

    Notes
    -----
    With targets :math:`t_{ik} = +1` for the true class and :math:`-1`
    otherwise (one-vs-all),

    .. math::

        L = \\frac{1}{n} \\sum_i \\sum_k \\max(0, 1 - t_{ik} z_{ik})^2, \\qquad
        \\frac{\\partial L}{\\partial z_{ik}} = -\\frac{2}{n} t_{ik}
            \\max(0, 1 - t_{ik} z_{ik}).

    One of the two local losses of Mostafa, Ramesh & Cauwenberghs (2018),
    Methods (the other is :func:`softmax_cross_entropy`).
    """
    xp = array_module(logits)
    n, C = logits.shape
    t = 2 * one_hot(y, C, dtype=logits.dtype, xp=xp) - 1  # (n, C), +-1
    margin = xp.maximum(1 - t * logits, 0)  # (n, C)
    loss = (margin * margin).sum() / n
    dlogits = -(2 / n) * t * margin
    return loss, dlogits


def sim_loss(R_h, R_y):
    """Similarity matching loss, mean over the ``n x n`` entries (``F.mse_loss``).

    Parameters
    ----------
    R_h : array, shape (n, n)
        Similarity matrix of the (transformed) hidden activation.
    R_y : array, shape (n, n)
        Similarity matrix of the labels (or of their projection ``P y``); a
        target: no gradient is returned for it.

    Returns
    -------
    loss : 0-d array
        ``mean((R_h - R_y)^2)``.
    dR_h : array, shape (n, n)
        ``2 (R_h - R_y) / n^2``.

    Notes
    -----
    .. math::

        L_\\mathrm{sim} = \\frac{1}{n^2} \\lVert R_h - R_y \\rVert_F^2, \\qquad
        \\frac{\\partial L_\\mathrm{sim}}{\\partial R_h} = \\frac{2}{n^2}(R_h - R_y)

    (Nøkland & Eidnes 2019, Method: similarity matching loss).
    """
    if R_y.shape != R_h.shape:
        raise ValueError(f"sim_loss: R_y must have R_h's shape {R_h.shape}, got {R_y.shape}")
    diff = R_h - R_y  # (n, n)
    loss = (diff * diff).mean()
    dR_h = (2 / diff.size) * diff
    return loss, dR_h

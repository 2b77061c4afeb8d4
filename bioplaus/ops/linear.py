"""Fully connected (dense) layer: forward and backward with an explicit feedback matrix.

The backward takes the matrix that carries the error down as an argument
``B``: ``B = W`` is backpropagation, a fixed random ``B`` of ``W``'s shape is
feedback alignment (Lillicrap et al. 2016; the ``-bio`` decoders of Nøkland &
Eidnes 2019, Sec. 3.3). Weight transport is therefore visible at every call
site.
"""
from __future__ import annotations

from typing import NamedTuple


class LinearCache(NamedTuple):
    """What :func:`linear_backward` needs from the forward pass.

    Attributes
    ----------
    x : array, shape (n, d_in)
        The layer's input.
    W : array, shape (d_out, d_in)
        The weight used in the forward pass.
    has_bias : bool
        Whether the forward added a bias (then ``db`` is returned).
    """

    x: object
    W: object
    has_bias: bool


def linear_forward(x, W, b=None):
    """Affine map ``y = x W^T + b``.

    Parameters
    ----------
    x : array, shape (n, d_in)
        Input batch.
    W : array, shape (d_out, d_in)
        Weight, laid out as PyTorch's ``nn.Linear.weight``.
    b : array, shape (d_out,), optional
        Bias; ``None`` for a layer without bias.

    Returns
    -------
    y : array, shape (n, d_out)
        Output, with the dtype of ``x``.
    cache : LinearCache
        Input and weight for :func:`linear_backward`.

    Notes
    -----
    .. math:: y = x W^\\top + b

    the convention of ``torch.nn.functional.linear`` used by the reference
    code of Nøkland & Eidnes (2019).
    """
    if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(
            f"linear_forward: x must be (n, d_in) and W (d_out, d_in); got x {x.shape}, W {W.shape}"
        )
    y = x @ W.T  # (n, d_out)
    if b is not None:
        if b.shape != (W.shape[0],):
            raise ValueError(f"linear_forward: b must have shape ({W.shape[0]},), got {b.shape}")
        y += b
    return y, LinearCache(x=x, W=W, has_bias=b is not None)


def linear_backward(dy, cache, B=None, need_dx=True):
    """Gradients of the affine map; the error reaches ``x`` through ``B``.

    Parameters
    ----------
    dy : array, shape (n, d_out)
        Upstream gradient (or error signal) at the output.
    cache : LinearCache
        From :func:`linear_forward`.
    B : array, shape (d_out, d_in), optional
        The matrix that carries the error back to the input. ``None`` (the
        default) uses the forward weight ``W`` (backpropagation); a fixed
        random matrix gives feedback alignment.
    need_dx : bool
        If False, ``dx`` is not computed and ``None`` is returned for it
        (the first layer, or a block whose input is detached).

    Returns
    -------
    dx : array, shape (n, d_in), or None
        ``dy @ B`` (``dy @ W`` when ``B`` is None); None if not ``need_dx``.
    dW : array, shape (d_out, d_in)
        ``dy^T x``: the exact gradient with respect to ``W``.
    db : array, shape (d_out,), or None
        ``sum_n dy``; None when the forward had no bias.

    Notes
    -----
    .. math::

        \\frac{\\partial L}{\\partial W} = \\delta^\\top x, \\qquad
        \\frac{\\partial L}{\\partial b} = \\mathbf{1}^\\top \\delta, \\qquad
        \\delta_x = \\delta\\, B

    with :math:`\\delta = \\partial L / \\partial y` and :math:`B = W` for
    backpropagation; feedback alignment replaces :math:`W` by a fixed random
    :math:`B` (Lillicrap et al. 2016, Eq. 1; Nøkland & Eidnes 2019, Sec. 3.3).
    """
    x, W, has_bias = cache
    if dy.shape != (x.shape[0], W.shape[0]):
        raise ValueError(f"linear_backward: dy must be {(x.shape[0], W.shape[0])}, got {dy.shape}")
    dW = dy.T @ x  # (d_out, d_in)
    db = dy.sum(axis=0) if has_bias else None  # (d_out,)
    if not need_dx:
        return None, dW, db
    if B is None:
        B = W
    elif B.shape != W.shape:
        raise ValueError(f"linear_backward: B must have W's shape {W.shape}, got {B.shape}")
    dx = dy @ B  # (n, d_in)
    return dx, dW, db

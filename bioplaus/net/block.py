"""A block's parameters and its forward/backward through the ops: wiring, no new math.

A hidden block computes (Nøkland & Eidnes 2019, Sec. 3)::

    a = encoder(x)          conv 3x3 pad 1 (or 7x7 s2 p3) | linear
    z = bn(a)               batch norm, batch statistics in training
    h = f(z)                ReLU | LeakyReLU(0.01)         <- local losses read h
    h_d = dropout(h)        inverted; whole channels for conv
    out = maxpool(h_d)      only where the net has an 'M' after the block

Parameter names are the reference ``state_dict``'s: ``<block>.encoder.weight``,
``<block>.encoder.bias``, ``<block>.bn.weight``, ``<block>.bn.bias`` and the
buffers ``<block>.bn.running_mean`` / ``running_var``.

Every op is called through ``k``, a :class:`bioplaus.kernels.Kernels`
(the model's ``model.k``): the reference ops or their fast twins.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bioplaus import backend


def init_uniform(xp, seed: int, name: str, shape, fan_in: int, dtype):
    """PyTorch's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), keyed by name."""
    return backend.uniform(xp, seed, "init." + name, 0, shape, 1.0 / math.sqrt(fan_in), dtype)


def xavier_bound(shape) -> float:
    """Glorot & Bengio's uniform bound, sqrt(6 / (fan_in + fan_out)), of a weight of
    ``shape`` (out, in[, kh, kw]); ``torch.nn.init.xavier_uniform_``'s."""
    rf = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return math.sqrt(6.0 / (shape[1] * rf + shape[0] * rf))


def init_layer(xp, seed: int, name: str, shape, dtype, scheme: str = "torch"):
    """A layer's ``(weight, bias)`` under ``scheme`` ('torch': both U(+-1/sqrt(fan_in));
    'xavier-uniform': weight U(+-:func:`xavier_bound`), bias 0), keyed by ``name``."""
    fan_in = int(np.prod(shape[1:]))
    if scheme == "xavier-uniform":
        W = backend.uniform(xp, seed, "init." + name + "weight", 0, shape, xavier_bound(shape), dtype)
        return W, xp.zeros(shape[0], dtype=dtype)
    if scheme != "torch":
        raise ValueError(f"unknown init {scheme!r}; choose torch or xavier-uniform")
    return (init_uniform(xp, seed, name + "weight", shape, fan_in, dtype),
            init_uniform(xp, seed, name + "bias", (shape[0],), fan_in, dtype))


def init_block(spec, xp, seed: int, dtype, scheme: str = "torch") -> tuple[dict, dict]:
    """Encoder and batch-norm parameters of a block, and its running statistics
    (no batch norm where ``spec.bn`` is False)."""
    p = f"{spec.name}."
    W, b = init_layer(xp, seed, p + "encoder.", spec.encoder_shape, dtype, scheme)
    params = {p + "encoder.weight": W, p + "encoder.bias": b}
    buffers = {}
    if spec.bn:
        params.update({p + "bn.weight": xp.ones(spec.n_out, dtype=dtype),
                       p + "bn.bias": xp.zeros(spec.n_out, dtype=dtype)})
        buffers = {
            p + "bn.running_mean": xp.zeros(spec.n_out, dtype=dtype),
            p + "bn.running_var": xp.ones(spec.n_out, dtype=dtype),
        }
    return params, buffers


class BlockCache(NamedTuple):
    x_shape: tuple
    enc: object
    bn: object
    act: object
    drop: object
    pool: object


def block_forward(spec, params, buffers, x, *, k, training: bool, mask, nonlin: str,
                  bn_momentum: float = 0.1, bn_eps: float = 1e-5, pool_backward: bool = True):
    """Forward one block.

    Parameters
    ----------
    x : array (n, c, h, w) or (n, d)
    k : bioplaus.kernels.Kernels, the ops to call
    mask : dropout mask from :func:`bioplaus.ops.dropout.dropout_mask` or None
    pool_backward : bool
        Whether an error will come back through the block's max-pool
        (:func:`block_backward_to_h`); False skips finding the pool's winners
        (a local loss reads ``h`` and the output goes on detached; evaluation).

    Returns
    -------
    out : array, the block's output (dropped out, pooled), fed to the next block
    h : array, the activation before dropout, read by the local losses
    cache : BlockCache
    new_buffers : dict of updated running statistics (training) or the old ones
    """
    p = f"{spec.name}."
    x_shape = x.shape
    if spec.flatten_in:
        x = x.reshape(x.shape[0], -1)  # (n, c*h*w)
    W, b = params[p + "encoder.weight"], params[p + "encoder.bias"]
    if spec.kind == "conv":
        a, enc = k.conv2d_forward(x, W, b, stride=spec.stride, pad=spec.pad)
    else:
        a, enc = k.linear_forward(x, W, b)
    if spec.bn:
        z, bn, rm, rv = k.batchnorm_forward(
            a, params[p + "bn.weight"], params[p + "bn.bias"], buffers[p + "bn.running_mean"],
            buffers[p + "bn.running_var"], training, momentum=bn_momentum, eps=bn_eps)
    else:
        z, bn = a, None
    f_fwd, _ = k.activation(nonlin)
    h, act = f_fwd(z)
    h_d, drop = k.dropout_forward(h, mask)
    pool = None
    out = h_d
    if spec.pool:
        out, pool = k.maxpool2d_forward(h_d, 2, 2, winner=pool_backward)
    new_buffers = {p + "bn.running_mean": rm, p + "bn.running_var": rv} if spec.bn else {}
    return out, h, BlockCache(x_shape, enc, bn, act, drop, pool), new_buffers


def block_backward_to_h(d_out, cache: BlockCache, *, k):
    """Carry the error from the block's output back to ``h``: through the
    max-pool (to the winner) and the dropout mask of the forward pass."""
    d = d_out
    if cache.pool is not None:
        d = k.maxpool2d_backward(d, cache.pool)
    return k.dropout_backward(d, cache.drop)


def block_backward_from_h(spec, dh, cache: BlockCache, nonlin: str, *, k, B=None,
                          need_dx=True):
    """Carry the error from ``h`` through f', batch norm and the encoder.

    ``B`` is the matrix that carries the error across the encoder to the
    block's input: None for the encoder's own ``W`` (backprop), a fixed
    random matrix for feedback alignment. Returns ``(dx, grads)``; ``dx``
    has the shape of the block's input (None when ``need_dx`` is False).
    """
    p = f"{spec.name}."
    _, f_bwd = k.activation(nonlin)
    dz = f_bwd(dh, cache.act)
    bn = cache.bn is not None
    da, dgamma, dbeta = k.batchnorm_backward(dz, cache.bn) if bn else (dz, None, None)
    if spec.kind == "conv":
        dx, dW, db = k.conv2d_backward(da, cache.enc, B=B, need_dx=need_dx)
    else:
        dx, dW, db = k.linear_backward(da, cache.enc, B=B, need_dx=need_dx)
    if dx is not None and dx.shape != cache.x_shape:
        dx = dx.reshape(cache.x_shape)  # undo the flatten of the input
    grads = {p + "encoder.weight": dW, p + "encoder.bias": db}
    if bn:
        grads.update({p + "bn.weight": dgamma, p + "bn.bias": dbeta})
    return dx, grads

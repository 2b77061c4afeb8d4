r"""A PyTorch reference of every learning rule, for the rule checks only.

Written from SPEC §2-§4 and the semantics of the papers' PyTorch code
(Nøkland & Eidnes 2019; Mostafa, Ramesh & Cauwenberghs 2018), with
``torch.nn.functional`` ops and autograd; nothing here calls into
:mod:`bioplaus` except to read a model's spec, rule and arrays.

* A block is ``conv2d | linear -> batch_norm(training=True) -> relu |
  leaky_relu(0.01) -> * dropout mask -> max_pool2d(2, 2)``.
* Local rules (pred, sim, predsim and the -bio variants): each block's
  local loss is differentiated with respect to that block's own
  parameters; the next block gets the output detached. The output layer
  is trained with the cross-entropy on the last block's detached output,
  scaled by (1 - beta) under predsim / predsim-bio.
* Global rules: one loss for the whole net, nothing detached (glob+sim adds
  every block's sim loss).
* frc rules: each block's fixed (or trained) classifier reads the block's
  output (dropout and pool applied), cross-entropy or squared hinge.

Where a rule is not the gradient of an objective, its error path is a
custom autograd Function that carries the error through a given matrix
instead of the forward weight (the reference's ``LinearFA``):
:class:`LinearFA` (bio decoder's B, frc's K, fa's B) and :class:`Conv2dFA`
(fa's fixed random filters). With ``exact=True`` these are replaced by the
plain ops, which gives the true gradient of the objective.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bioplaus import backend


def as_tensor(a, requires_grad=False):
    """A float64 CPU tensor holding a copy of ``a`` (NumPy or CuPy array)."""
    t = torch.tensor(np.array(backend.to_numpy(a), dtype=np.float64))
    return t.requires_grad_(requires_grad)


def similarity_matrix(x):
    """The reference's adjusted cosine similarity matrix (n, n)."""
    if x.dim() == 4:
        if x.size(1) > 3 and x.size(2) > 1:
            x = x.reshape(x.size(0), x.size(1), -1).std(dim=2)  # (n, c), unbiased
        else:
            x = x.reshape(x.size(0), -1)
    xc = x - x.mean(dim=1, keepdim=True)
    xn = xc / (1e-8 + torch.sqrt(torch.sum(xc ** 2, dim=1, keepdim=True)))
    return (xn @ xn.t()).clamp(-1, 1)


def decoder_pool(channels, size, dim_in_decoder):
    """Average-pool kernel and padding of a conv block's decoder input (SPEC §2).

    Returns ``((kh, kw), (ph, pw))`` or None when no pooling is needed.
    """
    kh = kw = 1
    oh = ow = size
    dim = channels * oh * ow
    while dim > dim_in_decoder and kh < size:
        kh *= 2
        oh = math.ceil(size / kh)
        dim = channels * oh * ow
        if dim > dim_in_decoder:
            kw *= 2
            ow = math.ceil(size / kw)
            dim = channels * oh * ow
    if kh == 1 and kw == 1:
        return None
    return (kh, kw), ((kh * (oh - size // kh)) // 2, (kw * (ow - size // kw)) // 2)


class LinearFA(torch.autograd.Function):
    """``y = x W^T + b`` whose backward sends the error to ``x`` through ``B``."""

    @staticmethod
    def forward(ctx, x, W, B, b):
        ctx.save_for_backward(x, W, B)
        ctx.has_bias = b is not None
        y = x @ W.t()
        return y + b if b is not None else y

    @staticmethod
    def backward(ctx, dy):
        x, W, B = ctx.saved_tensors
        db = dy.sum(0) if ctx.has_bias else None
        return dy @ B, dy.t() @ x, None, db


class Conv2dFA(torch.autograd.Function):
    """``conv2d(x, W, b)`` whose backward sends the error to ``x`` through filters ``B``."""

    @staticmethod
    def forward(ctx, x, W, B, b, stride, pad):
        ctx.save_for_backward(x, W, B)
        ctx.conf = (stride, pad, b is not None)
        return F.conv2d(x, W, b, stride=stride, padding=pad)

    @staticmethod
    def backward(ctx, dy):
        x, W, B = ctx.saved_tensors
        stride, pad, has_bias = ctx.conf
        dx = torch.nn.grad.conv2d_input(x.shape, B, dy, stride=stride, padding=pad)
        dW = torch.nn.grad.conv2d_weight(x, W.shape, dy, stride=stride, padding=pad)
        db = dy.sum((0, 2, 3)) if has_bias else None
        return dx, dW, None, db, None, None


class DirectHook(torch.autograd.Function):
    """Identity forward; backward replaces the error arriving from above by
    ``s @ B`` (dfa: ``s`` the output error, drtp: the one-hot target), reshaped."""

    @staticmethod
    def forward(ctx, h, s, B):
        ctx.save_for_backward(s, B)
        ctx.shape = h.shape
        return h.clone()

    @staticmethod
    def backward(ctx, dh):
        s, B = ctx.saved_tensors
        return (s @ B).reshape(ctx.shape), None, None


def linear(x, W, b=None, B=None):
    return F.linear(x, W, b) if B is None else LinearFA.apply(x, W, B, b)


def conv2d(x, W, b, stride, pad, B=None):
    if B is None:
        return F.conv2d(x, W, b, stride=stride, padding=pad)
    return Conv2dFA.apply(x, W, B, b, stride, pad)


class TorchRule:
    """One training step of ``model``'s rule in PyTorch, from copies of its arrays.

    Parameters
    ----------
    model : bioplaus.net.model.Model
        Read for its spec, rule, config, fixed matrices (and default arrays).
    params, buffers : dict, optional
        The parameters and running statistics before the step (default: the model's).
    exact : bool
        Differentiate the plain objective (no ``LinearFA``/``Conv2dFA``):
        the bio decoder's error then crosses its own ``W``.
    """

    def __init__(self, model, params=None, buffers=None, exact=False):
        cfg = model.cfg
        self.spec, self.rule, self.cfg = model.spec, model.rule, cfg
        self.P = {k: as_tensor(v, True) for k, v in (params or model.params).items()}
        self.buf = {k: as_tensor(v) for k, v in (buffers or model.buffers).items()}
        self.fixed = {k: as_tensor(v) for k, v in model.fixed.items()}
        self.exact = exact
        self.beta = float(cfg.beta)
        self.seed = int(model.seed)

    # -- the forward net ---------------------------------------------------------------
    def block(self, b, x, mask, B=None, hook=None):
        """Returns ``(h, out)``: the activation before dropout and the block's output;
        ``hook`` is applied to the dropped-out activation before the pool."""
        p = b.name + "."
        if b.flatten_in:
            x = x.reshape(x.shape[0], -1)
        W, bias = self.P[p + "encoder.weight"], self.P[p + "encoder.bias"]
        if b.kind == "conv":
            a = conv2d(x, W, bias, b.stride, b.pad, B)
        else:
            a = linear(x, W, bias, B)
        z = a if not b.bn else F.batch_norm(
            a, self.buf[p + "bn.running_mean"], self.buf[p + "bn.running_var"],
            self.P[p + "bn.weight"], self.P[p + "bn.bias"], training=True,
            momentum=self.cfg.bn_momentum, eps=self.cfg.bn_eps)
        h = {"relu": F.relu, "tanh": torch.tanh,
             "leakyrelu": lambda t: F.leaky_relu(t, 0.01)}[self.cfg.nonlin](z)
        hd = h if mask is None else h * as_tensor(mask)
        if hook is not None:
            hd = hook(hd)
        out = F.max_pool2d(hd, 2, 2) if b.pool else hd
        return h, out

    def pooled(self, b, h):
        """``h`` as the decoder and sim-bio read it: average-pooled (conv) or itself."""
        if b.kind != "conv":
            return h
        geom = decoder_pool(b.n_out, h.shape[2], self.cfg.dim_in_decoder)
        if geom is None:
            return h
        k, pad = geom
        return F.avg_pool2d(h, k, stride=k, padding=pad, count_include_pad=True)

    def sim_learned(self, b, h, Y):
        p = b.name + "."
        if b.kind == "conv":
            r = F.conv2d(h, self.P[p + "conv_loss.weight"], None, stride=1, padding=1)
        else:
            r = F.linear(h, self.P[p + "linear_loss.weight"])
        return F.mse_loss(similarity_matrix(r), similarity_matrix(Y))

    # -- local losses --------------------------------------------------------------------
    def local_loss(self, b, h, y, Y):
        rule, p = self.rule, b.name + "."
        both = rule.pred and rule.sim
        w_pred = 1.0 - self.beta if both else 1.0
        w_sim = self.beta if both else 1.0
        n = h.shape[0]
        L = h.new_zeros(())
        if rule.pred:
            f = self.pooled(b, h).reshape(n, -1)
            W, bias = self.P[p + "decoder_y.weight"], self.P[p + "decoder_y.bias"]
            if rule.bio:
                Pm = self.fixed[p + "proj_y.weight"]  # (T, C)
                target = (F.linear(Y, Pm) > 0).double()
                B = None if self.exact else self.fixed[p + "decoder_y.weight_fa"]
                L = L + w_pred * F.binary_cross_entropy_with_logits(linear(f, W, bias, B), target)
            else:
                L = L + w_pred * F.cross_entropy(F.linear(f, W, bias), y)
        if rule.sim:
            if rule.bio:
                Pm = self.fixed[p + "proj_y.weight"]
                Ls = F.mse_loss(similarity_matrix(self.pooled(b, h)),
                                similarity_matrix(F.linear(Y, Pm)))
            else:
                Ls = self.sim_learned(b, h, Y)
            L = L + w_sim * Ls
        return L

    def frc_loss(self, b, out, y):
        rule, p = self.rule, b.name + "."
        f = out.reshape(out.shape[0], -1)
        if rule.frc == "trainable":
            y_l = F.linear(f, self.P[p + "frc.M"])
        else:
            M = self.fixed[p + "frc.M"]
            K = self.fixed[p + "frc.K"]  # (N, C)
            y_l = F.linear(f, M) if (self.exact or rule.frc == "sym") else linear(f, M, None, K.t())
        if self.cfg.frc_loss == "hinge":
            t = 2 * F.one_hot(y, y_l.shape[1]).double() - 1
            return (F.relu(1 - t * y_l) ** 2).sum() / y_l.shape[0]
        return F.cross_entropy(y_l, y)

    # -- one step ------------------------------------------------------------------------
    def grads(self, x, y, masks=None):
        """Gradients (update directions) of every parameter, as float64 NumPy arrays."""
        x = as_tensor(x)
        y = torch.tensor(np.asarray(backend.to_numpy(y)), dtype=torch.int64)
        Y = F.one_hot(y, self.spec.num_classes).double()
        masks = masks or [None] * len(self.spec.blocks)
        if self.rule.family == "global":
            return self._global(x, y, Y, masks)
        out_grads = {}
        a = x
        for i, b in enumerate(self.spec.blocks):
            h, out = self.block(b, a.detach(), masks[i])
            if self.rule.family == "local":
                L = self.local_loss(b, h, y, Y)
            else:
                L = self.frc_loss(b, out, y)
            out_grads.update(self._grad(L, b.name + "."))
            a = out.detach()
        o = self.spec.out_name + "."
        logits = F.linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"])
        L = F.cross_entropy(logits, y)
        if self.rule.uses_beta:
            L = (1.0 - self.beta) * L
        out_grads.update(self._grad(L, o))
        return out_grads

    def feedback(self, layer, index):
        """The matrix carrying the error across weight layer ``layer`` (None: its W).

        fa: its fixed B; the sign-concordant rules: ``|M| * sign(W)`` with M
        uSF's s (the standard deviation of U(+-1/sqrt(fan_in)), from torch's
        fan-in, or of xavier-uniform), frSF's fixed ``|B_0|`` or brSF's step-0
        ``|R_0|`` (the model's random draw, read through bioplaus.feedback)."""
        kind = self.rule.feedback
        if self.exact or kind in ("W",):
            return None
        if kind == "B":
            return self.fixed[layer + ".weight_fa"]
        W = self.P[layer + ".weight"].detach()
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(W)
        if kind == "sign-uniform":
            mag = (math.sqrt(2.0 / (fan_in + fan_out)) if self.cfg.init == "xavier-uniform"
                   else 1.0 / math.sqrt(3.0 * fan_in))
        elif kind == "sign-fixed":
            mag = self.fixed[layer + ".weight_mag"]
        elif kind == "sign-batch":
            from bioplaus.feedback import brsf_magnitude
            mag = as_tensor(brsf_magnitude(np, self.seed, index, 0, tuple(W.shape), np.float64,
                                           self.cfg.init))
        else:
            raise ValueError(kind)
        return torch.sign(W) * mag

    def _direct(self, x, y, Y, masks):
        """dfa/drtp: every block's error is ``s @ B_l`` at its dropped-out output."""
        o = self.spec.out_name + "."
        saved = {k: v.clone() for k, v in self.buf.items()}
        with torch.no_grad():  # the output error e = (softmax(z) - Y) / n of this batch
            a = x
            for i, b in enumerate(self.spec.blocks):
                _, a = self.block(b, a, masks[i])
            z = F.linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"])
            e = (torch.softmax(z, 1) - Y) / x.shape[0]
        self.buf = saved  # the running statistics are updated once, by the pass below
        s = e if self.rule.feedback == "direct-error" else Y
        a = x
        for i, b in enumerate(self.spec.blocks):
            B = self.fixed[b.name + ".direct.weight_fa"]
            _, a = self.block(b, a, masks[i], hook=lambda t, B=B: DirectHook.apply(t, s, B))
        logits = F.linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"])
        return self._grad(F.cross_entropy(logits, y), "")

    def _global(self, x, y, Y, masks):
        if self.rule.feedback.startswith("direct"):
            return self._direct(x, y, Y, masks)
        a, L = x, 0.0
        for i, b in enumerate(self.spec.blocks):
            B = self.feedback(b.name + ".encoder", i) if i > 0 else None
            h, a = self.block(b, a, masks[i], B)
            if self.rule.sim:
                L = L + self.sim_learned(b, h, Y)
        o = self.spec.out_name + "."
        B = self.feedback(self.spec.out_name, len(self.spec.blocks))
        logits = linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"], B)
        L = L + F.cross_entropy(logits, y)
        return self._grad(L, "")

    def _grad(self, L, prefix):
        names = [k for k in self.P if k.startswith(prefix)]
        gs = torch.autograd.grad(L, [self.P[k] for k in names], allow_unused=True)
        return {k: g.detach().numpy() for k, g in zip(names, gs) if g is not None}

    def running_stats(self):
        return {k: v.numpy() for k, v in self.buf.items()}

r"""One training step of bioplaus's rules written in PyTorch, as the papers' code runs it.

This file is the PyTorch side of ``bioplaus bench steps``: the benchmark
loads it by path (it is not part of the package, which never imports
torch) and times :meth:`TorchStep.step` next to bioplaus's own step on the
same shapes, starting from the same parameters.

The step follows the reference code of Nøkland & Eidnes (2019)
(anokland/local-loss): under a local rule each block runs its forward,
computes its local loss, calls ``backward()`` on it and steps its own Adam
optimizer at once, and the next block receives the block's output
*detached*; the output layer is then trained with the cross-entropy
(scaled by ``1 - beta`` under predsim). Under backprop the whole net is
one graph, one ``backward()`` and one Adam step. float32 throughout, with
torch's own kernels (oneDNN convolutions, MKL/OpenBLAS products) and its
default thread count. On CUDA, TF32 tensor-core arithmetic is switched off
for products and cuDNN convolutions (:func:`strict_float32`; torch allows
it for cuDNN by default): bioplaus's CuPy products are strict float32, and
the benchmark compares like with like.

Supported rules: ``pred``, ``sim``, ``predsim`` (learned sim conv / linear
head), ``pred-bio`` (decoder to 128 binary codes of the labels, error back
through a fixed random ``B``), ``backprop``. Dropout uses torch's own
``dropout`` / ``dropout2d`` (masks are not bioplaus's, so with dropout the
two steps are equal in cost, not in values).
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

RULES = ("pred", "sim", "predsim", "pred-bio", "backprop")


def float32_products(tf32: bool = False) -> str:
    """TF32 on (``tf32``) or off for CUDA products and cuDNN convolutions; says what was set."""
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    if tf32:
        return "TF32 allowed (tensor-core products and convolutions, --tf32)"
    return "TF32 off (strict float32 products and convolutions)"


def strict_float32() -> str:
    """Switch TF32 off for CUDA products and cuDNN convolutions; says what was set."""
    return float32_products(False)


def similarity_matrix(x):
    """Adjusted cosine similarity of a batch (n, n), as the reference computes it."""
    if x.dim() == 4:
        if x.size(1) > 3 and x.size(2) > 1:
            x = x.reshape(x.size(0), x.size(1), -1).std(dim=2)  # (n, c)
        else:
            x = x.reshape(x.size(0), -1)
    xc = x - x.mean(dim=1, keepdim=True)
    xn = xc / (1e-8 + torch.sqrt(torch.sum(xc * xc, dim=1, keepdim=True)))
    return (xn @ xn.t()).clamp(-1, 1)


class _LinearFA(torch.autograd.Function):
    """``y = x W^T + b`` whose error reaches ``x`` through a fixed ``B`` (the reference's LinearFA)."""

    @staticmethod
    def forward(ctx, x, W, B, b):
        ctx.save_for_backward(x, B)
        return torch.addmm(b, x, W.t())

    @staticmethod
    def backward(ctx, dy):
        x, B = ctx.saved_tensors
        return dy @ B, dy.t() @ x, None, dy.sum(0)


class TorchStep:
    """The same training step as bioplaus's ``step_updates`` + ``optim.step``, in PyTorch.

    Parameters
    ----------
    model : bioplaus.net.model.Model
        Read for its spec, rule, config, heads, fixed matrices and initial
        parameters (copied, float32); the model is not modified.
    lr : float
        Adam's learning rate.
    dropout : float
        Drop probability (torch's own masks), 0 for none.
    device : str
        ``'cpu'`` or ``'cuda'``.
    optim : str
        ``'adam'`` (the papers' optimizer) or ``'sgd'`` (plain SGD: the update
        is ``-lr`` times the gradient, which the tests compare with bioplaus's).
    """

    def __init__(self, model, lr: float = 5e-4, dropout: float = 0.0, device: str = "cpu",
                 optim: str = "adam", tf32: bool = False):
        rule = model.rule
        if rule.name not in RULES:
            raise ValueError(f"no PyTorch formulation of rule {rule.name!r}; have {', '.join(RULES)}")
        if str(device).startswith("cuda"):
            float32_products(tf32)  # strict float32 unless asked: like with like
        self.spec, self.rule, self.heads = model.spec, rule, model.heads
        cfg = model.cfg
        self.nonlin, self.weights = model.nonlin, model.weights
        self.momentum, self.eps = cfg.bn_momentum, cfg.bn_eps
        self.dropout = float(dropout)

        def t(a, grad):
            v = torch.tensor(np.asarray(_host(a), dtype=np.float32), device=device)
            return v.requires_grad_(grad)

        self.P = {k: t(v, True) for k, v in model.params.items()}
        self.buf = {k: t(v, False) for k, v in model.buffers.items()}
        self.fixed = {k: t(v, False) for k, v in model.fixed.items()}
        self.codes = {}
        for b in self.spec.blocks:  # bio target code of every class: 1[P e_c > 0] (C, T)
            key = b.name + ".proj_y.weight"
            if key in self.fixed:
                self.codes[b.name] = (self.fixed[key].t() > 0).float()
        #: seconds spent in the optimizers' ``step()`` calls, one entry per
        #: :meth:`step` (on CUDA the time to queue them)
        self.update_log = []
        make = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optim]
        if rule.family == "global":  # the reference: one optimizer for the whole net
            self.opts = {"all": make(list(self.P.values()), lr=lr)}
        else:  # the reference: one optimizer per block (and one for the output layer)
            self.opts = {g: make([self.P[k] for k in names], lr=lr)
                         for g, names in model.groups.items()}

    # -- the forward net ----------------------------------------------------------------
    def block(self, b, x):
        """Returns ``(h, out)``: the activation before dropout and the block's output."""
        p = b.name + "."
        if b.flatten_in:
            x = x.reshape(x.shape[0], -1)
        W, bias = self.P[p + "encoder.weight"], self.P[p + "encoder.bias"]
        if b.kind == "conv":
            a = F.conv2d(x, W, bias, stride=b.stride, padding=b.pad)
        else:
            a = F.linear(x, W, bias)
        z = F.batch_norm(a, self.buf[p + "bn.running_mean"], self.buf[p + "bn.running_var"],
                         self.P[p + "bn.weight"], self.P[p + "bn.bias"], training=True,
                         momentum=self.momentum, eps=self.eps)
        h = F.relu(z) if self.nonlin == "relu" else F.leaky_relu(z, 0.01)
        out = h
        if self.dropout > 0:
            out = (F.dropout2d if b.kind == "conv" else F.dropout)(h, self.dropout, True)
        if b.pool:
            out = F.max_pool2d(out, 2, 2)
        return h, out

    def local_loss(self, i, b, h, y, Y):
        """The block's local loss (Nøkland & Eidnes 2019, Sec. 3)."""
        rule, p, geom = self.rule, b.name + ".", self.heads[i]
        L = 0.0
        if rule.pred:
            f = h
            if geom.pool_kernel is not None:
                f = F.avg_pool2d(h, geom.pool_kernel, stride=geom.pool_kernel,
                                 padding=geom.pool_pad, count_include_pad=True)
            f = f.reshape(f.shape[0], -1)
            W, bias = self.P[p + "decoder_y.weight"], self.P[p + "decoder_y.bias"]
            w = self.weights.pred
            if rule.bio:
                z = _LinearFA.apply(f, W, self.fixed[p + "decoder_y.weight_fa"], bias)
                L = L + w * F.binary_cross_entropy_with_logits(z, self.codes[b.name][y])
            else:
                L = L + w * F.cross_entropy(F.linear(f, W, bias), y)
        if rule.sim:
            if b.kind == "conv":
                r = F.conv2d(h, self.P[p + "conv_loss.weight"], None, stride=1, padding=1)
            else:
                r = F.linear(h, self.P[p + "linear_loss.weight"])
            w = self.weights.sim
            L = L + w * F.mse_loss(similarity_matrix(r), similarity_matrix(Y))
        return L

    # -- one step -------------------------------------------------------------------------
    def step(self, x, y):
        """One training step on ``x`` (n, c, h, w) float32 tensor, ``y`` (n,) int64 tensor."""
        self.update_log.append(0.0)
        Y = F.one_hot(y, self.spec.num_classes).float()
        o = self.spec.out_name + "."
        if self.rule.family == "global":
            a = x
            for b in self.spec.blocks:
                _, a = self.block(b, a)
            logits = F.linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"])
            opt = self.opts["all"]
            F.cross_entropy(logits, y).backward()
            self._update(opt)
            opt.zero_grad(set_to_none=True)
            return
        a = x
        for i, b in enumerate(self.spec.blocks):
            h, out = self.block(b, a)
            self.local_loss(i, b, h, y, Y).backward()
            opt = self.opts[b.name]
            self._update(opt)
            opt.zero_grad(set_to_none=True)
            a = out.detach()
        logits = F.linear(a.reshape(a.shape[0], -1), self.P[o + "weight"], self.P[o + "bias"])
        L = F.cross_entropy(logits, y)
        if self.weights.out != 1.0:
            L = self.weights.out * L
        L.backward()
        opt = self.opts[self.spec.out_name]
        self._update(opt)
        opt.zero_grad(set_to_none=True)

    def _update(self, opt):
        """``opt.step()``, its time added to this step's entry of :attr:`update_log`."""
        t0 = time.perf_counter()
        opt.step()
        self.update_log[-1] += time.perf_counter() - t0

    def params(self):
        """The current parameters as float32 NumPy arrays, keyed as bioplaus's."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.P.items()}


def _host(a):
    """A NumPy view/copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") else a


def inputs(x, y, device: str = "cpu"):
    """Torch tensors of a NumPy batch: x float32 (n, c, h, w), y int64 (n,)."""
    return (torch.from_numpy(np.ascontiguousarray(_host(x), dtype=np.float32)).to(device),
            torch.from_numpy(np.asarray(_host(y), dtype=np.int64)).to(device))


def synchronize(device: str = "cpu"):
    """Wait for queued CUDA work (nothing to wait for on the CPU)."""
    if device != "cpu":
        torch.cuda.synchronize()

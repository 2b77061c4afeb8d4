"""The two paths through the math, chosen in one place: the reference and the fast wing.

Every forward/backward pair, loss and optimizer step that a training step
calls is a field of :class:`Kernels`. Two tables fill those fields:

* :data:`REFERENCE` -- :mod:`bioplaus.ops`, :mod:`bioplaus.losses`,
  :mod:`bioplaus.similarity` and :mod:`bioplaus.optim`, written as the
  equations read: plain vectorised NumPy/CuPy, no pools, no threads, no
  in-place tricks. The oracle, the rule pages and the gradient checks use it.
* :func:`fast` -- the same names from the fast wing :mod:`bioplaus.fast`
  (module ``bioplaus.fast.<family>``) wherever it has a twin, and the
  reference function where it has none. Each twin has its reference's
  signature and is tested equal to it (``tests/fast``).

A caller holds one ``Kernels`` (``model.k``) and calls ``k.conv2d_forward``
and so on; nothing else decides which path runs.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, fields
from typing import Callable

# field name -> (family, attribute name in the family's modules)
TABLE = {
    "linear_forward": ("linear", "linear_forward"),
    "linear_backward": ("linear", "linear_backward"),
    "conv2d_forward": ("conv", "conv2d_forward"),
    "conv2d_backward": ("conv", "conv2d_backward"),
    "batchnorm_forward": ("norm", "batchnorm_forward"),
    "batchnorm_backward": ("norm", "batchnorm_backward"),
    "relu_forward": ("act", "relu_forward"),
    "relu_backward": ("act", "relu_backward"),
    "leaky_relu_forward": ("act", "leaky_relu_forward"),
    "leaky_relu_backward": ("act", "leaky_relu_backward"),
    "tanh_forward": ("act", "tanh_forward"),
    "tanh_backward": ("act", "tanh_backward"),
    "dropout_forward": ("dropout", "dropout_forward"),
    "dropout_backward": ("dropout", "dropout_backward"),
    "maxpool2d_forward": ("pool", "maxpool2d_forward"),
    "maxpool2d_backward": ("pool", "maxpool2d_backward"),
    "avgpool2d_forward": ("avgpool", "avgpool2d_forward"),
    "avgpool2d_backward": ("avgpool", "avgpool2d_backward"),
    "similarity_matrix_forward": ("similarity", "similarity_matrix_forward"),
    "similarity_matrix_backward": ("similarity", "similarity_matrix_backward"),
    "softmax_cross_entropy": ("losses", "softmax_cross_entropy"),
    "bce_with_logits": ("losses", "bce_with_logits"),
    "squared_hinge": ("losses", "squared_hinge"),
    "sim_loss": ("losses", "sim_loss"),
    "optimizer_step": ("optim", "step"),
}

# family -> the reference module
REFERENCE_MODULES = {
    "linear": "bioplaus.ops.linear",
    "conv": "bioplaus.ops.conv",
    "norm": "bioplaus.ops.norm",
    "act": "bioplaus.ops.act",
    "dropout": "bioplaus.ops.dropout",
    "pool": "bioplaus.ops.pool",
    "avgpool": "bioplaus.ops.avgpool",
    "similarity": "bioplaus.similarity",
    "losses": "bioplaus.losses",
    "optim": "bioplaus.optim",
}


def cuda_module_name(family: str) -> str:
    """The fast wing's fused CuPy module for a family (:mod:`bioplaus.fast.cuda`)."""
    return f"bioplaus.fast.cuda.{family}"


def fast_module_name(family: str) -> str:
    """The fast wing's module for a family (it may not exist: then the reference serves)."""
    return f"bioplaus.fast.{family}"


@dataclass(frozen=True)
class Kernels:
    """One function per field of :data:`TABLE`, all from one path (``name``)."""

    name: str
    linear_forward: Callable
    linear_backward: Callable
    conv2d_forward: Callable
    conv2d_backward: Callable
    batchnorm_forward: Callable
    batchnorm_backward: Callable
    relu_forward: Callable
    relu_backward: Callable
    leaky_relu_forward: Callable
    leaky_relu_backward: Callable
    tanh_forward: Callable
    tanh_backward: Callable
    dropout_forward: Callable
    dropout_backward: Callable
    maxpool2d_forward: Callable
    maxpool2d_backward: Callable
    avgpool2d_forward: Callable
    avgpool2d_backward: Callable
    similarity_matrix_forward: Callable
    similarity_matrix_backward: Callable
    softmax_cross_entropy: Callable
    bce_with_logits: Callable
    squared_hinge: Callable
    sim_loss: Callable
    optimizer_step: Callable

    def activation(self, name: str):
        """``(forward, backward)`` of the nonlinearity ``name`` ('relu', 'leakyrelu' or 'tanh')."""
        if name == "relu":
            return self.relu_forward, self.relu_backward
        if name == "leakyrelu":
            return self.leaky_relu_forward, self.leaky_relu_backward
        if name == "tanh":
            return self.tanh_forward, self.tanh_backward
        raise ValueError(f"unknown nonlinearity {name!r}; choose 'relu', 'leakyrelu' or 'tanh'")


assert [f.name for f in fields(Kernels)][1:] == list(TABLE), "Kernels fields and TABLE differ"


def _reference_function(field: str):
    family, attr = TABLE[field]
    return getattr(importlib.import_module(REFERENCE_MODULES[family]), attr)


def _fast_function(field: str):
    """The fast twin of ``field``, or None where the fast wing has none."""
    family, attr = TABLE[field]
    try:
        mod = importlib.import_module(fast_module_name(family))
    except ModuleNotFoundError as e:
        if e.name != fast_module_name(family):
            raise
        return None
    return getattr(mod, attr, None)


def _cuda_function(field: str):
    """The fused CuPy twin of ``field``, or None where there is none."""
    from bioplaus.fast import cuda

    family, attr = TABLE[field]
    if family not in cuda.FAMILIES:
        return None
    return getattr(importlib.import_module(cuda_module_name(family)), attr, None)


def cuda_twins() -> dict:
    """``{field: (reference_function, cuda_function)}`` for every field with a fused CuPy twin."""
    return {f: (_reference_function(f), c) for f in TABLE
            if (c := _cuda_function(f)) is not None}


def fast_twins() -> dict:
    """``{field: (reference_function, fast_function)}`` for every field that has a fast twin."""
    out = {}
    for field in TABLE:
        f = _fast_function(field)
        if f is not None:
            out[field] = (_reference_function(field), f)
    return out


def check_signatures() -> list:
    """Fields whose fast twin's signature differs from the reference's (should be none)."""
    bad = []
    for field, (ref, f) in [*fast_twins().items(), *cuda_twins().items()]:
        if inspect.signature(ref) != inspect.signature(f):
            bad.append(f"{field}: reference{inspect.signature(ref)} vs fast{inspect.signature(f)}")
    return bad


REFERENCE = Kernels("reference", **{f: _reference_function(f) for f in TABLE})

_FAST = None
_FAST_CUDA = None


def is_cupy(xp) -> bool:
    """Whether ``xp`` is the CuPy module (not NumPy, nor a stand-in with another name)."""
    return getattr(xp, "__name__", None) == "cupy"


def fast(xp=None) -> Kernels:
    """The fast table: the fast wing's twin where there is one, else the reference.

    For CuPy (``xp`` the ``cupy`` module) the fused CuPy kernels of
    :mod:`bioplaus.fast.cuda` come first (table ``"fast-cuda"``); for NumPy
    or ``xp=None`` they are left out.
    """
    global _FAST, _FAST_CUDA
    if _FAST is None:
        _FAST = Kernels("fast", **{f: (_fast_function(f) or _reference_function(f)) for f in TABLE})
    if not is_cupy(xp):
        return _FAST
    if _FAST_CUDA is None:
        _FAST_CUDA = Kernels("fast-cuda", **{f: (_cuda_function(f) or getattr(_FAST, f))
                                             for f in TABLE})
    return _FAST_CUDA


def get_kernels(reference: bool = False, xp=None) -> Kernels:
    """The reference table when ``reference`` is true, else the fast one for ``xp``."""
    return REFERENCE if reference else fast(xp)

"""Fused CuPy kernels: the fast wing's GPU twins (issue 18).

Each module here, ``bioplaus.fast.cuda.<family>``, holds twins with the
reference's signatures, written as ``cupy.ElementwiseKernel`` /
``cupy.ReductionKernel``: the elementwise passes that the reference runs as
separate CuPy kernels (each a trip through device memory) run as one. They
enter the fast table only for CuPy (:func:`bioplaus.kernels.fast` of the
``cupy`` module); on NumPy nothing here is used.

Arithmetic. Every kernel body mirrors the reference expression term by term,
in the reference's order and dtype (the scalars cast to the array's dtype, as
CuPy casts a Python float against a float32 array), and is compiled with
``--fmad=false`` (:data:`OPTIONS`) so that ``a * b + c`` is rounded twice, as
the reference's two kernels round it, not contracted to one fused
multiply-add. Elementwise twins therefore give the reference's values;
twins that reduce (batch norm's variance and ``dgamma``, the maps' standard
deviations) sum in CuPy's reduction order, which may differ from the
reference's by rounding. ``tests/fast/test_cuda_*.py`` compare each with the
reference on CuPy (skipped where there is no GPU).

Importing this package needs no CuPy: the kernels are built on first use,
with CuPy from :func:`bioplaus.backend.get_xp`.
"""
from __future__ import annotations

import functools

from bioplaus import backend

#: NVRTC options of every kernel here: no contraction of a*b + c into an FMA.
OPTIONS = ("--fmad=false",)

#: The families that have a CUDA twin (``bioplaus.fast.cuda.<family>``).
FAMILIES = ("act", "norm", "optim", "similarity")


def _cupy():
    return backend.get_xp("gpu")


@functools.lru_cache(maxsize=None)
def elementwise(in_params: str, out_params: str, operation: str, name: str):
    """A ``cupy.ElementwiseKernel`` (built once per signature, on first use)."""
    return _cupy().ElementwiseKernel(in_params, out_params, operation, name, options=OPTIONS)


@functools.lru_cache(maxsize=None)
def reduction(in_params: str, out_params: str, map_expr: str, reduce_expr: str,
              post_map_expr: str, identity: str, name: str):
    """A ``cupy.ReductionKernel`` (built once per signature, on first use)."""
    return _cupy().ReductionKernel(in_params, out_params, map_expr, reduce_expr, post_map_expr,
                                   identity, name, options=OPTIONS)

"""The fused CuPy kernels (bioplaus.fast.cuda) enter the fast table for CuPy only,
with the reference's signatures; the package imports without CuPy."""
import importlib
import types

import numpy as np

from bioplaus import kernels
from bioplaus.fast import cuda

CUDA_FIELDS = {"relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
               "batchnorm_forward", "batchnorm_backward", "optimizer_step",
               "similarity_matrix_forward"}


def test_every_cuda_module_imports_without_cupy():
    for family in cuda.FAMILIES:
        importlib.import_module(kernels.cuda_module_name(family))
    assert set(kernels.cuda_twins()) == CUDA_FIELDS


def test_the_cuda_twins_have_the_reference_signatures():
    assert kernels.check_signatures() == []


def test_numpy_keeps_the_host_fast_table():
    assert kernels.fast(np) is kernels.fast() and kernels.fast().name == "fast"
    for f in kernels.TABLE:
        assert not getattr(kernels.fast(np), f).__module__.startswith("bioplaus.fast.cuda")


def test_cupy_gets_the_cuda_twins_first_and_the_fast_wing_for_the_rest():
    cupy_like = types.ModuleType("cupy")  # only the name is read when the table is chosen
    k = kernels.fast(cupy_like)
    assert k.name == "fast-cuda" and k is kernels.fast(cupy_like)
    for f in kernels.TABLE:
        fn = getattr(k, f)
        if f in CUDA_FIELDS:
            assert fn is kernels.cuda_twins()[f][1], f
        else:
            assert fn is getattr(kernels.fast(), f), f
    assert kernels.get_kernels(False, cupy_like) is k
    assert kernels.get_kernels(True, cupy_like) is kernels.REFERENCE


def test_a_stand_in_array_module_is_not_taken_for_cupy():
    from tests.gpu.counting_xp import xp

    assert not kernels.is_cupy(xp) and kernels.fast(xp) is kernels.fast()

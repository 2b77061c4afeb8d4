"""Shared fixtures: the array-module parameter for NumPy/CuPy parity."""
import numpy as np
import pytest

from bioplaus import backend

_XPS = [pytest.param("numpy", id="numpy"),
        pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=_XPS)
def xp(request):
    """The array module under test; the CuPy case runs wherever a GPU is present."""
    if request.param == "numpy":
        return np
    if not backend.gpu_available():
        pytest.skip("CuPy with a GPU is not available on this machine")
    return backend.get_xp("gpu")

"""Activations: finite differences, torch autograd, convention at 0, lookup."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.act import (
    ACTIVATIONS,
    activation,
    derivative,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    tanh_backward,
    tanh_forward,
)
from helpers import check_grad, rel_error


def _away_from_zero(rng, shape):
    """Inputs with |a| >= 0.05 so that central differences never straddle the kink."""
    a = rng.standard_normal(shape)
    return np.where(np.abs(a) < 0.05, 0.05 * np.sign(a + 1e-300) + a, a)


CASES = [
    ("relu", relu_forward, relu_backward, {}, lambda t: torch.relu(t)),
    ("leakyrelu", leaky_relu_forward, leaky_relu_backward, {},
     lambda t: torch.nn.functional.leaky_relu(t, 0.01)),
    ("leakyrelu-0.2", leaky_relu_forward, leaky_relu_backward, {"slope": 0.2},
     lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
]


@pytest.mark.parametrize("name,fwd,bwd,kw,_t", CASES, ids=[c[0] for c in CASES])
def test_backward_finite_differences(name, fwd, bwd, kw, _t):
    rng = np.random.default_rng(0)
    x = _away_from_zero(rng, (3, 4, 2, 2))
    dy = rng.standard_normal(x.shape)
    _, cache = fwd(x, **kw)
    check_grad(lambda: fwd(x, **kw)[0], x, dy, bwd(dy, cache))


@pytest.mark.parametrize("name,fwd,bwd,kw,tfun", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_including_zero(name, fwd, bwd, kw, tfun):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 7))
    x[0, :3] = 0.0  # exact zeros: PyTorch takes the non-positive branch there
    x[1, 0] = -0.0
    dy = rng.standard_normal(x.shape)
    y, cache = fwd(x, **kw)
    dx = bwd(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = tfun(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())
    # derivative() is the same map: backward(dy) == dy * f'(a)
    fprime = derivative(cache)
    assert fprime.dtype == x.dtype and fprime.shape == x.shape
    np.testing.assert_array_equal(dy * fprime, dx)
    slope = kw.get("slope", 0.01) if name.startswith("leaky") else 0.0
    np.testing.assert_array_equal(fprime[0, :3], slope)
    np.testing.assert_array_equal(fprime[x > 0], 1.0)


def test_lookup_by_name():
    assert activation("relu") == (relu_forward, relu_backward)
    assert activation("LeakyReLU") == (leaky_relu_forward, leaky_relu_backward)
    assert activation("Tanh") == (tanh_forward, tanh_backward)
    assert set(ACTIVATIONS) == {"relu", "leakyrelu", "tanh"}
    with pytest.raises(ValueError, match="known activations: leakyrelu, relu, tanh"):
        activation("sigmoid")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_dtype_and_parity(xp, name):
    fwd, bwd = activation(name)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 5, 3, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, cache = fwd(backend.to_device(x, xp))
    dx = bwd(backend.to_device(dy, xp), cache)
    fprime = derivative(cache)
    assert y.dtype == dx.dtype == fprime.dtype == np.float32
    y0, c0 = fwd(x)
    np.testing.assert_array_equal(backend.to_numpy(y), y0)
    np.testing.assert_array_equal(backend.to_numpy(dx), bwd(dy, c0))
    np.testing.assert_array_equal(backend.to_numpy(fprime), derivative(c0))
    assert rel_error(dx, dy * backend.to_numpy(fprime)) == 0.0


NONFINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("name,fwd,bwd,kw,tfun", CASES, ids=[c[0] for c in CASES])
def test_non_finite_values_give_what_torch_gives(name, fwd, bwd, kw, tfun):
    """NaN/inf upstream gradients at inactive and active units, and NaN/inf inputs.

    ReLU selects: 0 at an inactive unit whatever the upstream gradient (NaN * 0
    would be NaN). LeakyReLU gives slope * dy there, as torch (NaN stays NaN).
    """
    x = np.array([-1.0, -1.0, -1.0, 0.0, 2.0, 2.0, np.nan, np.nan, np.inf, -np.inf])
    dy = np.array([*NONFINITE, np.nan, np.nan, np.inf, 1.0, np.nan, 1.0, 1.0])
    y, cache = fwd(x, **kw)
    dx = bwd(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = tfun(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(dx, tx.grad.numpy())  # NaN where torch has NaN
    if name == "relu":
        np.testing.assert_array_equal(dx[:4], 0.0)  # inactive units: 0, not NaN


# ------------------------------------------------------------------ tanh
# Smooth, so no kink to avoid; its cache is the output y, and f'(a) = 1 - y^2.

def test_tanh_backward_finite_differences():
    rng = np.random.default_rng(3)
    x = 2.0 * rng.standard_normal((3, 4, 2, 2))
    dy = rng.standard_normal(x.shape)
    _, cache = tanh_forward(x)
    check_grad(lambda: tanh_forward(x)[0], x, dy, tanh_backward(dy, cache))


def test_tanh_matches_torch_and_derivative_is_one_minus_y_squared():
    rng = np.random.default_rng(4)
    x = 3.0 * rng.standard_normal((6, 7))
    x[0, 0], x[0, 1] = 0.0, 25.0  # 0 (f' = 1) and deep saturation (f' = 0 in float64)
    dy = rng.standard_normal(x.shape)
    y, cache = tanh_forward(x)
    dx = tanh_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tanh(tx)
    ty.backward(torch.tensor(dy))
    # two libms: equal to the last ulp or so, not necessarily bitwise
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=4e-16, atol=0)
    # 1 - y^2 cancels where y is near +-1: an ulp of y there is ~1e-16 absolute
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-14, atol=1e-15)
    fprime = derivative(cache)
    assert fprime.dtype == x.dtype and fprime.shape == x.shape
    np.testing.assert_array_equal(fprime, 1.0 - y * y)
    np.testing.assert_array_equal(dy * fprime, dx)
    assert fprime[0, 0] == 1.0 and fprime[0, 1] == 0.0
    assert np.all((fprime >= 0) & (fprime <= 1))


def test_tanh_non_finite_values_give_what_torch_gives():
    """tanh(+-inf) = +-1 with f' = 0, so a finite upstream gradient gives 0 there;
    NaN in either input or gradient gives NaN, as torch."""
    x = np.array([np.inf, -np.inf, np.nan, 0.5, 0.5, np.inf])
    dy = np.array([1.0, 1.0, 1.0, np.nan, np.inf, np.inf])
    y, cache = tanh_forward(x)
    dx = tanh_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tanh(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(tx.grad.numpy()))
    finite = ~np.isnan(dx)
    np.testing.assert_allclose(dx[finite], tx.grad.numpy()[finite], rtol=1e-14)
    assert dx[0] == 0.0 and dx[1] == 0.0

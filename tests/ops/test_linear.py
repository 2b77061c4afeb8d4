"""Dense layer: finite differences, torch autograd, explicit feedback matrix."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.linear import linear_backward, linear_forward
from helpers import check_grad, rel_error


def _data(rng, n=5, d_in=4, d_out=3):
    x = rng.standard_normal((n, d_in))
    W = rng.standard_normal((d_out, d_in))
    b = rng.standard_normal(d_out)
    dy = rng.standard_normal((n, d_out))
    return x, W, b, dy


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_finite_differences(bias):
    rng = np.random.default_rng(0)
    x, W, b, dy = _data(rng)
    b = b if bias else None
    _, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(dy, cache)
    f = lambda: linear_forward(x, W, b)[0]  # noqa: E731
    check_grad(f, x, dy, dx)
    check_grad(f, W, dy, dW)
    if bias:
        check_grad(f, b, dy, db)
    else:
        assert db is None


def test_linear_matches_torch():
    rng = np.random.default_rng(1)
    x, W, b, dy = _data(rng, n=7, d_in=6, d_out=5)
    y, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(dy, cache)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    ty = torch.nn.functional.linear(tx, tW, tb)
    ty.backward(torch.tensor(dy))
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-12
    assert rel_error(dW, tW.grad.numpy()) < 1e-12
    assert rel_error(db, tb.grad.numpy()) < 1e-12


def test_feedback_matrix_carries_the_error():
    rng = np.random.default_rng(2)
    x, W, b, dy = _data(rng)
    B = rng.standard_normal(W.shape)
    _, cache = linear_forward(x, W, b)
    dx_fa, dW_fa, db_fa = linear_backward(dy, cache, B=B)
    dx_bp, dW_bp, db_bp = linear_backward(dy, cache)
    np.testing.assert_allclose(dx_fa, dy @ B, rtol=1e-12)
    assert not np.allclose(dx_fa, dx_bp)
    # the parameter gradients do not depend on the feedback path
    np.testing.assert_array_equal(dW_fa, dW_bp)
    np.testing.assert_array_equal(db_fa, db_bp)
    # B = W is backpropagation
    dx_w, _, _ = linear_backward(dy, cache, B=W)
    np.testing.assert_array_equal(dx_w, dx_bp)


def test_need_dx_false_and_shape_errors():
    rng = np.random.default_rng(3)
    x, W, b, dy = _data(rng)
    _, cache = linear_forward(x, W, b)
    dx, dW, db = linear_backward(dy, cache, need_dx=False)
    assert dx is None and dW.shape == W.shape and db.shape == b.shape
    with pytest.raises(ValueError, match="W"):
        linear_forward(x, W.T, b)
    with pytest.raises(ValueError, match="b must"):
        linear_forward(x, W, b[:-1])
    with pytest.raises(ValueError, match="B must"):
        linear_backward(dy, cache, B=W.T)


def test_dtype_follows_input_and_parity(xp):
    rng = np.random.default_rng(4)
    x, W, b, dy = (a.astype(np.float32) for a in _data(rng, n=16, d_in=9, d_out=7))
    B = rng.standard_normal(W.shape).astype(np.float32)
    dev = [backend.to_device(a, xp) for a in (x, W, b, dy, B)]
    y, cache = linear_forward(*dev[:3])
    dx, dW, db = linear_backward(dev[3], cache, B=dev[4])
    assert y.dtype == np.float32 and dx.dtype == np.float32 and dW.dtype == np.float32
    y0, c0 = linear_forward(x, W, b)
    for got, ref in zip((y, dx, dW, db), (y0, *linear_backward(dy, c0, B=B))):
        assert rel_error(got, ref) < 1e-5

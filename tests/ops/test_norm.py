"""Batch norm: finite differences and torch (functional and modules), both modes."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.norm import batchnorm_backward, batchnorm_forward
from helpers import check_grad, rel_error

SHAPES = {"1d": (6, 4), "2d": (3, 4, 3, 2)}


def _params(rng, shape):
    c = shape[1]
    x = rng.standard_normal(shape) * 1.5 + 0.7
    gamma = rng.uniform(0.5, 1.5, c)
    beta = rng.standard_normal(c)
    rm = rng.standard_normal(c) * 0.3
    rv = rng.uniform(0.5, 2.0, c)
    dy = rng.standard_normal(shape)
    return x, gamma, beta, rm, rv, dy


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_backward_finite_differences(kind, training):
    rng = np.random.default_rng(0)
    x, gamma, beta, rm, rv, dy = _params(rng, SHAPES[kind])

    def f():
        return batchnorm_forward(x, gamma, beta, rm, rv, training)[0]

    _, cache, _, _ = batchnorm_forward(x, gamma, beta, rm, rv, training)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    check_grad(f, x, dy, dx)
    check_grad(f, gamma, dy, dgamma)
    check_grad(f, beta, dy, dbeta)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_matches_torch_functional(kind, training):
    rng = np.random.default_rng(1)
    shape = (8, 5) if kind == "1d" else (4, 5, 3, 3)
    x, gamma, beta, rm, rv, dy = _params(rng, shape)
    inputs = [a.copy() for a in (x, gamma, beta, rm, rv)]
    y, cache, new_rm, new_rv = batchnorm_forward(x, gamma, beta, rm, rv, training,
                                                 momentum=0.3, eps=1e-3)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)
    # stateless: nothing passed in was modified
    for before, after in zip(inputs, (x, gamma, beta, rm, rv)):
        np.testing.assert_array_equal(before, after)

    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=training,
                                        momentum=0.3, eps=1e-3)
    ty.backward(torch.tensor(dy))
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-10
    assert rel_error(dgamma, tg.grad.numpy()) < 1e-12
    assert rel_error(dbeta, tb.grad.numpy()) < 1e-12
    assert rel_error(new_rm, trm.numpy()) < 1e-12  # torch updates its buffers in place
    assert rel_error(new_rv, trv.numpy()) < 1e-12
    if training:
        assert not np.allclose(new_rm, rm) and not np.allclose(new_rv, rv)
    else:
        assert new_rm is rm and new_rv is rv


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_running_stats_match_torch_modules(kind):
    """Two training steps, then evaluation, against nn.BatchNorm1d / nn.BatchNorm2d."""
    rng = np.random.default_rng(2)
    shape = (16, 6) if kind == "1d" else (8, 6, 4, 4)
    c = shape[1]
    module = (torch.nn.BatchNorm1d if kind == "1d" else torch.nn.BatchNorm2d)(c).double()
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(gamma))
        module.bias.copy_(torch.tensor(beta))
    rm, rv = np.zeros(c), np.ones(c)  # PyTorch's initial running statistics
    module.train()
    for _ in range(2):
        x = rng.standard_normal(shape) * 2.0 + 3.0
        y, _, rm, rv = batchnorm_forward(x, gamma, beta, rm, rv, training=True)
        ty = module(torch.tensor(x))
        assert rel_error(y, ty.detach().numpy()) < 1e-12
        assert rel_error(rm, module.running_mean.numpy()) < 1e-12
        assert rel_error(rv, module.running_var.numpy()) < 1e-12
    module.eval()
    x = rng.standard_normal(shape)
    y, _, rm2, rv2 = batchnorm_forward(x, gamma, beta, rm, rv, training=False)
    assert rel_error(y, module(torch.tensor(x)).detach().numpy()) < 1e-12
    assert rm2 is rm and rv2 is rv


def test_no_running_stats_and_errors():
    rng = np.random.default_rng(3)
    x, gamma, beta, rm, rv, _ = _params(rng, (5, 3))
    y, _, a, b = batchnorm_forward(x, gamma, beta, None, None, training=True)
    assert a is None and b is None
    np.testing.assert_allclose(y.mean(0), beta, atol=1e-12)
    with pytest.raises(ValueError, match="evaluation mode needs"):
        batchnorm_forward(x, gamma, beta, None, None, training=False)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batchnorm_forward(x[:1], gamma, beta, rm, rv, training=True)
    with pytest.raises(ValueError, match="gamma must have shape"):
        batchnorm_forward(x, gamma[:2], beta, rm, rv, training=True)
    with pytest.raises(ValueError, match="shape \\(n, c"):
        batchnorm_forward(x[0], gamma, beta, rm, rv, training=True)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_float32_accuracy_and_parity(xp, kind, training):
    """float32 (the training dtype) stays close to float64, with a large mean offset."""
    rng = np.random.default_rng(4)
    shape = (64, 32) if kind == "1d" else (16, 8, 8, 8)
    x, gamma, beta, rm, rv, dy = _params(rng, shape)
    x = x * 0.1 + 5.0  # mean much larger than the spread
    rm = rm + 5.0
    ref = batchnorm_forward(x, gamma, beta, rm, rv, training)
    ref_grads = batchnorm_backward(dy, ref[1])
    dev = [backend.to_device(a, xp, np.float32) for a in (x, gamma, beta, rm, rv, dy)]
    y, cache, new_rm, new_rv = batchnorm_forward(*dev[:5], training)
    grads = batchnorm_backward(dev[5], cache)
    for got in (y, new_rm, new_rv, *grads):
        assert backend.array_module(got) is xp and got.dtype == np.float32
    for got, want in zip((y, new_rm, new_rv, *grads), (ref[0], ref[2], ref[3], *ref_grads)):
        assert rel_error(got, want) < 1e-4

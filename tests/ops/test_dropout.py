"""Dropout: masks (rate, scale, channels, reproducibility), gradients, torch."""
import numpy as np
import pytest
import torch

from bioplaus import backend
from bioplaus.ops.dropout import dropout_backward, dropout_forward, dropout_mask
from helpers import check_grad


def test_keep_rate_and_scale_on_a_big_draw():
    rng = np.random.default_rng(0)
    p, n = 0.3, 1_000_000
    mask = dropout_mask(rng, np, (1000, 1000), p)
    assert mask.shape == (1000, 1000) and mask.dtype == np.float32
    values = np.unique(mask)
    np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - p)], rtol=1e-7)
    keep = np.mean(mask > 0)
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    # inverted dropout keeps the expectation: E[mask] = 1
    assert abs(mask.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)


def test_channel_mask_is_constant_over_space():
    rng = np.random.default_rng(1)
    p = 0.5
    mask = dropout_mask(rng, np, (200, 300, 5, 7), p, channel=True, dtype=np.float64)
    assert mask.shape == (200, 300, 1, 1) and mask.dtype == np.float64
    keep = np.mean(mask > 0)
    assert abs(keep - (1 - p)) < 5 * np.sqrt(p * (1 - p) / mask.size)
    x = np.ones((200, 300, 5, 7))
    y, _ = dropout_forward(x, mask)
    # every feature map is either all dropped or all kept (and scaled)
    assert np.all(y.min(axis=(2, 3)) == y.max(axis=(2, 3)))
    assert set(np.unique(y)) == {0.0, 2.0}


def test_same_generator_state_same_mask():
    g = backend.stream(7, "dropout", 2)
    state = backend.generator_state(g)
    a = dropout_mask(g, np, (64, 32), 0.2)
    b = dropout_mask(g, np, (64, 32), 0.2)
    assert not np.array_equal(a, b)  # the generator advanced
    backend.set_generator_state(g, state)
    np.testing.assert_array_equal(dropout_mask(g, np, (64, 32), 0.2), a)
    h = backend.stream(7, "dropout", 2)
    np.testing.assert_array_equal(dropout_mask(h, np, (64, 32), 0.2), a)


def test_p_zero_is_identity_and_validation():
    rng = np.random.default_rng(2)
    state = backend.generator_state(rng)
    assert dropout_mask(rng, np, (4, 5), 0.0) is None
    assert backend.generator_state(rng) == state  # nothing drawn
    x = rng.standard_normal((4, 5))
    y, cache = dropout_forward(x, None)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dropout_backward(x, cache), x)
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="0 <= p < 1"):
            dropout_mask(rng, np, (4, 5), bad)
    with pytest.raises(ValueError, match="channel dropout"):
        dropout_mask(rng, np, (4, 5), 0.5, channel=True)


@pytest.mark.parametrize("channel", [False, True])
def test_backward_finite_differences(channel):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 2, 3))
    dy = rng.standard_normal(x.shape)
    mask = dropout_mask(rng, np, x.shape, 0.4, channel=channel, dtype=np.float64)
    _, cache = dropout_forward(x, mask)
    check_grad(lambda: dropout_forward(x, mask)[0], x, dy, dropout_backward(dy, cache))


@pytest.mark.parametrize("channel", [False, True])
def test_matches_torch_with_the_same_mask(channel):
    """torch draws the mask; the kept pattern is read off its output and reused."""
    p = 0.3
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 8, 3, 3)) + 0.1  # nonzero almost surely
    dy = rng.standard_normal(x.shape)
    tx = torch.tensor(x, requires_grad=True)
    torch.manual_seed(0)
    if channel:
        ty = torch.nn.functional.dropout2d(tx, p, training=True)
    else:
        ty = torch.nn.functional.dropout(tx, p, training=True)
    ty.backward(torch.tensor(dy))
    kept = ty.detach().numpy() != 0
    if channel:
        kept = kept[:, :, :1, :1]  # (n, c, 1, 1)
        assert np.all((ty.detach().numpy() != 0) == kept)
    assert 0 < kept.mean() < 1
    mask = kept / (1 - p)
    y, cache = dropout_forward(x, mask)
    dx = dropout_backward(dy, cache)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-15, atol=0)


@pytest.mark.parametrize("channel", [False, True])
def test_numpy_cupy_draw_identical_masks(xp, channel):
    shape = (8, 6, 4, 4)
    a = dropout_mask(backend.stream(3, "dropout", 1), xp, shape, 0.25, channel=channel)
    b = dropout_mask(backend.stream(3, "dropout", 1), np, shape, 0.25, channel=channel)
    assert backend.array_module(a) is xp
    np.testing.assert_array_equal(backend.to_numpy(a), b)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    y, cache = dropout_forward(backend.to_device(x, xp), a)
    dx = dropout_backward(backend.to_device(x, xp), cache)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(y), x * b)
    np.testing.assert_array_equal(backend.to_numpy(dx), x * b)

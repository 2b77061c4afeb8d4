"""Batch norm: the fast twin (channel groups on the host threads, in place) equals the reference."""
import numpy as np
import pytest

from bioplaus import backend, kernels
from bioplaus.fast import norm as fast_norm
from bioplaus.ops import norm as ref_norm
from helpers import rel_error

# mlp vectors (n, d) and conv maps (n, c, h, w), C order and channel-major (as convs give)
SHAPES = {"mlp": (16, 64), "conv": (8, 12, 6, 5), "conv-channel-major": (8, 12, 6, 5)}
NAMES = ("y", "running_mean", "running_var", "dx", "dgamma", "dbeta")


def _inputs(shape, layout, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape) * 1.5 + 0.7
    dy = rng.standard_normal(shape)
    if layout == "conv-channel-major":
        x, dy = (np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1) for a in (x, dy))
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c) * 0.3, rng.uniform(0.5, 2.0, c)
    return [a.astype(dtype) for a in (x, gamma, beta, rm, rv, dy)]


def _run(mod, x, gamma, beta, rm, rv, dy, training):
    y, cache, m, v = mod.batchnorm_forward(x, gamma, beta, rm, rv, training, momentum=0.2)
    return (y, m, v) + tuple(mod.batchnorm_backward(dy, cache))


def test_the_fast_table_takes_these_twins_with_the_reference_signatures():
    k = kernels.fast()
    assert k.batchnorm_forward is fast_norm.batchnorm_forward
    assert k.batchnorm_backward is fast_norm.batchnorm_backward
    assert kernels.REFERENCE.batchnorm_forward is ref_norm.batchnorm_forward
    assert kernels.check_signatures() == []


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_fast_equals_reference_float64(layout, training):
    # The fast path sums the variance with einsum and, in evaluation, folds the
    # running statistics into one scale and one shift per channel: the same
    # equations in another order, so equal to rounding (1e-12 relative), not bitwise.
    args = _inputs(SHAPES[layout], layout)
    want = _run(ref_norm, *args, training)
    got = _run(fast_norm, *args, training)
    for name, a, b in zip(NAMES, got, want):
        assert a.dtype == b.dtype == np.float64 and a.shape == b.shape, name
        assert rel_error(a, b) < 1e-12, name
    assert got[0].strides == args[0].strides  # the fast path keeps the input's memory order


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_fast_equals_reference_float32(xp, layout, training):
    # float32: each path rounds its sums in its own order; within 16 ulps
    # (2e-6) of the largest value, with a mean much larger than the spread (5.0 vs 0.15)
    x, gamma, beta, rm, rv, dy = _inputs(SHAPES[layout], layout, seed=1)
    x = x * 0.1 + 5.0
    args = [backend.to_device(a, xp, np.float32) for a in (x, gamma, beta, rm + 5.0, rv, dy)]
    want = _run(ref_norm, *args, training)
    got = _run(fast_norm, *args, training)
    for name, a, b in zip(NAMES, got, want):
        assert backend.array_module(a) is xp and a.dtype == b.dtype == np.float32, name
        assert rel_error(a, b) < 2e-6, name


def test_fast_raises_what_the_reference_raises():
    x, gamma, beta, rm, rv, _ = _inputs((5, 3), "mlp")
    for mod in (ref_norm, fast_norm):
        with pytest.raises(ValueError, match="evaluation mode needs"):
            mod.batchnorm_forward(x, gamma, beta, None, None, training=False)
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            mod.batchnorm_forward(x[:1], gamma, beta, rm, rv, training=True)
        with pytest.raises(ValueError, match="gamma must have shape"):
            mod.batchnorm_forward(x, gamma[:2], beta, rm, rv, training=True)
        y, _, a, b = mod.batchnorm_forward(x, gamma, beta, None, None, training=True)
        assert a is None and b is None


@pytest.mark.parametrize("layout", ["C", "channel-major"])
@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_channel_groups_on_threads_give_the_whole_batch_result(monkeypatch, kind, layout):
    shape = (5, 7) if kind == "1d" else (3, 7, 3, 2)  # 7 channels: groups of 1, 2 or all
    x, gamma, beta, rm, rv, dy = _inputs(shape, "mlp", seed=7)
    if layout == "channel-major":
        x, dy = (np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1) for a in (x, dy))
    per_channel = x.size // x.shape[1]

    def run():
        return _run(fast_norm, x, gamma, beta, rm, rv, dy, True)

    monkeypatch.setattr(fast_norm, "GROUP_VALUES", 1 << 40)
    whole = run()
    for threads, group_channels in (("1", 1), ("3", 1), ("1", 2), ("3", 2)):
        monkeypatch.setenv("BIOPLAUS_NUM_THREADS", threads)
        monkeypatch.setattr(fast_norm, "GROUP_VALUES", group_channels * per_channel)
        got = run()
        for name, a, b in zip(NAMES, got, whole):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=name)
        if threads == "3":  # the same groups on more threads: the same bits
            for a, b in zip(got, previous):
                np.testing.assert_array_equal(a, b)
        previous = got
    assert got[0].strides == x.strides and got[3].strides == dy.strides  # memory order kept

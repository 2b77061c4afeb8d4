"""ReLU and LeakyReLU: the fast twins (channel groups on the host threads, in place, a
multiplied mask) give the reference's bits, non-finite values included."""
import numpy as np
import pytest
import torch

from bioplaus import backend, kernels
from bioplaus.fast import act as fast_act
from bioplaus.ops import act as ref_act

PAIRS = ["relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward"]
# dense arrays take the compiled loops of bioplaus.fast.jit (C order and channel-major
# alike); a strided view (every other channel) takes the NumPy channel groups
SHAPES = {"mlp": (16, 40), "conv": (4, 7, 3, 2), "conv-channel-major": (4, 7, 3, 2), "1d": (9,),
          "strided": (4, 14, 3, 2)}
SLOPES = [0.01, 0.2, 1.5]  # below 1 the fast forward takes a maximum, above it a masked copy


def _inputs(layout, dtype, seed=0, special=True):
    rng = np.random.default_rng(seed)
    shape = SHAPES[layout]
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if special:
        x.flat[::5] = 0.0  # the convention at 0
        x.flat[1::11] = -0.0
        x.flat[2::13] = np.nan
        x.flat[3::17] = np.inf
        x.flat[4::19] = -np.inf
        dy.flat[::3] = np.nan  # at active and inactive units alike
        dy.flat[1::7] = np.inf
        dy.flat[2::7] = -np.inf
    if layout == "conv-channel-major":
        x, dy = (np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1) for a in (x, dy))
    if layout == "strided":
        x, dy = x[:, ::2], dy[:, ::2]
    return x, dy


@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_dense_arrays_take_the_compiled_loops_and_views_do_not(layout):
    from bioplaus.fast import jit
    x, dy = _inputs(layout, np.float32)
    assert (jit.flat(x, dy) is None) == (layout == "strided")


def _both(mod, x, dy, slope):
    y, c = mod.relu_forward(x)
    ly, lc = mod.leaky_relu_forward(x, slope)
    return {"relu": y, "relu_mask": c.positive, "relu_dx": mod.relu_backward(dy, c),
            "leaky": ly, "leaky_mask": lc.positive, "leaky_dx": mod.leaky_relu_backward(dy, lc)}


def test_the_fast_table_takes_these_twins_with_the_reference_signatures():
    k = kernels.fast()
    for name in PAIRS:
        assert getattr(k, name) is getattr(fast_act, name)
        assert getattr(kernels.REFERENCE, name) is getattr(ref_act, name)
    assert kernels.check_signatures() == []


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("special", [False, True], ids=["finite", "non-finite"])
@pytest.mark.parametrize("layout", sorted(SHAPES))
def test_fast_gives_the_reference_bits(xp, layout, special, dtype):
    # elementwise and the same arithmetic (a product by 0/1 equals the selection
    # wherever it is finite, and the fast path selects where it is not): bitwise,
    # in float64 and float32 (assert_array_equal: NaN equals NaN, -0.0 equals 0.0)
    x, dy = _inputs(layout, dtype, special=special)
    x, dy = backend.to_device(x, xp), backend.to_device(dy, xp)
    for slope in SLOPES:
        want, got = _both(ref_act, x, dy, slope), _both(fast_act, x, dy, slope)
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == x.shape, name
            np.testing.assert_array_equal(backend.to_numpy(got[name]),
                                          backend.to_numpy(want[name]), err_msg=name)
        if xp is np and x.ndim > 1 and layout != "strided":
            assert got["relu"].strides == x.strides  # the fast path keeps the memory order


@pytest.mark.parametrize("mod", [ref_act, fast_act], ids=["reference", "fast"])
def test_nan_and_inf_upstream_at_inactive_units_give_what_torch_gives(mod):
    """ReLU: 0 at an inactive unit for a NaN or inf upstream gradient (torch's
    threshold backward selects; a product by the 0/1 derivative would give NaN).
    LeakyReLU: slope * dy there, as torch (NaN stays NaN, inf stays inf)."""
    x = np.array([[-1.0, -2.0, -0.5, 0.0, -0.0, 3.0, np.nan, -np.inf]] * 2)
    dy = np.array([[np.nan, np.inf, -np.inf, np.nan, np.inf, np.nan, 1.0, np.inf]] * 2)
    for fwd, bwd, tfun in ((mod.relu_forward, mod.relu_backward, torch.relu),
                           (lambda a: mod.leaky_relu_forward(a, 0.01), mod.leaky_relu_backward,
                            lambda t: torch.nn.functional.leaky_relu(t, 0.01))):
        _, cache = fwd(x)
        dx = bwd(dy, cache)
        tx = torch.tensor(x, requires_grad=True)
        tfun(tx).backward(torch.tensor(dy))
        np.testing.assert_array_equal(dx, tx.grad.numpy())
    _, cache = mod.relu_forward(x)
    dx = mod.relu_backward(dy, cache)
    np.testing.assert_array_equal(dx[:, :5], 0.0)  # the inactive units: 0, not NaN
    assert np.isnan(dx[0, 5])  # an active unit passes the NaN on


@pytest.mark.parametrize("shape", [(4, 7, 3, 2), (5, 7), (6,)], ids=["4d", "2d", "1d"])
def test_relu_and_leaky_relu_on_channel_groups_and_threads_equal_one_pass(monkeypatch, shape):
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::5] = 0.0  # the convention at 0 holds in every group
    if x.ndim == 4:
        x = np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)  # channel-major, as convs give
    dy = rng.standard_normal(shape).astype(np.float32)
    dy.flat[::7] = np.nan  # one group falls back to the selection, the others do not
    y_ref, dx_ref = np.maximum(x, 0), np.where(x > 0, dy, 0)
    per_channel = x.size // x.shape[1] if x.ndim > 1 else 1
    for threads, group_channels in (("1", 1), ("3", 1), ("3", 3), ("1", 100)):
        monkeypatch.setenv("BIOPLAUS_NUM_THREADS", threads)
        monkeypatch.setattr(fast_act, "GROUP_VALUES", group_channels * per_channel)
        y, cache = fast_act.relu_forward(x)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(cache.positive, x > 0)
        assert y.strides == x.strides
        np.testing.assert_array_equal(fast_act.relu_backward(dy, cache), dx_ref)
        for slope in (0.01, 1.5):
            y, cache = fast_act.leaky_relu_forward(x, slope)
            np.testing.assert_array_equal(y, np.where(x > 0, x, x * np.float32(slope)))
            assert y.strides == x.strides
            np.testing.assert_array_equal(fast_act.leaky_relu_backward(dy, cache),
                                          np.where(x > 0, dy, dy * np.float32(slope)))

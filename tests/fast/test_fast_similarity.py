"""The similarity matrix: the fast twin (the std path on channel groups over the host
threads, in place) gives the reference's bits."""
import numpy as np
import pytest

from bioplaus import backend, kernels
from bioplaus import similarity as ref_sim
from bioplaus.fast import similarity as fast_sim

# (shape, use_std): conv maps on the std path, conv maps flattened (few channels, or
# --no-similarity-std), mlp vectors, label-like matrices
CASES = {
    "conv-std": ((6, 7, 4, 3), True),
    "conv-std-channel-major": ((6, 7, 4, 3), True),
    "conv-3-channels-flat": ((6, 3, 4, 4), True),
    "conv-no-std": ((6, 7, 4, 3), False),
    "mlp": ((6, 50), True),
}


def _inputs(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shape, _ = CASES[case]
    x = (rng.standard_normal(shape) * 2.0 + 0.5).astype(dtype)
    if case == "conv-std":
        x[1, 2] = 0.7  # a constant map: std 0, its gradient defined as 0
        x[3] = 0.0  # an all-zero example: its centred row is 0
    if case.endswith("channel-major"):
        x = np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)
    dS = rng.standard_normal((shape[0], shape[0])).astype(dtype)
    return x, dS


def _run(mod, x, dS, use_std):
    S, cache = mod.similarity_matrix_forward(x, use_std)
    return S, cache, mod.similarity_matrix_backward(dS, cache)


def test_the_fast_table_takes_these_twins_with_the_reference_signatures():
    k = kernels.fast()
    assert k.similarity_matrix_forward is fast_sim.similarity_matrix_forward
    assert k.similarity_matrix_backward is fast_sim.similarity_matrix_backward
    assert kernels.REFERENCE.similarity_matrix_backward is ref_sim.similarity_matrix_backward
    assert kernels.check_signatures() == []


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_gives_the_reference_bits(xp, case, dtype):
    # the same arithmetic in the same order, map by map: bitwise in float64 and float32
    x, dS = _inputs(case, dtype)
    x, dS = backend.to_device(x, xp), backend.to_device(dS, xp)
    use_std = CASES[case][1]
    S0, c0, dx0 = _run(ref_sim, x, dS, use_std)
    S1, c1, dx1 = _run(fast_sim, x, dS, use_std)
    assert (c1.z is None) == (c0.z is None) == (case not in ("conv-std", "conv-std-channel-major"))
    fields = [f for f in ("s", "z_mean", "Xc", "norm", "Xn", "inside") if getattr(c0, f) is not None]
    for name, a, b in [("S", S1, S0), ("dx", dx1, dx0),
                       *((f, getattr(c1, f), getattr(c0, f)) for f in fields)]:
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b), err_msg=name)
    assert np.isfinite(backend.to_numpy(dx1)).all()


def test_fast_rejects_what_the_reference_rejects():
    for mod in (ref_sim, fast_sim):
        with pytest.raises(ValueError, match="2-D or 4-D"):
            mod.similarity_matrix_forward(np.zeros((2, 3, 4)))


@pytest.mark.parametrize("layout", ["C", "channel-major"])
def test_similarity_std_path_on_channel_groups_and_threads_gives_the_same_bits(monkeypatch,
                                                                              layout):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 7, 3, 3)).astype(np.float32)  # 7 maps: groups of 1, 2 or all
    if layout == "channel-major":
        x = np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)
    dS = rng.standard_normal((4, 4)).astype(np.float32)
    runs = []
    for threads, group_maps in (("1", 100), ("1", 1), ("3", 1), ("3", 2)):
        monkeypatch.setenv("BIOPLAUS_NUM_THREADS", threads)
        monkeypatch.setattr(fast_sim, "GROUP_VALUES", group_maps * 4 * 9)
        S, cache = fast_sim.similarity_matrix_forward(x)
        dx = fast_sim.similarity_matrix_backward(dS, cache)
        assert dx.strides == x.strides  # the input's memory order
        runs.append((S, cache.s, cache.z_mean, dx))
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(runs[0][1], x.reshape(4, 7, 9).std(axis=2, ddof=1), rtol=1e-5)

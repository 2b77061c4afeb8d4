"""The fast wing's host pool: buffers reused only when free, memory order kept, and every
fast op that takes its outputs from the pool gives the same numbers when the pool hands it
stale memory."""
import os
import subprocess
import sys

import numpy as np
import pytest

from bioplaus import kernels
from bioplaus.bench import memory
from bioplaus.fast import avgpool, conv, pool
from bioplaus.fast import memory as host_memory
from bioplaus.fast.memory import HostPool


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_buffer_in_use_is_never_handed_out_again():
    pool = HostPool(min_bytes=0)
    a = pool.empty((100, 10), np.float32)
    b = pool.empty((100, 10), np.float32)
    assert not np.shares_memory(a, b)
    view = a.T[::2]  # a view keeps the buffer in use after its array is gone
    del a
    c = pool.empty((100, 10), np.float32)
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)
    assert len(pool._bufs) == 3


def test_a_free_buffer_is_reused_and_the_smallest_fitting_one_is_chosen():
    pool = HostPool(min_bytes=0)
    big = pool.empty((1000,), np.float64)
    small = pool.empty((100,), np.float64)
    big_addr, small_addr = _addr(big), _addr(small)
    del big, small
    x = pool.empty((50,), np.float32)  # 200 bytes: both fit, the 800-byte one is chosen
    assert _addr(x) == small_addr and x.shape == (50,) and x.dtype == np.float32
    y = pool.empty((20, 10), np.float64)  # 1600 bytes: only the big one fits
    assert _addr(y) == big_addr and y.flags.c_contiguous
    assert pool.held_bytes() == 8000 + 800


def test_growing_drops_free_buffers_too_small_and_keeps_those_in_use():
    pool = HostPool(min_bytes=0)
    keep = pool.empty((10,), np.float64)
    free = pool.empty((20,), np.float64)
    del free
    pool.empty((100,), np.float64)
    assert sorted(b.nbytes for b in pool._bufs) == [80, 800]  # 160-byte free one dropped
    assert keep.base is not None


def test_small_requests_and_a_disabled_pool_bypass_it():
    pool = HostPool(min_bytes=1024)
    pool.empty((10,), np.float32)
    assert pool.held_bytes() == 0
    with pool.disabled():
        pool.empty((10_000,), np.float32)
    assert pool.held_bytes() == 0 and pool.enabled
    pool.empty((10_000,), np.float32)
    assert pool.held_bytes() == 40_000


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (1, 0, 2, 3), (0, 2, 3, 1)])
def test_empty_like_keeps_the_memory_order(monkeypatch, perm):
    monkeypatch.setattr(host_memory, "host_pool", HostPool(min_bytes=0))
    base = np.zeros((2, 3, 4, 5), np.float32)
    x = np.ascontiguousarray(base.transpose(perm)).transpose(np.argsort(perm))  # (2,3,4,5)
    e = host_memory.empty_like(x)
    assert e.shape == x.shape and e.strides == x.strides
    assert host_memory.empty_like(x, dtype=bool).dtype == bool


def test_tracker_counts_pooled_arrays():
    n = 2_000_000  # 8 MB, above the pool's threshold
    host_memory.empty(np, (n,), np.float32)  # the pool now holds a free buffer that would fit

    def fn():
        a = host_memory.empty(np, (n,), np.float32)
        b = host_memory.empty(np, (n,), np.float32)
        del a, b

    assert memory.step_peak_bytes(fn, np) >= 2 * 4 * n


# -- every op that uses the pool, fed stale memory ---------------------------------------------
@pytest.fixture
def stale_pool(monkeypatch):
    """A pool that pools every request and whose free buffers are full of NaN."""
    pool = HostPool(min_bytes=0)
    monkeypatch.setattr(host_memory, "host_pool", pool)

    def poison():
        held = [pool.empty((1 << 16,), np.float64) for _ in range(40)]
        for h in held:
            h.fill(np.nan)
    poison()
    return poison


def _ops(x, W):
    """Forward and backward of every fast op that uses the pool, on one input."""
    k = kernels.fast()
    rng = np.random.default_rng(3)
    out = {}
    y, cc = conv.conv2d_forward(x, W, None, stride=1, pad=1)
    out["im2col"] = conv.im2col(x, 3, 3, 1, 1)
    out["im2col s2 p0"] = conv.im2col(x, 3, 3, 2, 0)
    out["im2col padding-only offsets"] = conv.im2col(x[:, :, :1, :1], 5, 5, 1, 2)
    dy = rng.standard_normal(y.shape)
    dx, dW, _ = conv.conv2d_backward(dy, cc)
    out.update(conv=y, conv_dx=dx, conv_dW=dW)
    out["col2im s2"] = conv.col2im(rng.standard_normal((x.shape[1] * 9, x.shape[0] * 3 * 3)),
                                   x.shape, 3, 3, 2, 0)
    p, pc = pool.maxpool2d_forward(y, 2, 2)
    out["maxpool"], out["maxpool_dx"] = p, pool.maxpool2d_backward(p, pc)
    a, ac = avgpool.avgpool2d_forward(y, (4, 2), (2, 1))
    out["avgpool"], out["avgpool_dx"] = a, avgpool.avgpool2d_backward(a, ac)
    g, b = rng.standard_normal(y.shape[1]), rng.standard_normal(y.shape[1])
    z, bc, _, _ = k.batchnorm_forward(y, g, b, None, None, training=True)
    out["bn"] = z
    out["bn_dx"], out["bn_dg"], _ = k.batchnorm_backward(dy, bc)
    r, ac = k.relu_forward(z)
    out["relu"], out["relu_dx"] = r, k.relu_backward(dy, ac)
    S, sc = k.similarity_matrix_forward(r)
    out["S"], out["S_dx"] = S, k.similarity_matrix_backward(rng.standard_normal(S.shape), sc)
    return out


def test_pooled_ops_equal_the_unpooled_ones_on_stale_memory(stale_pool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 7, 7))
    W = rng.standard_normal((5, 4, 3, 3))
    with host_memory.host_pool.disabled():
        want = _ops(x, W)
    stale_pool()
    got = _ops(x, W)
    assert host_memory.host_pool.held_bytes() > 0
    for k in want:
        assert np.isfinite(got[k]).all(), k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


_MALLINFO_PROBE = r"""
import ctypes, sys
import numpy as np
from bioplaus import backend
from bioplaus.fast import memory, threads

class Mallinfo2(ctypes.Structure):
    _fields_ = [(k, ctypes.c_size_t) for k in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print("no-mallinfo2"); sys.exit(0)
libc.mallinfo2.restype = Mallinfo2
tuned = memory.tune_host_allocator() if sys.argv[1] == "tune" else False
before = libc.mallinfo2().hblkhd
a = np.ones(5 << 20, dtype=np.float32)  # 20 MiB
print(tuned, libc.mallinfo2().hblkhd - before)
"""


def _probe(arg, env=None):
    out = subprocess.run([sys.executable, "-c", _MALLINFO_PROBE, arg], capture_output=True,
                         text=True, check=True, env={**os.environ, **(env or {})})
    return out.stdout.split()


def test_tuned_allocator_serves_arrays_below_32_mib_from_the_heap():
    plain = _probe("plain")
    if plain == ["no-mallinfo2"]:
        pytest.skip("the C library has no mallinfo2 (not glibc >= 2.33)")
    # glibc's default: a 20 MiB array is a fresh mmap (page faults on every first touch)
    assert plain[0] == "False" and int(plain[1]) >= 20 << 20
    tuned = _probe("tune")
    assert tuned == ["True", "0"]  # served from the heap, which keeps freed memory
    # an explicit choice in the environment is left alone
    assert _probe("tune", {"MALLOC_MMAP_THRESHOLD_": "131072"})[0] == "False"

"""Host memory for the fast wing: reused NumPy buffers and glibc's allocator settings.

Process-wide state of the fast wing (with :mod:`bioplaus.fast.threads`):
:data:`host_pool` keeps large NumPy temporaries between steps, as CuPy
keeps its memory pool on a GPU. It changes how fast a result is
computed, never the result. The reference path (:mod:`bioplaus.ops`)
never uses it.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys

import numpy as np

from bioplaus.backend import array_module


# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_allocator_tuned = None


def tune_host_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed host memory for reuse instead of handing it back to the kernel.

    glibc serves allocations above a (dynamic) threshold with fresh
    ``mmap`` memory and returns freed memory at the top of its heap to the
    kernel; every new array then page-faults on first touch. A training
    step frees and re-makes the same arrays every time (an mlp 3x1024
    predsim step: ~5,000 page faults and ~14 ms of kernel time out of
    ~60 ms measured here). This sets ``M_MMAP_THRESHOLD`` to 32 MiB (the
    largest glibc accepts; larger buffers are reused by :data:`host_pool`)
    and ``M_TRIM_THRESHOLD`` to 1 GiB, so those arrays are recycled inside
    the process.

    The command line calls it once at start; a program that imports
    bioplaus may call it too. It changes nothing when the
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` environment
    variables already choose, or when the C library is not glibc. Returns
    whether the settings were applied.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
    _allocator_tuned = ok
    return ok


# ----------------------------------------------------------------------------
# Reused host buffers for large temporaries
# ----------------------------------------------------------------------------
class HostPool:
    """Large NumPy buffers kept between uses, like CuPy's memory pool on a GPU.

    A training step allocates the same few large arrays every time (im2col
    columns, their gradients, conv outputs: up to ~1 GB each for vgg8b at
    batch 128). Freshly allocated memory costs the kernel a page fault and a
    zero-fill per page on first touch; on this project's 2-core machine that
    was about a tenth of a vgg8b step. The pool hands out views of buffers it
    keeps instead.

    A buffer is free when no array uses it any more: every view NumPy makes
    of a buffer references it (``view.base``), so a buffer whose reference
    count has fallen back to the pool's own references is free. Nothing has
    to be released by hand, and a cached array (an op's forward cache) keeps
    its buffer as long as it lives.

    Requests below ``min_bytes`` go to ``np.empty``. A request takes the
    smallest free buffer that is large enough; if there is none, free
    buffers smaller than the request are dropped and a new one is made, so
    the pool holds about as much as the step's largest set of temporaries
    alive at once.
    """

    def __init__(self, min_bytes: int = 1 << 22):
        self.min_bytes = int(min_bytes)
        self.enabled = True
        self._bufs: list = []

    @staticmethod
    def _is_free(buf) -> bool:
        # references: the pool's list, the caller's loop name, this
        # function's argument and getrefcount's own argument
        return sys.getrefcount(buf) <= 4

    def empty(self, shape, dtype):
        """An uninitialised array of ``shape`` and ``dtype`` (C order)."""
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not self.enabled or nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        best = None
        for buf in self._bufs:
            if buf.nbytes >= nbytes and self._is_free(buf) and (
                    best is None or buf.nbytes < best.nbytes):
                best = buf
        if best is None:
            keep = []
            for buf in self._bufs:
                if buf.nbytes >= nbytes or not self._is_free(buf):
                    keep.append(buf)
            self._bufs = keep
            best = np.empty(nbytes, np.uint8)
            self._bufs.append(best)
        return best[:nbytes].view(dtype).reshape(shape)

    def held_bytes(self) -> int:
        """Bytes of every buffer the pool holds, free or in use."""
        return int(sum(b.nbytes for b in self._bufs))

    def clear(self) -> None:
        """Forget every buffer (those in use live on with their arrays)."""
        self._bufs = []

    @contextlib.contextmanager
    def disabled(self):
        """Allocate with plain ``np.empty`` inside the block (memory measurements)."""
        was = self.enabled
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = was


host_pool = HostPool()


def empty(xp, shape, dtype):
    """``xp.empty(shape, dtype)``, from :data:`host_pool` on NumPy."""
    if xp is np:
        return host_pool.empty(shape, dtype)
    return xp.empty(shape, dtype=dtype)


def empty_like(x, dtype=None):
    """An uninitialised array shaped like ``x`` whose memory is ordered as ``x``'s.

    NumPy's elementwise ops keep their input's memory order (the fast conv's
    outputs are channel-major, see :mod:`bioplaus.fast.conv`); an output taken from
    here with ``out=`` keeps it too. From :data:`host_pool` on NumPy.
    """
    xp = array_module(x)
    dtype = x.dtype if dtype is None else dtype
    if xp is not np:
        return xp.empty_like(x, dtype=dtype)
    order = sorted(range(x.ndim), key=lambda a: -abs(x.strides[a]))  # outermost first
    buf = host_pool.empty([x.shape[a] for a in order], dtype)
    return buf.transpose(np.argsort(order))


def zeros(xp, shape, dtype):
    """``xp.zeros(shape, dtype)``, from :data:`host_pool` on NumPy."""
    if xp is np:
        out = host_pool.empty(shape, dtype)
        out.fill(0)
        return out
    return xp.zeros(shape, dtype=dtype)

"""Array backend: NumPy or CuPy, device moves, dtype policy, seeded streams.

Conventions, stated once for the whole package
----------------------------------------------
* Batch first. Images are NCHW: ``(n, c, h, w)``.
* Weights are shaped as in the PyTorch reference: linear ``W`` is
  ``(out, in)`` and ``y = x @ W.T + b``; conv ``W`` is
  ``(out, in, kh, kw)``.
* dtype follows the input. Training runs in float32
  (:data:`TRAIN_DTYPE`); gradient checks and the oracle run in float64
  (:data:`CHECK_DTYPE`).
* One code path for NumPy and CuPy: a function that receives an array asks
  :func:`array_module` which module to use.
* Every random number bioplaus draws comes from a NumPy ``Generator``
  keyed by ``(seed, purpose, layer)`` (:func:`stream`). Random arrays are
  drawn on the host and then moved to the device, so NumPy and CuPy runs
  see identical fixed matrices, masks and crops, and any fixed matrix can
  be regenerated instead of stored.

* A process-wide resource lives here, as CuPy keeps its memory pool:
  :data:`host_pool` (large NumPy temporaries reused between steps); its
  sibling, the host threads, is in :mod:`bioplaus.threads`. They change
  how fast a result is computed, never the result: no configuration is
  read from them.

This is the only module that imports CuPy.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import zlib

import numpy as np

TRAIN_DTYPE = np.float32
CHECK_DTYPE = np.float64

DEVICES = ("cpu", "gpu")

_cupy = None


class BackendError(RuntimeError):
    """The requested array backend cannot be used (for example no GPU)."""


def _import_cupy():
    """Import CuPy and check a GPU is usable; raise :class:`BackendError`."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415  (the only CuPy import of the package)
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise BackendError(
            "--device gpu needs CuPy, which is not installed "
            f"({exc}). Install it with `pip install 'bioplaus[gpu]'` "
            "(or the cupy-cudaXXx wheel matching your CUDA), or use --device cpu."
        ) from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise BackendError(
            f"--device gpu: CuPy is installed but no CUDA GPU is usable ({exc}); "
            "use --device cpu."
        ) from None
    if n < 1:  # pragma: no cover
        raise BackendError("--device gpu: CuPy found no CUDA GPU; use --device cpu.")
    _cupy = cupy
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one GPU (never raises)."""
    try:
        _import_cupy()
    except BackendError:
        return False
    return True


def get_xp(device: str = "cpu"):
    """Return the array module for ``device`` ('cpu' -> numpy, 'gpu' -> cupy).

    Asking for the GPU without CuPy or without a GPU raises
    :class:`BackendError` with the fix; there is never a silent fallback.
    """
    if device == "cpu":
        return np
    if device == "gpu":
        return _import_cupy()
    raise BackendError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def array_module(x):
    """NumPy or CuPy, whichever owns ``x`` (numpy for host arrays/scalars)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def is_gpu_array(x) -> bool:
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def to_device(x, xp, dtype=None):
    """Move a host (or device) array to the module ``xp``, optionally casting."""
    if xp is np:
        out = to_numpy(x)
    else:
        out = xp.asarray(x)
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    return out


def to_numpy(x):
    """Return ``x`` as a NumPy array (copying from the GPU when needed)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def synchronize(xp) -> None:
    """Wait for queued GPU work (no-op on NumPy); used by timers."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


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

    NumPy's elementwise ops keep their input's memory order (conv outputs
    are channel-major, see :mod:`bioplaus.ops.conv`); an output taken from
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


# ----------------------------------------------------------------------------
# Seeded random streams
# ----------------------------------------------------------------------------
def purpose_key(purpose: str) -> int:
    """A stable 32-bit integer for a purpose string (CRC-32, not ``hash``)."""
    return zlib.crc32(purpose.encode("utf-8"))


def stream(seed: int, purpose: str, layer: int = 0) -> np.random.Generator:
    """A NumPy ``Generator`` keyed by ``(seed, purpose, layer)``.

    The same key always gives the same numbers, on any machine and for any
    array backend, so fixed random matrices (feedback ``B``, label
    projection ``P``, Mostafa's ``M`` and ``K``) are regenerated rather than
    stored. Different purposes or layers give independent streams.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(purpose_key(purpose), int(layer)))
    return np.random.Generator(np.random.PCG64(ss))


def uniform(xp, seed: int, purpose: str, layer: int, shape, bound: float, dtype=TRAIN_DTYPE):
    """Fixed array ~ U(-bound, bound) of ``shape``, drawn on the host from
    :func:`stream` and moved to ``xp``; identical on NumPy and CuPy."""
    a = stream(seed, purpose, layer).uniform(-bound, bound, size=shape)
    return to_device(a.astype(dtype, copy=False), xp)


def generator_state(g: np.random.Generator) -> dict:
    """The full, restorable state of a Generator (for checkpoints)."""
    return g.bit_generator.state


def set_generator_state(g: np.random.Generator, state: dict) -> None:
    g.bit_generator.state = state

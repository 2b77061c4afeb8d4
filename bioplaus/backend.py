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

* No process-wide state lives here. What exists only for speed (the host
  memory pool, the host threads) is in the fast wing, :mod:`bioplaus.fast`.

This is the only module that imports CuPy.
"""
from __future__ import annotations

import os
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


def set_tf32(xp, enabled: bool) -> str:
    """Allow TF32 tensor-core products for float32 (``enabled``) or forbid them; say which.

    On CuPy this sets the compute type of its float32 matrix products
    (cuBLAS; bioplaus's convolutions are products too) through
    ``cupy._core._routines_linalg.set_compute_type`` and ``CUPY_TF32``
    (which CuPy reads at its first float32 product, where that function is
    missing). Strict float32 is set explicitly, so a ``CUPY_TF32=1`` in the
    environment does not turn TF32 on unasked. NumPy has no TF32: asking for
    it there raises :class:`BackendError` (a run's configuration says what ran).
    """
    if xp is np or xp is None:
        if enabled:
            raise BackendError("--tf32 needs --device gpu: TF32 is a tensor-core mode of NVIDIA "
                               "GPUs (Ampere and later); NumPy on the CPU multiplies float32 in "
                               "float32 always")
        return "float32 products: strict float32"
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    try:
        from cupy._core import _routines_linalg as linalg  # noqa: PLC0415
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if enabled
                                else linalg.COMPUTE_TYPE_DEFAULT)
    except (ImportError, AttributeError):  # pragma: no cover - depends on the CuPy version
        pass  # CUPY_TF32 alone (read at CuPy's first float32 product)
    return ("float32 products: TF32 tensor cores allowed (--tf32)" if enabled
            else "float32 products: strict float32 (TF32 off)")


def synchronize(xp) -> None:
    """Wait for queued GPU work (no-op on NumPy); used by timers."""
    if xp is not np:
        xp.cuda.Stream.null.synchronize()


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

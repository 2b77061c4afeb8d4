"""A CuPy-shaped array module on NumPy that records every read back to the host.

:data:`xp` stands in for ``cupy``: its arrays (:class:`DeviceArray`) wrap NumPy
arrays and behave as CuPy's do where it matters here. Elementwise ops,
reductions, indexing and methods give device arrays again (a full reduction a
0-d array, never a Python number); metadata (``shape``, ``dtype``, ``size``)
is free, as on a GPU. Every way a value reaches the host is recorded in
:data:`READS` with the line of bioplaus that asked for it: ``float()``,
``int()``, ``bool()``, ``operator.index``, ``.item()``, ``.tolist()``,
``.get()`` (what ``cupy.asnumpy`` and :func:`bioplaus.backend.to_numpy`
call), ``__array__`` (``np.asarray`` of a device array) and printing it.
Moves to the device (``xp.asarray`` of a host array) are recorded apart in
:data:`WRITES`; they do not wait for the device.

:func:`installed` makes :mod:`bioplaus.backend` take this module for CuPy:
``backend.get_xp("gpu")`` returns it and ``backend.array_module`` of its
arrays too, so the package runs its CuPy code paths on it.
"""
from __future__ import annotations

import contextlib
import traceback
import types

import numpy as np

READS: list = []   # (what, "file:line in function") of every read back to the host
WRITES: list = []  # the same for every host array moved to the device


def _where() -> str:
    """The innermost bioplaus frame of the current stack (else the innermost caller)."""
    frames = [f for f in traceback.extract_stack() if not f.filename.endswith("counting_xp.py")]
    for f in reversed(frames):
        if "/bioplaus/" in f.filename.replace("\\", "/"):
            return f"{f.filename.split('/bioplaus/')[-1]}:{f.lineno} in {f.name}"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}"


def _read(what: str) -> None:
    READS.append((what, _where()))


def _unwrap(o):
    if isinstance(o, DeviceArray):
        return o._a
    if isinstance(o, tuple):
        return tuple(_unwrap(v) for v in o)
    if isinstance(o, list):
        return [_unwrap(v) for v in o]
    if isinstance(o, dict):
        return {k: _unwrap(v) for k, v in o.items()}
    return o


def _wrap(o):
    if isinstance(o, np.ndarray):
        return DeviceArray(o)
    if isinstance(o, np.generic):  # CuPy gives 0-d arrays where NumPy gives scalars
        return DeviceArray(np.asarray(o))
    if isinstance(o, tuple):
        return tuple(_wrap(v) for v in o)
    if isinstance(o, list):
        return [_wrap(v) for v in o]
    return o


class DeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A NumPy array that lives "on the device": every host read is recorded."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # metadata: free, as on a GPU
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)

    def __len__(self):
        return len(self._a)

    # the arithmetic: ufuncs and array functions run on the wrapped arrays
    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        out = kw.get("out")
        if out is not None:
            kw["out"] = tuple(_unwrap(o) for o in out)
        r = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kw))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ etc.: np.asarray must ask __array__
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return _wrap(attr)

    # every way to the host
    def get(self, *a, **k):
        _read("get")
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        _read("__array__")
        return self._a if dtype is None else self._a.astype(dtype)

    def __float__(self):
        _read("float")
        return float(self._a)

    def __int__(self):
        _read("int")
        return int(self._a)

    def __index__(self):
        _read("index")
        return int(self._a)

    def __bool__(self):
        _read("bool")
        return bool(self._a)

    def __complex__(self):
        _read("complex")
        return complex(self._a)

    def item(self, *a):
        _read("item")
        return self._a.item(*a)

    def tolist(self):
        _read("tolist")
        return self._a.tolist()

    def __repr__(self):
        _read("repr")
        return f"device({self._a!r})"

    def __str__(self):
        _read("str")
        return str(self._a)

    def __format__(self, spec):
        _read("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)


class _Stream:
    def synchronize(self):
        pass


class _Cuda:
    """What bioplaus asks of ``cupy.cuda`` outside a step."""

    class Stream:
        null = _Stream()

    class Device:
        id = 0

    class runtime:
        @staticmethod
        def getDeviceCount():
            return 1

        @staticmethod
        def getDeviceProperties(_id):
            return {"name": b"counting array module (NumPy)"}


class _Module(types.ModuleType):
    """NumPy's functions, taking and giving :class:`DeviceArray`."""

    def __init__(self, mod, name):
        super().__init__(name)
        self._mod = mod

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._mod, name)
        if isinstance(attr, types.ModuleType):
            return _Module(attr, f"{self.__name__}.{name}")
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, classes, constants
        if name in ("asarray", "array", "ascontiguousarray"):
            def to_device(a, *args, **kw):
                if not isinstance(a, DeviceArray):
                    WRITES.append((name, _where()))
                return _wrap(attr(_unwrap(a), *args, **_unwrap(kw)))
            return to_device

        def f(*args, **kw):
            return _wrap(attr(*_unwrap(args), **_unwrap(kw)))
        f.__name__ = name
        return f


xp = _Module(np, "counting_xp")
xp.ndarray = DeviceArray
xp.cuda = _Cuda
xp.asnumpy = lambda a: a.get() if isinstance(a, DeviceArray) else np.asarray(a)


@contextlib.contextmanager
def installed():
    """Within the block, :mod:`bioplaus.backend` takes :data:`xp` for CuPy."""
    from bioplaus import backend

    before = backend._cupy
    backend._cupy = xp
    try:
        yield xp
    finally:
        backend._cupy = before


def reads_since(n: int) -> list:
    return READS[n:]


def describe(reads) -> str:
    """One line per read, with where it happened."""
    return "\n".join(f"  {what} at {where}" for what, where in reads) or "  (none)"



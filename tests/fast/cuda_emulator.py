"""CuPy's ElementwiseKernel and ReductionKernel emulated on the CPU with a C++ compiler.

So that the kernel bodies of :mod:`bioplaus.fast.cuda` (CUDA C++) run on a
machine without a GPU: each kernel's body is compiled by the host's C++
compiler into a loop over the (broadcast, flattened) arrays and called
through ctypes. ``-ffp-contract=off`` mirrors the kernels' ``--fmad=false``;
float32 arithmetic stays float32 on x86-64 (SSE), and ``sqrt`` is the
correctly rounded one, as in CUDA. Reductions run sequentially (CuPy's order
differs: tolerances apply). :func:`installed` makes
:func:`bioplaus.backend.get_xp` ("gpu") return this emulator for the kernels
while the arrays stay NumPy arrays.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

CXX = shutil.which("g++") or shutil.which("c++")
_BUILD = tempfile.mkdtemp(prefix="bioplaus-cuda-emulator-")
_LIBS = {}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           np.dtype(np.bool_): "bool"}


def _params(spec: str):
    """'T x, bool positive' -> [('T', 'x'), ('bool', 'positive')]."""
    return [tuple(p.split()) for p in spec.split(",") if p.strip()]


def _compile(source: str):
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key not in _LIBS:
        src = os.path.join(_BUILD, f"k{key}.cpp")
        lib = os.path.join(_BUILD, f"k{key}.so")
        with open(src, "w") as f:
            f.write(source)
        subprocess.run([CXX, "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC",
                        "-o", lib, src], check=True, capture_output=True, text=True)
        _LIBS[key] = ctypes.CDLL(lib)
    return _LIBS[key].kern


HEADER = "#include <cmath>\nusing std::sqrt;\n"


def _bind(params, args, T):
    """Each parameter's C type and value: arrays (numpy) or scalars cast to their type."""
    out = []
    for (ty, name), a in zip(params, args):
        dt = T if ty == "T" else np.dtype(ty if ty != "bool" else np.bool_)
        out.append((name, _CTYPES[dt], dt, a))
    return out


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", options=(), **_):
        self.ins, self.outs = _params(in_params), _params(out_params)
        self.operation, self.name, self.options = operation, name, options

    def __call__(self, *args):
        ins, outs = args[:len(self.ins)], list(args[len(self.ins):])
        T = next(np.asarray(a).dtype for (ty, _), a in zip(self.ins + self.outs, args)
                 if ty == "T" and isinstance(a, np.ndarray))
        arrays = [a for a in list(ins) + outs if isinstance(a, np.ndarray)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        while len(outs) < len(self.outs):
            ty = self.outs[len(outs)][0]
            outs.append(np.empty(shape, dtype=T if ty == "T" else np.bool_))
        ins_b = _bind(self.ins, ins, T)
        outs_b = _bind(self.outs, outs, T)
        flat_in = [(n, c, dt, np.ascontiguousarray(np.broadcast_to(a, shape)).ravel()
                    if isinstance(a, np.ndarray) else dt.type(a)) for n, c, dt, a in ins_b]
        flat_out = [(n, c, dt, np.ascontiguousarray(a).ravel()) for n, c, dt, a in outs_b]
        sig, body, cargs = ["long _n"], [], [ctypes.c_long(int(np.prod(shape)))]
        for n, c, dt, a in flat_in:
            if isinstance(a, np.ndarray):
                sig.append(f"const {c}* _in_{n}")
                body.append(f"const {c} {n} = _in_{n}[i];")
                cargs.append(a.ctypes.data_as(ctypes.c_void_p))
            else:
                sig.append(f"{c} {n}")
                cargs.append((ctypes.c_float if c == "float" else ctypes.c_double)(a))
        for n, c, dt, a in flat_out:
            sig.append(f"{c}* _out_{n}")
            body.append(f"{c} &{n} = _out_{n}[i];")
            cargs.append(a.ctypes.data_as(ctypes.c_void_p))
        typedef = f"typedef {_CTYPES[T]} T;\n"
        src = (HEADER + typedef + f'extern "C" void kern({", ".join(sig)}) {{\n'
               f"  for (long i = 0; i < _n; ++i) {{ {' '.join(body)}\n {self.operation}\n }}\n}}\n")
        _compile(src)(*cargs)
        results = []
        for (n, c, dt, a), o in zip(flat_out, outs):
            o[...] = a.reshape(shape)
            results.append(o)
        return results[0] if len(results) == 1 else tuple(results)


class ReductionKernel:
    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity,
                 name="reduce_kernel", options=(), **_):
        self.ins, self.outs = _params(in_params), _params(out_params)
        self.map, self.reduce, self.post, self.identity = (map_expr, reduce_expr, post_map_expr,
                                                           identity)

    def __call__(self, *args, axis):
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        T = next(a.dtype for a in args if isinstance(a, np.ndarray))
        shape = np.broadcast_shapes(*(a.shape for a in args))
        keep = [d for d in range(len(shape)) if d not in axes]
        out_shape = tuple(shape[d] for d in keep)
        inner = int(np.prod([shape[d] for d in axes]))
        flat = [np.ascontiguousarray(np.broadcast_to(a, shape).transpose(keep + list(axes)))
                .reshape(-1, inner) for a in args]
        out = np.empty(int(np.prod(out_shape)), dtype=T)
        c = _CTYPES[T]
        sig = ["long _outer", "long _inner"] + [f"const {c}* _in_{n}" for _, n in self.ins] + \
            [f"{c}* _out_{self.outs[0][1]}"]
        loads = " ".join(f"const {c} {n} = _in_{n}[o * _inner + j];" for _, n in self.ins)
        o_name = self.outs[0][1]
        src = (HEADER + f"typedef {c} T;\n" + f'extern "C" void kern({", ".join(sig)}) {{\n'
               f"  for (long o = 0; o < _outer; ++o) {{ T a = ({self.identity});\n"
               f"    for (long j = 0; j < _inner; ++j) {{ {loads} T b = ({self.map}); "
               f"a = ({self.reduce}); }}\n"
               f"    T &{o_name} = _out_{o_name}[o]; {self.post}; }}\n}}\n")
        _compile(src)(ctypes.c_long(out.size), ctypes.c_long(inner),
                      *[f.ctypes.data_as(ctypes.c_void_p) for f in flat],
                      out.ctypes.data_as(ctypes.c_void_p))
        return out.reshape(out_shape)


class _NotAnArray:
    """No array is this emulator's: bioplaus.backend keeps NumPy for every array."""


class _Emulator:
    __name__ = "cuda_emulator"
    ndarray = _NotAnArray
    ElementwiseKernel = ElementwiseKernel
    ReductionKernel = ReductionKernel


@contextlib.contextmanager
def installed():
    """Within the block, the fused kernels are built by this emulator (on NumPy arrays)."""
    from bioplaus import backend
    from bioplaus.fast import cuda

    before = backend._cupy
    cuda.elementwise.cache_clear()
    cuda.reduction.cache_clear()
    backend._cupy = _Emulator()
    try:
        yield
    finally:
        backend._cupy = before
        cuda.elementwise.cache_clear()
        cuda.reduction.cache_clear()

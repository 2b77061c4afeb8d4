"""The HDF5 ground floor of :mod:`bioplaus.io`: atomic writes, checksummed
datasets, and reading that checks the file is regular, of the expected
format and version, and whole (see :mod:`bioplaus.io` for the guarantees)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile

import h5py
import numpy as np

from bioplaus.backend import to_numpy

CHECKPOINT_FORMAT = "bioplaus-checkpoint"
ORACLE_FORMAT = "bioplaus-oracle"
VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint or oracle file that cannot be used, with the reason."""


# ---------------------------------------------------------------- writing
def digest(arr: np.ndarray) -> str:
    """SHA-256 over an array's dtype, shape and C-order bytes."""
    arr = np.asarray(arr)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    h = hashlib.sha256()
    h.update(arr.dtype.str.encode())
    h.update(repr(tuple(arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _attrs_digest(values: dict) -> str:
    text = json.dumps({k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _put(group, key: str, value, with_digest: bool = True) -> None:
    arr = np.asarray(to_numpy(value))  # (np.ascontiguousarray would make 0-d arrays 1-d)
    if arr.ndim and arr.size:
        ds = group.create_dataset(key, data=arr, chunks=True, fletcher32=True)
    else:
        ds = group.create_dataset(key, data=arr)
    if with_digest:
        ds.attrs["sha256"] = digest(arr)


def _write_tree(group, tree: dict) -> None:
    for k, v in tree.items():
        key = k.replace("/", "|")
        if isinstance(v, dict):
            _write_tree(group.create_group(key), v)
        elif v is None:
            group.attrs[key] = "None"
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)):
            group.attrs[key] = v
        else:
            _put(group, key, v)


def _fsync_path(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return  # some file systems do not open directories; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def prev_path(path) -> str:
    """Where the previous checkpoint is kept: ``checkpoint.h5`` -> ``checkpoint.prev.h5``."""
    root, ext = os.path.splitext(os.fspath(path))
    return root + ".prev" + (ext or ".h5")


def atomic_h5(path: str, write, keep_previous: bool = False) -> None:
    """Call ``write(h5file)`` on a fresh temporary file, then rename it to ``path``.

    With ``keep_previous`` an existing ``path`` is first renamed to
    :func:`prev_path` (the one before is dropped). A missing folder of
    ``path`` is created.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    ours = True  # tmp is this call's file until it is renamed
    try:
        os.chmod(tmp, 0o644)
        with h5py.File(tmp, "w", libver="latest") as f:
            write(f)
            f.flush()
        _fsync_path(tmp)
        if keep_previous and os.path.isfile(path) and not os.path.islink(path):
            os.replace(path, prev_path(path))
        os.replace(tmp, path)
        ours = False
        _fsync_path(folder, directory=True)
    except BaseException:
        if ours and os.path.lexists(tmp):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------- reading
def _regular_file(path: str) -> int:
    """The size of ``path``; a clear error unless it is an existing regular file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device or other special file")
        raise CheckpointError(f"{path}: is {kind}, not a regular file; expected an HDF5 file "
                              "written by bioplaus")
    return int(st.st_size)


def _open(path, fmt: str):
    path = os.fspath(path)
    _regular_file(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError and others for damaged files
        raise CheckpointError(
            f"{path}: not a readable HDF5 file ({exc}); it may be truncated or "
            "not a bioplaus file — use the previous checkpoint or start again") from None
    try:
        found = f.attrs.get("format")
        if found != fmt:
            raise CheckpointError(f"{path}: not a {fmt} file (format attribute is {found!r})")
        version = f.attrs.get("version")
        if isinstance(version, np.generic):
            version = version.item()
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise CheckpointError(f"{path}: format version {version!r} is not one this bioplaus "
                                  f"reads ({', '.join(map(str, READABLE_VERSIONS))}); it was "
                                  "written by another version or is damaged")
    except CheckpointError:
        f.close()
        raise
    except Exception as exc:
        f.close()
        raise CheckpointError(f"{path}: damaged file: its root attributes cannot be read "
                              f"({type(exc).__name__}: {exc})") from None
    return f


def _scalar(v):
    return v.item() if isinstance(v, np.generic) else v


def _guarded(path: str, what: str, fn):
    try:
        return fn()
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt metadata surfaces as many exception types
        raise CheckpointError(f"{path}: damaged checkpoint: {what} cannot be read "
                              f"({type(exc).__name__}: {exc})") from None


def _read_dataset(ds, path: str, version: int, budget: int):
    """One dataset's array, after its declared size is checked against the
    file's; its checksums verified (a sha256 is required from version 2 on,
    ``version=0`` only checks one that is present)."""
    name = ds.name
    shape, dtype = ds.shape, ds.dtype
    if shape is None or dtype.kind not in "biuf" :
        raise CheckpointError(f"{path}: dataset {name}: dtype {dtype} shape {shape} is not a "
                              "numeric array")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if nbytes > budget:
        raise CheckpointError(f"{path}: dataset {name} declares shape {shape} ({nbytes:,} bytes) "
                              f"but the file holds only {budget:,} bytes; the file is damaged")
    try:
        arr = ds[()]
    except Exception as exc:
        raise CheckpointError(f"{path}: dataset {name} fails its checksum or cannot be read "
                              f"({type(exc).__name__}: {exc}); the file is damaged") from None
    want = ds.attrs.get("sha256")
    if version >= 2 or want is not None:
        if want is None:
            raise CheckpointError(f"{path}: dataset {name} has no sha256 attribute; the file is "
                                  "damaged")
        if digest(np.asarray(arr)) != want:
            raise CheckpointError(f"{path}: dataset {name} fails its SHA-256 check; the file "
                                  "is damaged")
    return arr


def _read_tree(group, path: str, version: int, budget: int) -> dict:
    out = {}
    for k, v in group.attrs.items():
        key = k.replace("|", "/")
        if isinstance(v, str) and v == "None":
            out[key] = None
        elif isinstance(v, np.generic):
            out[key] = v.item()
        else:
            out[key] = v
    for k in group:
        v = group[k]
        key = k.replace("|", "/")
        if isinstance(v, h5py.Group):
            out[key] = _read_tree(v, path, version, budget)
        elif isinstance(v, h5py.Dataset):
            out[key] = _read_dataset(v, path, version, budget)
        else:
            raise CheckpointError(f"{path}: {v.name} is neither a group nor a dataset")
    return out

"""Every HDF5 call of bioplaus: checkpoints, run logs and oracle files.

Writing. Files are written atomically: to a temporary file of a unique name
(``tempfile.mkstemp`` in the same directory, so two processes never share
one), flushed and fsync'ed, renamed over the old file, and the directory
fsync'ed, so a crash during a write leaves the previous file whole. A
process only ever deletes a temporary file it created itself. Checkpoints
keep the previous one as ``checkpoint.prev.h5`` (:func:`prev_path`).

Integrity (format version 2). Files are written with ``libver="latest"``, so
HDF5 checksums its metadata; every non-empty array is a chunked dataset with
HDF5's ``fletcher32`` filter, and every dataset of a checkpoint or run log
carries a ``sha256`` attribute (over dtype, shape and bytes) checked when it
is read; a checkpoint's root attributes carry ``attrs_sha256``. Oracle files
have ``fletcher32`` only, so a hand-edited oracle (to test ``oracle check``)
stays readable. A failed check names the file and the
dataset. Version 1 files (no checksums) are still read; other versions are
refused.

Reading. Only regular files are opened (a FIFO or a directory in place of a
checkpoint is an error, never a hang). :func:`read_checkpoint_header` gives
the position and the declared layout (names, shapes, dtypes) without
reading any array, so a caller can validate a checkpoint against the model
before any data is read (:mod:`bioplaus.checks`); no dataset declaring more
bytes than the file holds is read.

Layout of a checkpoint (``format = 'bioplaus-checkpoint'``)::

    attrs: format, version, config (JSON), epoch, step, batch, meta (JSON),
           attrs_sha256
    /params/<name>     every trained parameter, reference state_dict names
    /buffers/<name>    batch-norm running statistics
    /optim/<group>/... each optimizer's state (arrays as datasets, scalars as attrs)
    /log               attrs: history (JSON list of per-epoch records),
                       partial (JSON: the current epoch's running sums)
"""
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
_ROOT_KEYS = ("format", "version", "config", "epoch", "step", "batch", "meta")


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


def save_checkpoint(path, *, config_json: str, params: dict, buffers: dict, optim: dict,
                    epoch: int, step: int, batch: int, history: list, partial: dict,
                    meta: dict, keep_previous: bool = True) -> None:
    """Write a checkpoint atomically (see the module docstring for the layout);
    the one it replaces is kept as :func:`prev_path` unless ``keep_previous`` is false."""

    def write(f):
        root = {"format": CHECKPOINT_FORMAT, "version": VERSION, "config": config_json,
                "epoch": int(epoch), "step": int(step), "batch": int(batch),
                "meta": json.dumps(meta, sort_keys=True)}
        log_attrs = {"history": json.dumps(history), "partial": json.dumps(partial)}
        for k, v in root.items():
            f.attrs[k] = v
        f.attrs["attrs_sha256"] = _attrs_digest({**root, **log_attrs})
        _write_tree(f.create_group("params"), params)
        _write_tree(f.create_group("buffers"), buffers)
        _write_tree(f.create_group("optim"), optim)
        log = f.create_group("log")
        for k, v in log_attrs.items():
            log.attrs[k] = v

    atomic_h5(path, write, keep_previous=keep_previous)


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


def _layout(group) -> dict:
    """``{name: (shape, dtype)}`` of a tree's datasets, nested for groups; no data read."""
    out = {}
    for k in group:
        obj = group[k]
        key = k.replace("|", "/")
        if isinstance(obj, h5py.Group):
            out[key] = _layout(obj)
        elif isinstance(obj, h5py.Dataset):
            out[key] = (tuple(int(s) for s in obj.shape) if obj.shape is not None else None,
                        obj.dtype)
        else:
            out[key] = (None, None)
    return out


def _header(f, path: str) -> dict:
    def json_attr(obj, key):
        if key not in obj.attrs:
            raise CheckpointError(f"{path}: damaged checkpoint: attribute {key!r} of "
                                  f"{obj.name} is missing")
        v = obj.attrs[key]
        try:
            return json.loads(v)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: damaged checkpoint: attribute {key!r} of {obj.name} "
                                  f"is not valid JSON ({exc})") from None

    version = int(_scalar(f.attrs["version"]))
    for key in ("epoch", "step", "batch"):
        if key not in f.attrs:
            raise CheckpointError(f"{path}: damaged checkpoint: attribute {key!r} is missing")
    missing = [g for g in ("params", "buffers", "optim", "log") if g not in f]
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint: group(s) {', '.join(missing)} missing")
    for g in ("params", "buffers", "optim", "log"):
        if not isinstance(f[g], h5py.Group):
            raise CheckpointError(f"{path}: damaged checkpoint: /{g} is not a group")
    h = {"path": path, "version": version,
         "config": json_attr(f, "config"), "meta": json_attr(f, "meta"),
         "epoch": _scalar(f.attrs["epoch"]), "step": _scalar(f.attrs["step"]),
         "batch": _scalar(f.attrs["batch"]),
         "history": json_attr(f["log"], "history"), "partial": json_attr(f["log"], "partial"),
         "layout": {g: _layout(f[g]) for g in ("params", "buffers", "optim")}}
    if version >= 2:
        root = {k: f.attrs[k] for k in _ROOT_KEYS if k in f.attrs}
        want = f.attrs.get("attrs_sha256")
        got = _attrs_digest({**root, "history": f["log"].attrs["history"],
                             "partial": f["log"].attrs["partial"]})
        if want != got:
            raise CheckpointError(f"{path}: damaged checkpoint: the root attributes (config, "
                                  "position, log) fail their SHA-256 check")
    return h


def _guarded(path: str, what: str, fn):
    try:
        return fn()
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt metadata surfaces as many exception types
        raise CheckpointError(f"{path}: damaged checkpoint: {what} cannot be read "
                              f"({type(exc).__name__}: {exc})") from None


def read_checkpoint_header(path) -> dict:
    """The checkpoint's position, config, log and declared layout; no array is read.

    ``layout`` is ``{"params"|"buffers"|"optim": {name: (shape, dtype)}}``
    (optimizer groups nested one level deeper).
    """
    path = os.fspath(path)
    f = _open(path, CHECKPOINT_FORMAT)
    try:
        return _guarded(path, "its attributes or layout", lambda: _header(f, path))
    finally:
        f.close()


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


def load_checkpoint(path, expect=None) -> dict:
    """Read a checkpoint into plain NumPy arrays and Python values.

    ``expect(header)``, when given, is called with :func:`read_checkpoint_header`'s
    result before any array is read and raises :class:`CheckpointError` to refuse.
    """
    path = os.fspath(path)
    size = _regular_file(path)
    f = _open(path, CHECKPOINT_FORMAT)
    try:
        h = _guarded(path, "its attributes or layout", lambda: _header(f, path))
        if expect is not None:
            expect(h)
        for key in ("epoch", "step", "batch"):
            v = h[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise CheckpointError(f"{path}: attribute {key} is {v!r}; it must be an integer")
        out = {k: h[k] for k in ("config", "epoch", "step", "batch", "meta", "history",
                                 "partial", "version")}
        for g in ("params", "buffers", "optim"):
            out[g] = _guarded(path, f"/{g}",
                              lambda g=g: _read_tree(f[g], path, h["version"], size))
        return out
    finally:
        f.close()


def load_run_checkpoint(path, loader=None, log=print):
    """Load ``path`` (a checkpoint, or a run directory holding ``checkpoint.h5``),
    falling back to the previous checkpoint, saying so, when the newest is
    missing or unusable.

    ``loader(path)`` reads one file (default :func:`load_checkpoint`).
    Returns ``(checkpoint, path_used)``; raises :class:`CheckpointError` naming
    both files when neither can be used.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.h5")
    loader = loader or load_checkpoint
    prev = prev_path(path)
    try:
        return loader(path), path
    except CheckpointError as exc:
        if not os.path.lexists(prev):
            raise
        first = exc
    try:
        ck = loader(prev)
    except CheckpointError as exc:
        raise CheckpointError(f"{first}\nthe previous checkpoint cannot be used either: "
                              f"{exc}") from None
    log(f"warning: {first}\nusing the previous checkpoint {prev} instead")
    return ck, prev


def save_log(path, history: list, meta: dict, alignment: dict | None = None) -> None:
    """The run log: one record per epoch as columns, plus the run's metadata;
    ``alignment`` (optional, :meth:`bioplaus.align.AlignmentLog.columns`) goes
    to the group ``/alignment``."""

    def write(f):
        if alignment:
            _write_tree(f.create_group("alignment"), alignment)
        f.attrs["format"] = "bioplaus-log"
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        keys = sorted({k for rec in history for k, v in rec.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for k in keys:
            _put(f, k, np.array([rec.get(k, np.nan) for rec in history], dtype=np.float64))
        f.attrs["records"] = json.dumps(history)

    atomic_h5(path, write)


def load_log(path) -> dict:
    path = os.fspath(path)
    size = _regular_file(path)
    try:
        with h5py.File(path, "r") as f:
            out = {"meta": json.loads(f.attrs["meta"]), "records": json.loads(f.attrs["records"])}
            if "alignment" in f:
                out["alignment"] = _read_tree(f["alignment"], path, 0, size)
            return out
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable bioplaus run log ({exc})") from None


def save_oracle(path, *, attrs: dict, arrays: dict) -> None:
    """An oracle file: ``attrs`` as root attributes, ``arrays`` as
    ``group/name`` datasets (groups: input, params, buffers, fixed, grads)."""

    def write(f):
        f.attrs["format"] = ORACLE_FORMAT
        f.attrs["version"] = VERSION
        for k, v in attrs.items():
            f.attrs[k] = v
        for group, d in arrays.items():
            g = f.create_group(group)
            for name, a in d.items():
                _put(g, name, a, with_digest=False)  # fletcher32 only: hand edits stay readable

    atomic_h5(path, write)


def load_oracle(path) -> dict:
    path = os.fspath(path)
    size = _regular_file(path)
    f = _open(path, ORACLE_FORMAT)
    try:
        out = {"attrs": {k: _scalar(v) for k, v in f.attrs.items()}}
        for group in f:
            out[group] = _guarded(path, f"/{group}",
                                  lambda group=group: {name: _read_dataset(f[group][name], path,
                                                                           0, size)
                                                       for name in f[group]})
        return out
    finally:
        f.close()

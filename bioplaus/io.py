"""Every HDF5 call of bioplaus: checkpoints, run logs and oracle files.

Files are written atomically: to ``<name>.tmp`` in the same directory,
flushed and fsync'ed, then renamed over the old file, so a crash during a
write leaves the previous file whole.

Layout of a checkpoint (``format = 'bioplaus-checkpoint'``)::

    attrs: format, version, config (JSON), epoch, step, batch, meta (JSON)
    /params/<name>     every trained parameter, reference state_dict names
    /buffers/<name>    batch-norm running statistics
    /optim/<group>/... each optimizer's state (arrays as datasets, scalars as attrs)
    /log               attrs: history (JSON list of per-epoch records),
                       partial (JSON: the current epoch's running sums)
"""
from __future__ import annotations

import json
import os

import h5py
import numpy as np

from bioplaus.backend import to_numpy

CHECKPOINT_FORMAT = "bioplaus-checkpoint"
ORACLE_FORMAT = "bioplaus-oracle"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint or oracle file that cannot be used, with the reason."""


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
            group.create_dataset(key, data=to_numpy(v))


def _read_tree(group) -> dict:
    out = {}
    for k, v in group.attrs.items():
        key = k.replace("|", "/")
        if isinstance(v, str) and v == "None":
            out[key] = None
        elif isinstance(v, np.generic):
            out[key] = v.item()
        else:
            out[key] = v
    for k, v in group.items():
        key = k.replace("|", "/")
        out[key] = _read_tree(v) if isinstance(v, h5py.Group) else v[()]
    return out


def atomic_h5(path: str, write) -> None:
    """Call ``write(h5file)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
            f.flush()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(path, *, config_json: str, params: dict, buffers: dict, optim: dict,
                    epoch: int, step: int, batch: int, history: list, partial: dict,
                    meta: dict) -> None:
    """Write a checkpoint atomically (see the module docstring for the layout)."""

    def write(f):
        f.attrs["format"] = CHECKPOINT_FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = config_json
        f.attrs["epoch"] = int(epoch)
        f.attrs["step"] = int(step)
        f.attrs["batch"] = int(batch)
        f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        _write_tree(f.create_group("params"), params)
        _write_tree(f.create_group("buffers"), buffers)
        _write_tree(f.create_group("optim"), optim)
        log = f.create_group("log")
        log.attrs["history"] = json.dumps(history)
        log.attrs["partial"] = json.dumps(partial)

    atomic_h5(path, write)


def _open(path, fmt: str):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(
            f"{path}: not a readable HDF5 file ({exc}); it may be truncated or "
            "not a bioplaus file — use the previous checkpoint or start again") from None
    if f.attrs.get("format") != fmt:
        found = f.attrs.get("format")
        f.close()
        raise CheckpointError(f"{path}: not a {fmt} file (format attribute is {found!r})")
    return f


def load_checkpoint(path) -> dict:
    """Read a checkpoint into plain NumPy arrays and Python values."""
    f = _open(path, CHECKPOINT_FORMAT)
    try:
        try:
            return {
                "config": json.loads(f.attrs["config"]),
                "epoch": int(f.attrs["epoch"]),
                "step": int(f.attrs["step"]),
                "batch": int(f.attrs["batch"]),
                "meta": json.loads(f.attrs["meta"]),
                "params": _read_tree(f["params"]),
                "buffers": _read_tree(f["buffers"]),
                "optim": _read_tree(f["optim"]),
                "history": json.loads(f["log"].attrs["history"]),
                "partial": json.loads(f["log"].attrs["partial"]),
            }
        except (KeyError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: damaged checkpoint ({exc})") from None
    finally:
        f.close()


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
            f.create_dataset(k, data=np.array([rec.get(k, np.nan) for rec in history],
                                              dtype=np.float64))
        f.attrs["records"] = json.dumps(history)

    atomic_h5(path, write)


def load_log(path) -> dict:
    path = os.fspath(path)
    try:
        with h5py.File(path, "r") as f:
            out = {"meta": json.loads(f.attrs["meta"]), "records": json.loads(f.attrs["records"])}
            if "alignment" in f:
                out["alignment"] = _read_tree(f["alignment"])
            return out
    except (OSError, KeyError) as exc:
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
                g.create_dataset(name, data=to_numpy(a))

    atomic_h5(path, write)


def load_oracle(path) -> dict:
    f = _open(path, ORACLE_FORMAT)
    try:
        out = {"attrs": {k: (v.item() if isinstance(v, np.generic) else v)
                         for k, v in f.attrs.items()}}
        for group in f:
            out[group] = {name: f[group][name][()] for name in f[group]}
        return out
    finally:
        f.close()

"""The run log (``log.h5``: one record per epoch, the run's metadata, the
alignment log) and the oracle's file."""
from __future__ import annotations

import json
import os

import h5py
import numpy as np

from bioplaus.io.h5 import (ORACLE_FORMAT, VERSION, CheckpointError, _guarded, _open, _put,
                            _read_dataset, _read_tree, _regular_file, _scalar, _write_tree,
                            atomic_h5)


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

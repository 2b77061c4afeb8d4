"""Checkpoints: :func:`save_checkpoint`, :func:`read_checkpoint_header` (no
array read), :func:`load_checkpoint` and :func:`load_run_checkpoint` (the
previous checkpoint where the newest is unusable). Layout: :mod:`bioplaus.io`."""
from __future__ import annotations

import json
import os

import h5py

from bioplaus.io.h5 import (CHECKPOINT_FORMAT, VERSION, CheckpointError, _attrs_digest,
                            _guarded, _open, _read_tree, _regular_file, _scalar, _write_tree,
                            atomic_h5, prev_path)


_ROOT_KEYS = ("format", "version", "config", "epoch", "step", "batch", "meta")


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

"""Validate a checkpoint against the model the configuration builds.

Run before any array is read (:func:`bioplaus.io.read_checkpoint_header` gives
the declared layout): every parameter, buffer and optimizer state must be
present, with no extras, of exactly the shape the model has and a float
dtype (integer step counts for the optimizer's ``step/*``); the position
(epoch, batch, step, the optimizer's step counts, the length of the history)
must lie in range and agree with each other. After reading, every array must
be finite (and running variances non-negative). Every problem is listed in
one :class:`~bioplaus.io.CheckpointError`.

Used by ``train --resume`` (:meth:`bioplaus.train.Trainer._resume`) and by
``eval`` (:func:`load_model`).
"""
from __future__ import annotations

import numpy as np

from bioplaus import io
from bioplaus.io import CheckpointError

MAX_LISTED = 20


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def expected_layout(model, states) -> dict:
    """``{"params"|"buffers": {name: shape}, "optim": {group: {key: shape}}}``."""
    from bioplaus import optim

    return {
        "params": {k: tuple(v.shape) for k, v in model.params.items()},
        "buffers": {k: tuple(v.shape) for k, v in model.buffers.items()},
        "optim": {g: {k: tuple(np.shape(a)) for k, a in optim.state_arrays(st).items()}
                  for g, st in states.items()},
    }


def _compare(section: str, want: dict, got: dict, problems: list, int_keys=lambda k: False):
    for k in sorted(set(want) - set(got)):
        problems.append(f"{section}/{k}: missing (the model has shape {want[k]})")
    for k in sorted(set(got) - set(want)):
        problems.append(f"{section}/{k}: unexpected (the model has no such entry)")
    for k in sorted(set(want) & set(got)):
        g = got[k]
        if not isinstance(g, tuple):
            problems.append(f"{section}/{k}: a group where an array is expected")
            continue
        shape, dtype = g
        if shape != want[k]:
            problems.append(f"{section}/{k}: shape {shape}, the model's is {want[k]}")
        if int_keys(k):
            if dtype is None or dtype.kind not in "iu":
                problems.append(f"{section}/{k}: dtype {dtype}, expected an integer step count")
        elif dtype is None or dtype.kind != "f" or dtype.itemsize not in (4, 8):
            problems.append(f"{section}/{k}: dtype {dtype}, expected float32 or float64")


def check_layout(header: dict, want: dict) -> list[str]:
    """Problems of the declared layout against ``want`` (:func:`expected_layout`)."""
    problems: list[str] = []
    lay = header["layout"]
    before = len(problems)
    _compare("params", want["params"], lay["params"], problems)
    params_bad = len(problems) > before
    _compare("buffers", want["buffers"], lay["buffers"], problems)
    got_optim = lay["optim"]
    for g in sorted(set(want["optim"]) - set(got_optim)):
        problems.append(f"optim/{g}: optimizer state missing")
    for g in sorted(set(got_optim) - set(want["optim"])):
        problems.append(f"optim/{g}: unexpected optimizer state (the model has no such group)")
    for g in sorted(set(want["optim"]) & set(got_optim)):
        if not isinstance(got_optim[g], dict):
            problems.append(f"optim/{g}: an array where a group is expected")
            continue
        _compare(f"optim/{g}", want["optim"][g], got_optim[g], problems,
                 int_keys=lambda k: k.startswith("step/"))
    if params_bad:
        problems[0] = "it holds parameters of another net (or is damaged): " + problems[0]
    return problems


def check_position(header: dict, batches_per_epoch: int) -> list[str]:
    """Problems of epoch, batch, step and the history against each other."""
    problems = []
    nb = int(batches_per_epoch)
    e, b, s, hist = header["epoch"], header["batch"], header["step"], header["history"]
    for key, v in (("epoch", e), ("batch", b), ("step", s)):
        if not _is_int(v):
            problems.append(f"{key} = {v!r}: must be an integer")
    if problems:
        return problems
    if e < 1:
        problems.append(f"epoch = {e}: must be >= 1")
    if not 0 <= b <= nb:
        problems.append(f"batch = {b}: must lie in 0..{nb} (batches per epoch)")
    if s < 0:
        problems.append(f"step = {s}: must be >= 0")
    if not problems and s != (e - 1) * nb + b:
        problems.append(f"step = {s} disagrees with epoch {e} and batch {b}: with {nb} batches "
                        f"per epoch it must be {(e - 1) * nb + b}")
    if not isinstance(hist, list):
        problems.append("the history is not a list of epoch records")
    elif _is_int(e) and len(hist) != e - 1:
        problems.append(f"the history holds {len(hist)} epoch records but epoch = {e} needs "
                        f"{e - 1}")
    elif any(not isinstance(r, dict) or r.get("epoch") != i + 1 for i, r in enumerate(hist)):
        problems.append("the history's epoch records are not numbered 1, 2, ...")
    if not isinstance(header.get("partial"), dict):
        problems.append("the current epoch's running sums (log/partial) are not a table")
    return problems


def check_step_counts(ck: dict) -> list[str]:
    """Optimizer step counts: integers in 0..step, one value per group."""
    problems = []
    s = ck["step"]
    for g, st in sorted(ck["optim"].items()):
        counts = {k: v for k, v in st.items() if k.startswith("step/")}
        vals = set()
        for k, v in sorted(counts.items()):
            v = np.asarray(v)
            if v.shape != () or v.dtype.kind not in "iu":
                continue  # reported by the layout check
            n = int(v)
            vals.add(n)
            if not 0 <= n <= s:
                problems.append(f"optim/{g}/{k} = {n}: the optimizer's step count must lie in "
                                f"0..{s} (the run's step)")
        if len(vals) > 1:
            problems.append(f"optim/{g}: the parameters' step counts disagree ({sorted(vals)})")
    return problems


def check_values(ck: dict) -> list[str]:
    """Non-finite arrays, negative running variances, bad step counts."""
    problems = []
    for section in ("params", "buffers"):
        for k, a in sorted(ck[section].items()):
            a = np.asarray(a)
            if a.dtype.kind == "f":
                bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                if bad:
                    problems.append(f"{section}/{k}: {bad} non-finite value(s) (NaN or inf)")
                elif "running_var" in k and a.size and float(a.min()) < 0:
                    problems.append(f"{section}/{k}: negative variance {float(a.min())}")
    for g, st in sorted(ck["optim"].items()):
        for k, a in sorted(st.items()):
            a = np.asarray(a)
            if a.dtype.kind == "f":
                bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                if bad:
                    problems.append(f"optim/{g}/{k}: {bad} non-finite value(s) (NaN or inf)")
    return problems + check_step_counts(ck)


def refuse(path, problems: list[str]) -> None:
    """Raise one :class:`CheckpointError` listing ``problems`` (if any)."""
    if not problems:
        return
    shown = problems[:MAX_LISTED]
    more = len(problems) - len(shown)
    raise CheckpointError(f"{path}: refusing this checkpoint ({len(problems)} problem"
                          f"{'s' if len(problems) != 1 else ''}):\n  - " + "\n  - ".join(shown)
                          + (f"\n  ... and {more} more" if more else ""))


def load_checked(path, *, want: dict, batches_per_epoch: int, on_header=None) -> dict:
    """Read ``path`` after checking its header, then check its values.

    ``on_header(header)`` may add problems of its own (a list of strings),
    e.g. the configuration's differences.
    """

    def expect(h):
        problems = list(on_header(h)) if on_header else []
        if problems and problems[0].startswith("!"):  # a refusal that makes the rest moot
            raise CheckpointError(problems[0][1:])
        problems += check_layout(h, want)
        problems += check_position(h, batches_per_epoch)
        refuse(h["path"], problems)

    ck = io.load_checkpoint(path, expect=expect)
    refuse(path, check_values(ck))
    return ck


def load_model(path, *, device: str = "cpu", data_dir=None, log=print):
    """``(model, data)`` from a checkpoint file or a run directory holding one,
    validated as ``train --resume`` validates (used by ``eval``)."""
    import os

    from bioplaus import backend, optim
    from bioplaus.config import Config, ConfigError

    path = os.fspath(path)
    built = {}

    def loader(p):
        h = io.read_checkpoint_header(p)
        if not isinstance(h["config"], dict):
            raise CheckpointError(f"{p}: damaged checkpoint: its configuration is not a table")
        try:
            cfg = Config.from_dict(h["config"]).replace(device=device)
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{p}: its configuration cannot be used ({exc})") from None
        if data_dir is not None:
            cfg = cfg.replace(data_dir=data_dir)
        key = cfg.to_json()
        if key not in built:
            from bioplaus.data.train_data import TrainData
            from bioplaus.net.model import build_model

            xp = backend.get_xp(device)
            dtype = np.float64 if cfg.dtype == "float64" else np.float32
            data = TrainData(cfg, xp, dtype)
            model = build_model(cfg, data.input_shape, data.num_classes, xp=xp, dtype=dtype,
                                reference=cfg.reference)
            ocfg = optim.OptimConfig(name=cfg.optim, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay)
            states = {g: optim.init_state(model.group_params(g), ocfg) for g in model.groups}
            built[key] = (model, data, expected_layout(model, states))
        model, data, want = built[key]
        ck = load_checked(p, want=want, batches_per_epoch=data.batches_per_epoch)
        return ck, model, data

    (ck, model, data), used = io.load_run_checkpoint(path, loader=loader, log=log)
    from bioplaus.net.restore import load_arrays

    load_arrays(model, ck, used)
    return model, data


def resume_checked(trainer, path, log=print):
    """The checkpoint a :class:`~bioplaus.train.Trainer` resumes from, validated
    against its model, optimizer states and configuration; falls back to the
    previous checkpoint when the newest cannot be used. Returns ``(ck, path_used)``."""
    from bioplaus.config import Config, ConfigError, differences

    want = expected_layout(trainer.model, trainer.states)

    def on_header(h):
        if not isinstance(h["config"], dict):
            return ["!" + f"{h['path']}: damaged checkpoint: its configuration is not a table"]
        try:
            old = Config.from_dict(h["config"])
        except (ConfigError, TypeError, ValueError) as exc:
            return ["!" + f"{h['path']}: its configuration cannot be used ({exc})"]
        diff = differences(old, trainer.cfg)
        if diff:
            return ["!" + f"{h['path']} was written with another configuration; refusing to "
                    "resume. Differences:\n  " + "\n  ".join(diff)]
        return []

    def loader(p):
        return load_checked(p, want=want, batches_per_epoch=trainer.data.batches_per_epoch,
                            on_header=on_header)

    return io.load_run_checkpoint(path, loader=loader, log=log)

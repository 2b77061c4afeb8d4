"""A trained model back from a checkpoint: its arrays, and the model with its evaluation data.

:func:`load_arrays` puts a checkpoint's parameters and running statistics
into a built model (used by ``bioplaus eval`` and by a resumed training run);
:func:`load_model_from_checkpoint` builds the model of the checkpoint's
config first.
"""
from __future__ import annotations

import numpy as np

from bioplaus import backend
from bioplaus.io import CheckpointError


def load_arrays(model, ck: dict, path: str) -> None:
    """Copy checkpoint ``ck``'s (read from ``path``) parameters and buffers into ``model``.

    Parameters are copied into the model's own arrays (their layout is
    kept); the checkpoint must hold exactly the model's parameters, with the
    same shapes, else a :class:`~bioplaus.io.CheckpointError` names the
    differences.
    """
    want = {k: tuple(v.shape) for k, v in model.params.items()}
    got = {k: tuple(np.shape(v)) for k, v in ck["params"].items()}
    if want != got:
        extra = sorted(set(got) - set(want))[:5]
        missing = sorted(set(want) - set(got))[:5]
        shapes = [k for k in set(want) & set(got) if want[k] != got[k]][:5]
        raise CheckpointError(f"{path} holds parameters of another net: missing {missing}, "
                              f"unexpected {extra}, other shapes {shapes}")
    xp, dtype = model.xp, model.dtype
    for k, v in ck["params"].items():
        model.params[k][...] = backend.to_device(v, xp, dtype)
    for k, v in ck["buffers"].items():
        model.buffers[k] = backend.to_device(v, xp, dtype)


def load_model_from_checkpoint(path, *, device: str = "cpu", data_dir=None):
    """``(model, data)`` from a checkpoint file or a run directory holding one,
    checked as ``train --resume`` checks it (:func:`bioplaus.checks.load_model`)."""
    from bioplaus.checks import load_model

    return load_model(path, device=device, data_dir=data_dir)

"""Rebuild a trained model (and its evaluation data) from a checkpoint."""
from __future__ import annotations

import os

import numpy as np

from bioplaus import backend
from bioplaus.config import Config
from bioplaus.io import CheckpointError, load_checkpoint
from bioplaus.model import build_model
from bioplaus.trainer_data import TrainData


def load_model_from_checkpoint(path, *, device: str = "cpu", data_dir=None):
    """``(model, data)`` from a checkpoint file or a run directory holding one."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoint.h5")
    ck = load_checkpoint(path)
    cfg = Config.from_dict(ck["config"]).replace(device=device)
    if data_dir is not None:
        cfg = cfg.replace(data_dir=data_dir)
    xp = backend.get_xp(device)
    dtype = np.float64 if cfg.dtype == "float64" else np.float32
    data = TrainData(cfg, xp, dtype)
    model = build_model(cfg, data.input_shape, data.num_classes, xp=xp, dtype=dtype)
    if set(ck["params"]) != set(model.params):
        raise CheckpointError(f"{path}: its parameters do not match {cfg.net} under {cfg.rule}")
    for k, v in ck["params"].items():
        model.params[k] = backend.to_device(v, xp, dtype)
    for k, v in ck["buffers"].items():
        model.buffers[k] = backend.to_device(v, xp, dtype)
    return model, data

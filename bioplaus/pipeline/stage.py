"""One pipeline stage: a run of consecutive blocks with everything they own.

A :class:`Stage` holds its blocks' parameters, running statistics, fixed
matrices and optimizer states (and the output layer's, in the last stage),
and trains them batch after batch on what the stage before it sends: the
previous block's detached output and the labels. It draws its blocks'
dropout masks from the streams keyed by (seed, block, step)
(:func:`bioplaus.net.forward.dropout_masks`), so which stage a block runs
in changes nothing it computes. Ray runs each stage as an actor
(:mod:`bioplaus.pipeline.trainer`); the class itself knows nothing of Ray.
"""
from __future__ import annotations

import time

import numpy as np

from bioplaus import backend, losses, optim
from bioplaus.config import Config
from bioplaus.net.forward import dropout_masks
from bioplaus.net.model import build_model
from bioplaus.pipeline.split import submodel
from bioplaus.rules.step import block_updates, output_update


def _host(v):
    """A statistic as a Python number (None stays None)."""
    if v is None:
        return None
    return float(v)


def _nbytes(*arrays) -> int:
    return int(sum(int(a.nbytes) for a in arrays if a is not None))


def stage_arrays(model, states, lo: int, hi: int, output: bool) -> dict:
    """The arrays a :class:`Stage` of blocks ``lo..hi-1`` starts from, taken from
    a whole ``model`` and its optimizer ``states``, on the host."""
    sub = submodel(model, lo, hi, output=output)
    return {"params": {k: backend.to_numpy(v) for k, v in sub.params.items()},
            "buffers": {k: backend.to_numpy(v) for k, v in sub.buffers.items()},
            "optim": {g: {k: backend.to_numpy(v) for k, v in optim.state_arrays(states[g]).items()}
                      for g in sub.groups}}


class Stage:
    """Blocks ``lo..hi-1`` of the net of ``config`` (and its output layer when ``output``).

    ``arrays``: ``{"params", "buffers", "optim"}`` for the stage's groups,
    as :meth:`state` returns them (a fresh run's initial values or a
    checkpoint's); every array of the stage must be given.
    """

    def __init__(self, config: dict, input_shape, num_classes: int, lo: int, hi: int,
                 output: bool, arrays: dict):
        cfg = Config.from_dict(config)
        self.cfg = cfg
        self.xp = xp = backend.get_xp(cfg.device)
        backend.set_tf32(xp, cfg.tf32)  # as the Trainer sets it
        self.dtype = np.float64 if cfg.dtype == "float64" else np.float32
        full = build_model(cfg, tuple(input_shape), int(num_classes), xp=xp, dtype=self.dtype,
                           reference=cfg.reference)
        self.model = submodel(full, lo, hi, output=output)
        del full
        self.output = output
        self.ocfg = optim.OptimConfig(name=cfg.optim, momentum=cfg.momentum,
                                      weight_decay=cfg.weight_decay)
        self.load(arrays)
        self.busy_s = 0.0
        self.steps = 0

    def load(self, arrays: dict) -> None:
        m = self.model
        for k in m.params:
            m.params[k][...] = backend.to_device(arrays["params"][k], self.xp, self.dtype)
        for k in m.buffers:
            m.buffers[k] = backend.to_device(arrays["buffers"][k], self.xp, self.dtype)
        self.states = {g: optim.load_state_arrays(arrays["optim"][g], self.xp) for g in m.groups}

    def state(self) -> dict:
        """The stage's arrays on the host: ``{"params", "buffers", "optim"}``."""
        return stage_arrays(self.model, self.states, 0, len(self.model.spec.blocks), self.output)

    def _apply(self, upd, lr, rows) -> None:
        m = self.model
        m.k.optimizer_step(m.group_params(upd.group), upd.grads, self.states[upd.group], lr,
                           self.ocfg)
        rows.append((upd.group, {k: _host(v) for k, v in upd.stats.items()}))

    def step(self, batch, step: int, lr: float):
        """Train the stage's blocks on ``batch = (a, y)`` at global step ``step``.

        Returns ``(next_batch, report)``: ``next_batch`` is ``(out, y)`` for
        the next stage (None from the last stage); ``report`` holds ``rows``
        (``(group, stats)`` in block order, stats as Python numbers), the
        bytes sent on and the seconds this step took.
        """
        t0 = time.perf_counter()
        a, y = batch
        m, xp = self.model, self.xp
        a = backend.to_device(a, xp)
        y = backend.to_device(y, xp)
        masks = dropout_masks(m, int(a.shape[0]), self.cfg.dropout, self.cfg.seed, int(step))
        Y = losses.one_hot(y, m.spec.num_classes, m.dtype, xp)
        rows = []
        gen = block_updates(m, a, y, Y, masks, True)
        while True:
            try:
                upd = next(gen)
            except StopIteration as done:
                out = done.value
                break
            self._apply(upd, lr, rows)
        nxt = None
        if self.output:
            self._apply(output_update(m, out, y), lr, rows)
        else:
            nxt = (out, y)
        dt = time.perf_counter() - t0
        self.busy_s += dt
        self.steps += 1
        return nxt, {"rows": rows, "sent_bytes": _nbytes(*(nxt or ())), "seconds": dt,
                     "end": time.time()}

    def timing(self) -> dict:
        """Seconds spent in :meth:`step` and steps trained since the last call."""
        out = {"busy_s": self.busy_s, "steps": self.steps}
        self.busy_s, self.steps = 0.0, 0
        return out

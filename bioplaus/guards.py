"""The trainer's reporting interval and divergence guards (a mixin of
:class:`bioplaus.train.Trainer`).

Each step's statistics stay on the device, unread; :meth:`read_stats` reads
every unread step's statistics in one transfer, and the guards check them
step by step: a non-finite loss, or the output layer's cross-entropy past
:meth:`loss_bound`, stops the run with a message naming the layer, the step,
a likely cause and the checkpoint that is kept.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from bioplaus import backend
from bioplaus.io import CheckpointError, prev_path, read_checkpoint_header

CHECKPOINT = "checkpoint.h5"


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the layer and step."""



class StatsGuards:
    """Reading a run's step statistics and stopping a diverged run. The host
    class provides ``xp``, ``model``, ``data``, ``history``, ``out_dir``,
    ``_pending``, ``_partial``, ``_ce_scale``, ``_loss_bound``,
    ``_bound_from_history``, ``_bound_text`` and ``_params_checked``."""

    def read_stats(self) -> None:
        """The reporting interval: read every unread step's statistics in one
        transfer, check them step by step (:meth:`_guard`) and add them to the
        epoch's running sums, as ``float(v) * n`` (``* 1`` for correct counts)."""
        pending, self._pending = self._pending, []
        self._last_read = time.time()
        if not pending:
            return
        on_device = [v for *_, rows in pending for _, st in rows for v in st.values()
                     if v is not None and type(v) not in (int, float)]
        values = iter([])
        if on_device:
            # one stack (float64 losses and integer counts promote to float64), one transfer
            stacked = self.xp.stack(on_device).astype(np.float64, copy=False)
            values = iter(backend.to_numpy(stacked).tolist())
        part = self._partial
        for step, epoch, batch, n, rows in pending:
            for group, st in rows:
                st = {k: (v if v is None or type(v) in (int, float) else next(values))
                      for k, v in st.items()}
                self._guard(group, st, (step, epoch, batch))
                acc = part.setdefault(group, {})
                for k, v in st.items():
                    if v is not None:
                        acc[k] = acc.get(k, 0.0) + float(v) * (1 if k == "correct" else n)
            part["_n"] = part.get("_n", 0) + n

    def _guard(self, group: str, st: dict, at: tuple) -> None:
        """A non-finite loss, or the output's cross-entropy past :meth:`loss_bound`, stops the run."""
        step, epoch, batch = at
        for key in ("loss", "loss_global"):
            v = st.get(key)
            if v is not None and not math.isfinite(v):
                raise TrainingDiverged(
                    f"non-finite {key} ({v}) in layer {group} at step {step} "
                    f"(epoch {epoch}, batch {batch}); {self._cause(group, step)}. "
                    f"{self.kept_checkpoint()}")
        v = st.get("loss_global")
        if v is not None and self._ce_scale > 0:
            ce, bound = v / self._ce_scale, self.loss_bound()
            if ce > bound:
                raise TrainingDiverged(
                    f"the output layer's cross-entropy {ce:.4g} at step {step} (epoch "
                    f"{epoch}, batch {batch}) exceeds {bound:.4g} "
                    f"({self._bound_text}): the run diverged — lower --lr. "
                    f"{self.kept_checkpoint()}")

    def _check_params(self) -> list:
        """Names of the parameters holding non-finite values (a host read: at a run's
        start and at checkpoints only); remembered for :meth:`_cause`."""
        bad = [k for k, v in self.model.params.items() if not bool(self.xp.isfinite(v).all())]
        groups = {g for g in self.model.groups if any(k in bad for k in self.model.group_params(g))}
        self._params_checked = (self.step, groups)
        return bad

    def loss_bound(self) -> float:
        """Above this cross-entropy of the output layer a run has diverged: 10 x
        the larger of log(C) (chance) and the first epoch's mean training value."""
        if self._loss_bound is None or (self.history and not self._bound_from_history):
            chance = math.log(self.data.num_classes)
            first = self.history[0].get("train_loss_global") if self.history else None
            first = first / self._ce_scale if first is not None and self._ce_scale > 0 else None
            if first is not None and math.isfinite(first) and first > chance:
                self._loss_bound, self._bound_text = 10 * first, "10 x the first epoch's mean"
            else:
                self._loss_bound, self._bound_text = 10 * chance, "10 x log(classes)"
            self._bound_from_history = bool(self.history)
        return self._loss_bound

    def _cause(self, group: str, step: int) -> str:
        """Why ``group``'s loss at ``step`` may be non-finite. The parameters are
        looked at only at a run's start and at checkpoints (a host read), so
        'already before this step' is said where that look found them so."""
        checked_at, bad_groups = self._params_checked
        bad = [k for k, v in self.model.group_params(group).items()
               if not bool(self.xp.isfinite(v).all())]
        if bad and group in bad_groups and checked_at <= step:
            return f"parameter {bad[0]} already held non-finite values before this step"
        if bad:
            return (f"parameter {bad[0]} holds non-finite values now (finite at step "
                    f"{checked_at}); lower --lr or check the data")
        return "lower --lr or check the data"

    def kept_checkpoint(self) -> str:
        """What checkpoint exists in the run directory, said as it is."""
        path = os.path.join(self.out_dir, CHECKPOINT)
        try:
            h = read_checkpoint_header(path)
        except CheckpointError:
            if os.path.lexists(prev_path(path)):
                return (f"The newest checkpoint cannot be read; {prev_path(path)} is left as it "
                        "was")
            return f"No checkpoint was written in {self.out_dir} (the run stopped before its first)"
        return (f"The last checkpoint, at step {h['step']} (epoch {h['epoch']}, batch "
                f"{h['batch']}), is kept in {path}, as it was")

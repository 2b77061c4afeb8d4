"""The training loop: per batch, each block forward, its rule's update, its own
optimizer step; the detached output goes on to the next block; output layer last.

Runs are resumable and exact: the order of examples is a function of
(seed, epoch), augmentation of (seed, epoch, batch), dropout masks of
(seed, block, step), so a checkpoint needs only the arrays (parameters,
running statistics, optimizer moments), the position (epoch, batch, step)
and the current epoch's running sums. A run interrupted and resumed equals
the uninterrupted run bit for bit on the CPU.

Nothing inside a step reads back to the host: each update's statistics are
device scalars, kept (unread) until the reporting interval
(:data:`REPORT_EVERY_S`, :meth:`Trainer.read_stats`, in :mod:`bioplaus.guards`), where they are read in
one transfer and summed, and the guards (non-finite loss, a cross-entropy
past its bound) check them step by step, naming the first bad step and
layer. So a diverged run is stopped at the next report, not within its
step, and never after a checkpoint of a broken state: every checkpoint reads
the statistics first.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from bioplaus import backend, optim
from bioplaus import checks
from bioplaus.align import AlignmentLog
from bioplaus.config import Config, check_seconds, validate
from bioplaus.evaluate import evaluate
from bioplaus.guards import CHECKPOINT, StatsGuards, TrainingDiverged
from bioplaus.io import (CheckpointError, load_log, prev_path,
                         save_checkpoint, save_log)
from bioplaus.runinfo import git_commit, machine_description
from bioplaus.runlock import RunLock
from bioplaus.signals import describe, stop_on_signals
from bioplaus.data.train_data import TrainData
from bioplaus.net.forward import dropout_masks
from bioplaus.net.model import build_model
from bioplaus.net.restore import load_arrays
from bioplaus.progress import Bar, RunClock, hms, wrap
from bioplaus.rules.registry import get_rule
from bioplaus.rules.step import step_updates

# The first checkpoint of a fresh run comes after this many seconds (or
# --checkpoint-every if shorter), so a run stopped early loses little.
EARLY_CHECKPOINT_S = 60.0
LOG = "log.h5"
TEXT_LOG = "train.log"
# A step's statistics (losses, correct counts) stay on the device; the host
# reads them, all in one transfer, at a reporting interval: the progress line
# (at most this often), a checkpoint, the end of an epoch, an access to
# Trainer.partial. The divergence guards run on what is read, step by step.
REPORT_EVERY_S = 1.0


class Interrupted(RuntimeError):
    """Ctrl-C: a checkpoint was written and the run can be resumed."""


def _optim_config(cfg: Config) -> optim.OptimConfig:
    return optim.OptimConfig(name=cfg.optim, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def check_rule_options(cfg: Config) -> None:
    """Refuse options that do not apply to the chosen rule (clear errors)."""
    from bioplaus.config import ConfigError

    rule = get_rule(cfg.rule)
    default = Config()
    if not rule.uses_beta and cfg.beta != default.beta:
        raise ConfigError(f"--beta applies only to predsim and predsim-bio, not to {cfg.rule}")
    if not rule.frc and cfg.frc_loss != default.frc_loss:
        raise ConfigError(f"--frc-loss applies only to the frc-* rules, not to {cfg.rule}")
    if not rule.pred and not rule.bio and cfg.dim_in_decoder != default.dim_in_decoder:
        raise ConfigError(f"--dim-in-decoder applies only to rules with a local decoder "
                          f"(pred, predsim and the -bio rules), not to {cfg.rule}")
    if cfg.layerwise_epochs and rule.family == "global":
        raise ConfigError(f"--layerwise-epochs needs a local rule (local or frc-*): {cfg.rule} "
                          "sends one error through the whole net")
    if not rule.bio and cfg.target_proj_size != default.target_proj_size:
        raise ConfigError(f"--target-proj-size applies only to the -bio rules, not to {cfg.rule}")


class Trainer(StatsGuards):
    """Holds a run's model, optimizers, data and position; :meth:`run` trains."""

    def __init__(self, cfg: Config, out_dir: str, *, resume: bool = False, log=print,
                 progress: bool = True, checkpoint_every_s: float = 300.0, on_step=None,
                 command: str = "", log_alignment: int = 0):
        validate(cfg)
        check_rule_options(cfg)
        self.cfg = cfg
        self.out_dir = out_dir
        self.log = log
        self.show_progress = progress
        self.checkpoint_every_s = check_seconds("--checkpoint-every", checkpoint_every_s)
        self.on_step = on_step  # called as on_step(trainer) after every step
        self.command = command  # the command line, recorded in the run log
        self.xp = backend.get_xp(cfg.device)
        # "float32 products: strict float32" or "...: TF32 tensor cores allowed (--tf32)"
        self.precision = backend.set_tf32(self.xp, cfg.tf32)
        self.dtype = np.float64 if cfg.dtype == "float64" else np.float32
        self.data = TrainData(cfg, self.xp, self.dtype)
        self.model = build_model(cfg, self.data.input_shape, self.data.num_classes,
                                 xp=self.xp, dtype=self.dtype, reference=cfg.reference)
        self.ocfg = _optim_config(cfg)
        self.states = {g: optim.init_state(self.model.group_params(g), self.ocfg)
                       for g in self.model.groups}
        self.epoch, self.batch, self.step = 1, 0, 0
        self._pending = []  # steps whose statistics are still unread on the device
        self._last_read = time.time()
        # (step, groups whose parameters held non-finite values) at the last look at them
        self._params_checked = (0, set())
        self.history, self.partial = [], {}
        self.wall_before = 0.0
        # --log-alignment N: bioplaus.align every N steps, into log.h5's /alignment
        self.alignment = AlignmentLog(log_alignment) if log_alignment else None
        self._keep_previous = True
        self._saved = False  # no checkpoint written by this process yet
        self.early_checkpoint_s = min(self.checkpoint_every_s, EARLY_CHECKPOINT_S)
        self._loss_bound = None
        # loss_global is (1 - beta) x the output layer's cross-entropy under predsim(-bio)
        self._ce_scale = (1.0 - cfg.beta) if get_rule(cfg.rule).uses_beta else 1.0
        os.makedirs(out_dir, exist_ok=True)
        # one writer per run directory (RunLocked names the holder)
        self._lock = RunLock(out_dir, log=log).acquire()
        try:
            ckpt = os.path.join(out_dir, CHECKPOINT)
            if resume:
                self._resume(ckpt)
            elif os.path.lexists(ckpt) or os.path.lexists(prev_path(ckpt)):
                found = ckpt if os.path.lexists(ckpt) else prev_path(ckpt)
                raise CheckpointError(f"{found} exists: pass --resume to continue that run, "
                                      "or choose another --out directory")
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ resume
    def _resume(self, path: str) -> None:
        if not (os.path.lexists(path) or os.path.lexists(prev_path(path))):
            raise CheckpointError(f"--resume: {path}: no such file (nothing to resume)")
        ck, used = checks.resume_checked(self, path, log=self.log)
        # resumed from the previous checkpoint: the unusable newest is not kept as "previous"
        self._keep_previous = used == path
        path = used
        load_arrays(self.model, ck, path)
        for g, st in ck["optim"].items():
            self.states[g] = optim.load_state_arrays(st, self.xp)
        self.epoch, self.batch, self.step = ck["epoch"], ck["batch"], ck["step"]
        self.history, self.partial = ck["history"], ck["partial"]
        self.wall_before = float(ck["meta"].get("wall_s", 0.0))
        log_path = os.path.join(self.out_dir, LOG)
        if self.alignment is not None and os.path.exists(log_path):
            cols = load_log(log_path).get("alignment")
            if cols:
                self.alignment = AlignmentLog.from_columns(self.alignment.every, cols)
                self.alignment.keep_until(self.step)
        self.log(f"resumed {path} at epoch {self.epoch}, batch {self.batch}, step {self.step}")

    def save(self) -> None:
        self.read_stats()  # the guards first: a diverged run is said to be one
        bad = self._check_params()
        if bad:  # never replace a sane checkpoint with a broken state
            raise TrainingDiverged(f"parameters {', '.join(bad[:3])} hold non-finite values at "
                                   f"step {self.step}; not written. {self.kept_checkpoint()}")
        meta = {"wall_s": self.wall_before + (time.time() - self.t0),
                "machine": machine_description(self.xp), "precision": self.precision,
                "commit": git_commit(),
                "command": self.command}
        save_checkpoint(os.path.join(self.out_dir, CHECKPOINT), config_json=self.cfg.to_json(),
                        params=self.model.params, buffers=self.model.buffers,
                        optim={g: optim.state_arrays(s) for g, s in self.states.items()},
                        epoch=self.epoch, step=self.step, batch=self.batch,
                        history=self.history, partial=self.partial, meta=meta,
                        keep_previous=self._keep_previous)
        self._keep_previous = True
        self._saved = True
        extra = {"partial_record": self.partial_record} if getattr(self, "partial_record", None) else {}
        save_log(os.path.join(self.out_dir, LOG), self.history,
                 {**meta, "config": self.cfg.to_dict(), **extra},
                 alignment=self.alignment.columns() if self.alignment and self.alignment.rows
                 else None)

    # ------------------------------------------------------------------- train
    def _train_batch(self, xb, yb, lr) -> None:
        """One training step. Nothing here reads back to the host: the updates'
        statistics are kept, unread, for :meth:`read_stats`."""
        masks = dropout_masks(self.model, xb.shape[0], self.cfg.dropout, self.cfg.seed, self.step)
        if self.alignment is not None and self.alignment.due(self.step):
            self.alignment.record(self.model, xb, yb, masks, step=self.step,
                                  epoch=self.epoch - 1 + self.batch / self.data.batches_per_epoch)
        n = int(xb.shape[0])
        active = self.active_groups()
        rows = []
        for upd in step_updates(self.model, xb, yb, masks, step=self.step):
            if active is not None and upd.group not in active:
                continue  # a frozen block below the active one: forward only, no update
            self.model.k.optimizer_step(self.model.group_params(upd.group), upd.grads,
                                        self.states[upd.group], lr, self.ocfg)
            rows.append((upd.group, upd.stats))
            if active is not None and upd.group == active[-1]:
                break  # blocks above the active one are not needed in this phase
        self._pending.append((self.step, self.epoch, self.batch, n, rows))

    @property
    def partial(self) -> dict:
        """The current epoch's running sums (read from the device first)."""
        self.read_stats()
        return self._partial

    @partial.setter
    def partial(self, value: dict) -> None:
        self._partial = value
        self._pending = []

    def active_groups(self):
        """Groups trained in this epoch under layer-wise training (None: all).

        Block i trains during epochs i*E+1 .. (i+1)*E; the output layer
        trains together with the last block, and after it.
        """
        E = self.cfg.layerwise_epochs
        if not E:
            return None
        blocks = [b.name for b in self.model.spec.blocks]
        i = min((self.epoch - 1) // E, len(blocks) - 1)
        if i == len(blocks) - 1:
            return [blocks[i], self.model.spec.out_name]
        return [blocks[i]]

    def _epoch_record(self, lr: float, eval_res: dict, wall: float) -> dict:
        part = self.partial
        n = max(part.get("_n", 0), 1)
        out = self.model.spec.out_name
        rec = {"epoch": self.epoch, "lr": lr, "steps": self.step, "wall_s": wall,
               "train_examples": part.get("_n", 0),
               "train_loss_global": (part[out]["loss_global"] / n if out in part else float("nan")),
               "train_error": (100.0 * (1 - part[out]["correct"] / n) if out in part
                               else float("nan")),
               "test_loss": eval_res["loss"], "test_error": eval_res["error"],
               "eval_split": eval_res["split"]}
        for i, b in enumerate(self.model.spec.blocks):
            acc = part.get(b.name, {})
            rec[f"block{i}_loss_pred"] = acc.get("loss_pred", 0.0) / n
            rec[f"block{i}_loss_sim"] = acc.get("loss_sim", 0.0) / n
            if "correct" in acc:
                rec[f"block{i}_train_error"] = 100.0 * (1 - acc["correct"] / n)
            if eval_res["exit_errors"][i] is not None:
                rec[f"block{i}_test_error"] = eval_res["exit_errors"][i]
        return rec

    def block_losses(self) -> tuple:
        """The per-block losses the rule has (none for backprop, fa, frc-*)."""
        rule = self.model.rule
        return tuple(k for k, on in (("loss_pred", rule.pred), ("loss_sim", rule.sim)) if on)

    def _print_epoch(self, rec: dict) -> None:
        lines = [f"Train epoch={rec['epoch']}, lr={rec['lr']:.2e}, "
                 f"loss_global={rec['train_loss_global']:.4f}, error={rec['train_error']:.3f}%, "
                 f"steps={rec['steps']}, wall={hms(rec['wall_s'])}"]
        applies = self.block_losses()
        for i, b in enumerate(self.model.spec.blocks):
            s = f"  {b.name} ({b.kind} {b.n_in}->{b.n_out}):" + ",".join(
                f" {k}={rec[f'block{i}_{k}']:.4f}" for k in applies)
            if f"block{i}_train_error" in rec:
                s += f", train_error={rec[f'block{i}_train_error']:.3f}%"
            if f"block{i}_test_error" in rec:
                s += f", {rec['eval_split']}_error={rec[f'block{i}_test_error']:.3f}%"
            lines.append(s)
        lines.append(f"{rec['eval_split'].capitalize()} loss_global={rec['test_loss']:.4f}, "
                     f"error={rec['test_error']:.3f}%")
        if getattr(self, "clock", None) is not None:
            c = self.clock
            lines.append(f"Time: epoch {hms(c.epoch_s)}, run {hms(c.elapsed())} elapsed, "
                         f"{hms(c.remaining(rec['epoch'] + 1))} left "
                         f"(step {c.step:,} of {c.total_steps:,})")
        text = "\n".join(lines)
        self.log(text)
        with open(os.path.join(self.out_dir, TEXT_LOG), "a") as f:
            f.write(text + "\n")

    def run(self) -> dict:
        """Train until ``cfg.epochs`` (or ``cfg.max_steps``); return the last record."""
        cfg = self.cfg
        self.t0 = time.time()
        with open(os.path.join(self.out_dir, TEXT_LOG), "a") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed' if self.step else 'started'}: "
                    f"{self.command or '(no command recorded)'}; commit {git_commit()}; "
                    f"{machine_description(self.xp)}; {self.precision}\n")
        last_save = time.time()
        self._check_params()  # for the guards' messages (see _cause)
        stop = self._stop = {"flag": False}
        self._lock.acquire()
        # SIGINT, SIGTERM, SIGHUP set the flag; the loop checkpoints and stops
        signals = stop_on_signals(stop)
        signals.__enter__()
        try:
            while self.epoch <= cfg.epochs:
                lr = optim.lr_at_epoch(self.epoch, cfg.lr, cfg.lr_decay_milestones,
                                       cfg.lr_decay_fact)
                if not (lr > 0 and math.isfinite(lr)):
                    raise TrainingDiverged(f"the learning rate of epoch {self.epoch} is {lr} "
                                           "(it must stay positive); check --lr-decay-fact and "
                                           f"--lr-decay-milestones. {self.kept_checkpoint()}")
                nb = self.data.batches_per_epoch
                clock = self._clock(nb)
                bar = Bar(clock.steps_in_epoch(self.epoch), f"epoch {self.epoch}/{clock.last_epoch}",
                          unit="step", initial=self.batch, enabled=self.show_progress)
                clock.epoch_t0 = time.time()
                for xb, yb in self.data.train_batches(self.epoch, self.batch):
                    self._train_batch(xb, yb, lr)
                    self.batch += 1
                    self.step += 1
                    if time.time() - self._last_read >= REPORT_EVERY_S:
                        self.read_stats()  # the progress line's loss, and the guards
                    out = self._partial.get(self.model.spec.out_name, {})
                    n = max(self._partial.get("_n", 1), 1)
                    clock.stepped()
                    bar.update(1, clock.postfix(self.epoch, out.get("loss_global", 0.0) / n))
                    line = clock.estimate_line()
                    if line:
                        (bar.write if bar.tty and self.show_progress else self.log)(line)
                    if self.on_step is not None:
                        self.on_step(self)
                    hit_max = cfg.max_steps and self.step >= cfg.max_steps
                    every = (self.early_checkpoint_s if self.epoch == 1 and not self._saved
                             else self.checkpoint_every_s)  # an early first checkpoint
                    due = time.time() - last_save > every
                    if stop["flag"] or ((hit_max or due) and self.batch < nb):
                        self.save()  # batch == nb resumes straight into the epoch's evaluation
                        last_save = time.time()
                    if stop["flag"]:
                        bar.close()
                        raise Interrupted(f"interrupted at epoch {self.epoch}, batch {self.batch} "
                                          f"({describe(stop)}); "
                                          f"checkpoint written to {self.out_dir}; continue with "
                                          f"`bioplaus train --out {self.out_dir} --resume`")
                    if hit_max and self.batch < nb:
                        bar.close()
                        return self._finish_partial(lr)
                bar.close()
                self.read_stats()  # a diverged epoch is not evaluated
                ev = self._evaluate()
                clock.epoch_s = time.time() - clock.epoch_t0
                rec = self._epoch_record(lr, ev, self.wall_before + time.time() - self.t0)
                self.history.append(rec)
                self._print_epoch(rec)
                self.epoch += 1
                self.batch = 0
                self.partial = {}
                self.save()
                last_save = time.time()
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
            return self.history[-1] if self.history else {}
        finally:
            signals.__exit__(None, None, None)
            self._lock.release()

    def _finish_partial(self, lr) -> dict:
        """--max-steps stopped mid-epoch: evaluate and report (not added to history)."""
        self.read_stats()
        ev = self._evaluate()
        self.clock.epoch_s = time.time() - self.clock.epoch_t0
        rec = self._epoch_record(lr, ev, self.wall_before + time.time() - self.t0)
        rec["partial_epoch"] = True
        self._print_epoch(rec)
        self.partial_record = rec  # kept in log.h5's meta (plot shows it), not in its history
        self.save()
        return rec

    # --------------------------------------------------------- progress hooks
    def _clock(self, steps_per_epoch: int) -> RunClock:
        if getattr(self, "clock", None) is None:
            self.clock = RunClock(epochs=self.cfg.epochs, steps_per_epoch=steps_per_epoch,
                                  max_steps=self.cfg.max_steps, step=self.step,
                                  wall_before=self.wall_before)
        return self.clock

    def _evaluate(self) -> dict:
        """The evaluation under a progress bar; Ctrl-C ends it (checkpoint kept:
        --resume evaluates the epoch again)."""
        stop = getattr(self, "_stop", {"flag": False})
        t = time.time()
        batches = wrap(self.data.eval_batches(), len(self.data.eval_loader),
                       f"evaluating epoch {self.epoch} ({self.data.eval_split} set)", unit="batch",
                       enabled=self.show_progress, stop=lambda: stop["flag"])
        ev = evaluate(self.model, batches, self.data.eval_split)
        if stop["flag"]:
            self.save()
            raise Interrupted(f"interrupted during the evaluation of epoch {self.epoch} (its "
                              f"training is done; {describe(stop)}); checkpoint written to {self.out_dir}; "
                              "--resume evaluates it again and goes on")
        if getattr(self, "clock", None) is not None:
            self.clock.evaluated(time.time() - t)
        return ev

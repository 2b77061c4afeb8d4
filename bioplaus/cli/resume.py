"""A run directory's life on the command line: resumed from its own
configuration, never overwritten by accident.

* ``train --out DIR --resume`` takes the configuration from ``DIR/checkpoint.h5``.
  Only options typed on this command line (click's parameter source) or set
  by a ``--recipe`` given here are compared with it; one that contradicts the
  run is refused, all of them in one message. Options that do not change the
  results (``--epochs``, ``--max-steps``, ``--device``, ``--data-dir``) may be
  given to go on differently.
* ``train --out DIR`` without ``--resume`` refuses a directory that holds a
  run (a log, a checkpoint, a printed log) unless ``--overwrite`` is given,
  which deletes that run's files first.
"""
from __future__ import annotations

import os

import click
from click.core import ParameterSource

from bioplaus.config import RESUME_IGNORED, Config

# The files a run writes into its directory (bioplaus.train and bioplaus.plot).
RUN_FILES = ("checkpoint.h5", "checkpoint.prev.h5", "log.h5", "train.log", "errors.png",
             "exits.png")


def explicit_options(ctx: click.Context, names) -> set[str]:
    """The parameters among ``names`` given on the command line (or through
    the environment), not left at their defaults."""
    given = set()
    for name in names:
        src = ctx.get_parameter_source(name)
        if src in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            given.add(name)
    return given


def guard_new_run(out_dir: str, overwrite: bool, echo=click.echo) -> None:
    """Refuse a directory that holds a run, unless ``overwrite`` (then delete its files)."""
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(out_dir, f))]
    if not found:
        return
    if not overwrite:
        resumable = "checkpoint.h5" in found or "checkpoint.prev.h5" in found
        raise click.ClickException(
            f"{out_dir} already holds a run ({', '.join(found)}); refusing to overwrite it. "
            + ("Continue it with `bioplaus train --out " + out_dir + " --resume`, r"
               if resumable else "R")
            + "eplace it with --overwrite (deletes those files), or choose another --out")
    for f in found:
        os.remove(os.path.join(out_dir, f))
    echo(f"--overwrite: removed the earlier run's {', '.join(found)} from {out_dir}")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def resume_config(out_dir: str, given: dict, explicit: set[str]) -> Config:
    """The checkpoint's configuration, with the result-neutral options of
    ``explicit`` taken from ``given``; the others must agree with the run."""
    from bioplaus.io import CheckpointError, prev_path, read_checkpoint_header

    ckpt = os.path.join(out_dir, "checkpoint.h5")
    if not os.path.exists(ckpt) and not os.path.exists(prev_path(ckpt)):
        if os.path.exists(os.path.join(out_dir, "log.h5")):
            raise click.ClickException(
                f"--resume: {out_dir} holds a run log but no checkpoint.h5 (recorded runs keep "
                "only their log), so there is nothing to continue from")
        raise click.ClickException(f"--resume: {ckpt}: no such file (nothing to resume; "
                                   "leave out --resume to start a run there)")
    ck, errors = None, []
    for path in (ckpt, prev_path(ckpt)):  # the newest, else the one before it (as train does)
        if os.path.exists(path):
            try:
                ck = read_checkpoint_header(path)  # the configuration and position only
                break
            except CheckpointError as exc:
                errors.append(str(exc))
    if ck is None:
        raise click.ClickException("; ".join(errors))
    run = Config.from_dict(ck["config"]).to_dict()  # the same types as ``given``
    conflicts = [f"{_flag(k)} {given[k]!r} (the run: {run.get(k)!r})"
                 for k in sorted(explicit) if k not in RESUME_IGNORED and given[k] != run.get(k)]
    if conflicts:
        raise click.ClickException(
            f"--resume continues the run in {out_dir} with the configuration it was started "
            f"with, and these options contradict it: {'; '.join(conflicts)}. Leave them out "
            "to resume, or start a new run in another --out")
    cfg = Config.from_dict({**run, **{k: given[k] for k in explicit if k in RESUME_IGNORED}})
    if ck["epoch"] > cfg.epochs:
        raise click.ClickException(
            f"--resume: the run in {out_dir} has finished its {cfg.epochs} epochs; pass a larger "
            "--epochs to train it longer")
    if cfg.max_steps and ck["step"] >= cfg.max_steps:
        raise click.ClickException(
            f"--resume: the run in {out_dir} stopped at its --max-steps {cfg.max_steps} (step "
            f"{ck['step']}); pass a larger --max-steps, or --max-steps 0 for no limit")
    return cfg

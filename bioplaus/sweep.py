"""Sweeps: recipes x seeds x overrides, each run a Ray task training into its own directory.

A sweep is a list of ordinary training runs. Each one is the same
:class:`~bioplaus.train.Trainer` that ``bioplaus train`` uses, writing into
``OUT/<cell>/seed<k>/`` (``<cell>`` is the recipe's file name, plus
``+key=value`` for every ``--set`` key given more than one value), so each
run directory is a resumable run like any other: a directory holding a
finished run is skipped, an unfinished one resumes from its checkpoint
(exactly: see :mod:`bioplaus.train`).

Ray does the placement, the resource accounting (``num_cpus`` /
``num_gpus`` per task, fractional GPUs allowed) and the retries: a task
whose worker process or node dies is started again (``max_retries``), and
the new attempt resumes from the run's last checkpoint. The driver only
starts the tasks, polls ``ray.wait`` and shows what the runs report in
their directories (``progress.json``, written by the task). Ctrl-C on the
driver (or SIGTERM, or SIGHUP) cancels every task; Ray delivers it to
the task as SIGINT, which the trainer answers by writing a checkpoint and
stopping.

Each cell directory holds ``cell.json`` (the recipe, the overrides, the
paper's number), which :func:`aggregate` reads to give the mean, standard
deviation and count of the final test error over seeds
(:mod:`bioplaus.sweep_results`). The task's side, :func:`train_run` and
:func:`run_state`, is :mod:`bioplaus.sweep_task`.

Ray is optional (``pip install 'bioplaus[cluster]'``): this module imports
it only inside the functions that need it.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
import tomllib

from bioplaus.config import Config, ConfigError, validate
from bioplaus.recipes import load_recipe
from bioplaus.signals import describe, interrupt_on_signals
from bioplaus.sweep_task import (CHECKPOINT, PROGRESS, _read_json, _write_json,  # noqa: F401
                                 kept_message, run_state, train_run)

CELL = "cell.json"
INSTALL_HINT = "pip install 'bioplaus[cluster]'"
BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BIOPLAUS_NUM_THREADS")


class SweepError(ValueError):
    """A sweep that cannot start as asked; the message names the option, file or value."""


class SweepInterrupted(RuntimeError):
    """Ctrl-C on the driver: every run was asked to stop with a checkpoint."""

    def __init__(self, message, rows):
        super().__init__(message)
        self.rows = rows


@dataclasses.dataclass(frozen=True)
class Run:
    cell: str        # OUT/<cell>/...
    seed: int
    run_dir: str     # OUT/<cell>/seed<k>, absolute
    config: dict     # the Config as a dict, seed included
    recipe: str      # the recipe file, absolute
    paper: dict      # the recipe's [paper] table

    @property
    def name(self) -> str:
        return f"{self.cell}/seed{self.seed}"


def require_ray():
    """The ``ray`` module, or a SweepError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError("bioplaus sweep needs Ray, which is not installed; install it with "
                         f"{INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------- the plan
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _value(key: str, text: str):
    """A ``--set`` value: TOML (10, 5e-4, true, [5, 7]) or else a plain string."""
    try:
        val = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        val = text
    if isinstance(_FIELDS[key].default, tuple) and isinstance(val, int):
        val = [val]
    if isinstance(_FIELDS[key].default, tuple) and isinstance(val, str):
        try:
            val = [int(t) for t in val.split(",") if t.strip()]
        except ValueError:
            raise SweepError(f"--set {key}={text}: expected comma-separated integers, "
                             "e.g. 100,150,175") from None
    return val


def parse_sets(items) -> dict[str, list]:
    """``--set key=value`` options -> {Config field: [values]}; a key given more
    than once is an axis of the sweep (each value a cell of its own)."""
    out: dict[str, list] = {}
    for item in items or ():
        key, eq, text = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise SweepError(f"--set {item!r}: expected key=value, e.g. --set epochs=20")
        if key == "seed":
            raise SweepError("--set seed=...: give the seeds with --seeds (e.g. --seeds 0-4)")
        if key not in _FIELDS or key == "extra":
            raise SweepError(f"--set {item!r}: unknown key {key!r}; known keys: "
                             + ", ".join(k for k in sorted(_FIELDS) if k not in ("extra", "seed")))
        val = _value(key, text.strip())
        if val not in out.setdefault(key, []):
            out[key].append(val)
    return out


def _fmt(v) -> str:
    return ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def check_config(d: dict) -> Config:
    """The Config of a run, checked as ``bioplaus train`` checks it (before Ray starts)."""
    from bioplaus.rules.registry import RULES
    from bioplaus.train import check_rule_options

    cfg = Config.from_dict(d)
    validate(cfg)
    if cfg.rule not in RULES:
        raise ConfigError(f"unknown rule {cfg.rule!r}; known rules: {', '.join(RULES)}")
    check_rule_options(cfg)
    return cfg


def expand(recipes, seeds=None, sets=None, out="out/sweep", gpus_per_run: float = 0) -> list[Run]:
    """Every run of the sweep: recipes x values of the ``--set`` axes x seeds.

    ``seeds`` None keeps each recipe's own seed. With ``gpus_per_run`` > 0
    the runs train on the GPU unless ``--set device=...`` says otherwise.
    """
    sets = dict(sets or {})
    axes = {k: v for k, v in sets.items() if len(v) > 1}
    fixed = {k: v[0] for k, v in sets.items() if len(v) == 1}
    if gpus_per_run and "device" not in sets:
        fixed["device"] = "gpu"
    out = os.path.abspath(out)
    runs, owner = [], {}
    for path in recipes:
        rec = load_recipe(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in owner and owner[stem] != os.path.abspath(path):
            raise SweepError(f"recipes {owner[stem]} and {path} have the same name {stem!r}, and "
                             "so the same run directories; run them as two sweeps with different "
                             "--out")
        owner[stem] = os.path.abspath(path)
        for combo in itertools.product(*axes.values()):
            picked = dict(zip(axes, combo))
            cell = stem + "".join(f"+{k}={_fmt(v)}" for k, v in picked.items())
            base = {**rec.config, **fixed, **picked}
            for seed in (seeds if seeds is not None else [base.get("seed", Config.seed)]):
                d = {**base, "seed": int(seed)}
                try:
                    check_config(d)
                except (ConfigError, TypeError, ValueError) as exc:
                    raise SweepError(f"{path} with {_fmt_sets(fixed, picked)}: {exc}") from None
                runs.append(Run(cell, int(seed), os.path.join(out, cell, f"seed{seed}"),
                                Config.from_dict(d).to_dict(), os.path.abspath(path),
                                dict(rec.paper)))
    if not runs:
        raise SweepError("nothing to run: give at least one recipe")
    return runs


def _fmt_sets(fixed, picked) -> str:
    both = {**fixed, **picked}
    return " ".join(f"--set {k}={_fmt(v)}" for k, v in both.items()) or "no --set"


def write_cells(runs: list[Run]) -> None:
    """``OUT/<cell>/cell.json`` for every cell; refuses a directory that holds another cell."""
    seen = {}
    for r in runs:
        cfg = {k: v for k, v in r.config.items() if k != "seed"}
        seen.setdefault(os.path.dirname(r.run_dir), (r, cfg))
    for cell_dir, (r, cfg) in seen.items():
        path = os.path.join(cell_dir, CELL)
        doc = {"cell": r.cell, "recipe": r.recipe, "paper": r.paper, "config": cfg}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    old = json.load(f)
            except (OSError, ValueError) as exc:
                raise SweepError(f"{path}: not a readable cell file ({exc}); move it away or "
                                 "choose another --out") from None
            if old.get("config") != cfg:
                from bioplaus.config import differences
                diff = differences(Config.from_dict({**old.get("config", {}), "seed": 0}),
                                   Config.from_dict({**cfg, "seed": 0}), ignore=())
                if not diff:  # written before a key was added; that key is at its default
                    continue
                raise SweepError(f"{path} belongs to a sweep with another configuration; choose "
                                 "another --out. Differences:\n  " + "\n  ".join(diff))
            continue
        os.makedirs(cell_dir, exist_ok=True)
        _write_json(path, doc)


# ------------------------------------------------------------- the driver
def start_ray(address: str | None = None, num_cpus: int | None = None,
              num_gpus: float | None = None):
    """Connect to the cluster at ``address``, or start a local Ray on this machine."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if address:
        ray.init(address=address, **kw)
    else:
        # the workers of a local Ray import the same bioplaus as this driver
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
                 runtime_env={"env_vars": {"PYTHONPATH": path}}, **kw)
    return ray


def blas_env(cpus_per_run: float) -> dict:
    """One BLAS (and bioplaus host) thread per CPU a run holds."""
    n = str(max(1, int(cpus_per_run)))
    return {var: n for var in BLAS_ENV}


def _task_error(exc) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


class _Quiet:
    def update(self, infos):
        pass

    def note(self, text):
        pass


def run_sweep(runs: list[Run], *, cpus_per_run: float = 1, gpus_per_run: float = 0,
              max_retries: int = 3, checkpoint_every_s: float = 300.0, poll_s: float = 1.0,
              progress_every_s: float = 1.0, command: str = "bioplaus sweep", display=None, on_poll=None,
              stop_timeout_s: float = 300.0) -> list[dict]:
    """Run every unfinished run as a Ray task (Ray must be started: :func:`start_ray`).

    Returns one row per run (``run``, ``state``, ``epochs``, ``test_error``,
    ``wall_s``, ``message``). After every poll ``display.update(infos)`` and
    ``on_poll(infos)`` are called with ``{run_dir: progress dict}`` (what the
    runs wrote into their ``progress.json``, at most every ``progress_every_s``
    seconds); ``display.note(text)`` says what the driver does. Ctrl-C (KeyboardInterrupt),
    SIGTERM or SIGHUP cancels the tasks, waits up to ``stop_timeout_s`` for their checkpoints and raises
    :class:`SweepInterrupted`.
    """
    from bioplaus.runinfo import git_commit

    ray = require_ray()
    write_cells(runs)
    display = display or _Quiet()
    infos, refs = {}, {}
    env = {**blas_env(cpus_per_run), "BIOPLAUS_COMMIT": git_commit()}
    task = ray.remote(train_run).options(
        num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries,
        retry_exceptions=False, runtime_env={"env_vars": env}, name="bioplaus-run")
    for r in runs:
        state, ck = run_state(r.run_dir, r.config)
        if state == "finished":
            last = ck["history"][-1] if ck["history"] else {}
            infos[r.run_dir] = {"state": "skipped", "epoch": len(ck["history"]),
                                "test_error": last.get("test_error")}
            continue
        if state == "no checkpoint":
            infos[r.run_dir] = {"state": "kept", "epoch": len(ck["history"]),
                                "message": kept_message(r.run_dir, r.config, ck)}
            continue
        infos[r.run_dir] = {"state": "queued" if state == "new" else "queued (resume)"}
        cmd = f"{command}  [run {r.name}]"
        refs[task.remote(r.config, r.run_dir, cmd, checkpoint_every_s, progress_every_s)] = r
    pending = list(refs)
    results = {}

    def poll(timeout):
        nonlocal pending
        if pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        else:
            done = []
        for ref in done:
            r = refs[ref]
            try:
                results[r.run_dir] = ray.get(ref)
            except (ray.exceptions.TaskCancelledError,) as exc:
                results[r.run_dir] = {"state": "cancelled", "message": _task_error(exc)}
            except ray.exceptions.RayError as exc:
                results[r.run_dir] = {"state": "failed", "message": _task_error(exc)}
        for r in runs:
            if infos[r.run_dir].get("state") == "skipped":
                continue
            doc = _read_json(os.path.join(r.run_dir, PROGRESS))
            if doc is not None and doc.get("time", 0) >= t_start:
                infos[r.run_dir] = doc
            res = results.get(r.run_dir)
            if res is not None and res["state"] in ("failed", "cancelled", "locked") and (
                    infos[r.run_dir].get("state") not in ("interrupted",)):
                infos[r.run_dir] = {**infos[r.run_dir], **res}
        display.update(infos)
        if on_poll is not None:
            on_poll(infos)

    t_start = time.time() - 1.0
    display.update(infos)
    stop = {}
    with interrupt_on_signals(stop):
        try:
            while pending:
                poll(poll_s)
        except KeyboardInterrupt:
            display.note(f"{describe(stop)}: stopping every run; each writes its checkpoint "
                         "(Ctrl-C or SIGTERM again kills them without one)")
            for ref in pending:
                ray.cancel(ref)
            try:
                t0 = time.time()
                while pending and time.time() - t0 < stop_timeout_s:
                    poll(poll_s)
            except KeyboardInterrupt:
                for ref in pending:
                    ray.cancel(ref, force=True)
        else:
            return final_rows(runs, infos)
    raise SweepInterrupted("sweep interrupted: the runs stopped with their checkpoints "
                           "written; run the same command again to resume them",
                           final_rows(runs, infos))


def final_rows(runs, infos) -> list[dict]:
    rows = []
    for r in runs:
        info = infos.get(r.run_dir, {})
        state, ck = run_state(r.run_dir, r.config)
        rec = (info.get("record") or {}) if info.get("state") == "finished" else {}
        hist = ck["history"] if ck else []
        last = rec or (hist[-1] if hist else {})
        rows.append({"run": r.name, "cell": r.cell, "seed": r.seed, "run_dir": r.run_dir,
                     "state": info.get("state", state), "finished": state == "finished",
                     "epochs": f"{len(hist)}/{r.config['epochs']}",
                     "test_error": last.get("test_error"), "wall_s": last.get("wall_s"),
                     "split": "val" if r.config.get("val_size") else "test",
                     "message": info.get("message", "")})
    return rows


# results over seeds (bioplaus/sweep_results.py, which reads CELL and SweepError from here)
from bioplaus.sweep_results import aggregate, render_aggregate, sweep_results_cli  # noqa: E402,F401

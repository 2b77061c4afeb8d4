"""One run of a sweep, the body of its Ray task (:func:`train_run`), and what
the driver reads of a run directory: its state (:func:`run_state`, from the
checkpoint's header) and the ``progress.json`` the task writes as it trains."""
from __future__ import annotations

import json
import os
import socket
import time

from bioplaus.config import Config

PROGRESS = "progress.json"
CHECKPOINT = "checkpoint.h5"
LOG = "log.h5"


def _write_json(path: str, doc: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------- run states
def run_state(run_dir: str, config: dict) -> tuple[str, dict | None]:
    """``("new" | "unfinished" | "finished" | "no checkpoint" | "damaged", header or None)``.

    Finished: the checkpoint is past the last epoch, or at ``max_steps``.
    Only the checkpoint's header is read (position, config, log); where the
    newest checkpoint is unusable the previous one is read, as a resume
    would. Damaged: neither can be read (the run's own resume says why).

    A directory with ``log.h5`` but no checkpoint holds a run that was kept
    without it (``runs/`` commits no checkpoint): finished if its log has
    every epoch (the header is then ``{"history": the log's records}``), else
    "no checkpoint": it cannot resume, and must not be trained afresh over its log.
    """
    from bioplaus.io import (CheckpointError, load_log, load_run_checkpoint, prev_path,
                             read_checkpoint_header)

    path = os.path.join(run_dir, CHECKPOINT)
    max_steps = int(config.get("max_steps") or 0)
    if not (os.path.lexists(path) or os.path.lexists(prev_path(path))):
        log = os.path.join(run_dir, LOG)
        if not os.path.lexists(log):
            return "new", None
        try:
            hist = load_log(log)["records"]
        except CheckpointError:
            return "damaged", None
        steps = hist[-1].get("steps", 0) if hist else 0
        done = len(hist) >= int(config["epochs"]) or (max_steps and steps >= max_steps)
        return ("finished" if done else "no checkpoint"), {"history": hist}
    try:
        ck, _ = load_run_checkpoint(path, loader=read_checkpoint_header, log=lambda *a: None)
    except CheckpointError:
        return "damaged", None
    if ck["epoch"] > int(config["epochs"]) or (max_steps and ck["step"] >= max_steps):
        return "finished", ck
    return "unfinished", ck


def kept_message(run_dir: str, config: dict, ck: dict) -> str:
    """Why a "no checkpoint" run is left as it is, and what to do."""
    prog = _read_json(os.path.join(run_dir, PROGRESS)) or {}
    why = " It diverged (see its train.log)." if prog.get("state") == "diverged" else ""
    return (f"{run_dir} holds a run's log ({len(ck['history'])} of {config['epochs']} epochs) "
            f"but no checkpoint, so it cannot resume; it is kept as it is.{why} To train it "
            "again, move its files away (or sweep into another --out)")


# ------------------------------------------------------------- the task
class _Reporter:
    """Writes the run's ``progress.json`` (atomically, at most once every ``every_s`` seconds)."""

    def __init__(self, run_dir: str, epochs: int, attempt: int, every_s: float = 1.0):
        self.path = os.path.join(run_dir, PROGRESS)
        self.base = {"pid": os.getpid(), "node": socket.gethostname(), "attempt": attempt,
                     "epochs": epochs}
        self.every_s = every_s
        self.last = 0.0
        self.doc = {}

    def write(self, state: str, **kw) -> None:
        self.doc = {**self.base, **self.doc, **kw, "state": state, "time": time.time()}
        _write_json(self.path, self.doc)
        self.last = time.time()

    def from_trainer(self, tr) -> dict:
        part = tr.partial.get(tr.model.spec.out_name, {})
        n = tr.partial.get("_n", 0)
        return {"epoch": tr.epoch, "batch": tr.batch, "batches": tr.data.batches_per_epoch,
                "step": tr.step,
                "test_error": tr.history[-1]["test_error"] if tr.history else None,
                "train_error": 100.0 * (1 - part["correct"] / n) if n and "correct" in part else None}

    def on_step(self, tr) -> None:
        if time.time() - self.last >= self.every_s:
            self.write("running", **self.from_trainer(tr))


def train_run(config: dict, run_dir: str, command: str = "",
              checkpoint_every_s: float = 300.0, progress_every_s: float = 1.0) -> dict:
    """One run of a sweep (the body of its Ray task): train, or resume, into ``run_dir``.

    Returns ``{"state": "finished" | "interrupted" | "diverged" | "locked" | "kept", ...}``;
    "kept": a run's log without its checkpoint (:func:`run_state`), left untouched;
    "locked": another process (another sweep, a ``bioplaus train``) holds the
    run directory, which is then left untouched. Other errors propagate (Ray
    reports them as the task's failure).
    """
    from bioplaus.runlock import RunLocked
    from bioplaus.train import Interrupted, Trainer, TrainingDiverged

    cfg = Config.from_dict(config)
    state, ck = run_state(run_dir, config)
    if state == "finished":
        return {"state": "finished", "record": None}
    if state == "no checkpoint":
        return {"state": "kept", "record": None, "message": kept_message(run_dir, config, ck)}
    prev = _read_json(os.path.join(run_dir, PROGRESS)) or {}
    rep = _Reporter(run_dir, cfg.epochs, attempt=int(prev.get("attempt", 0)) + 1,
                    every_s=progress_every_s)
    tr = None
    try:
        # the trainer takes the run directory's lock: nothing is written here before it
        tr = Trainer(cfg, run_dir, resume=state != "new", log=lambda *a: None, progress=False,
                     checkpoint_every_s=checkpoint_every_s, on_step=rep.on_step, command=command)
        rep.write("running", **rep.from_trainer(tr))
        rec = tr.run()
    except RunLocked as exc:
        if tr is not None:
            raise
        return {"state": "locked", "record": None, "message": str(exc)}
    except Interrupted as exc:
        rep.write("interrupted", message=str(exc), **rep.from_trainer(tr))
        return {"state": "interrupted", "record": None}
    except TrainingDiverged as exc:
        rep.write("diverged", message=str(exc))
        return {"state": "diverged", "record": None}
    except KeyboardInterrupt:
        if tr is not None:
            rep.write("interrupted", message="KeyboardInterrupt outside a training step: no checkpoint written")
        raise
    except Exception as exc:
        rep.write("failed", message=f"{type(exc).__name__}: {exc}")
        raise
    rep.write("finished", record=rec, **rep.from_trainer(tr))
    return {"state": "finished", "record": rec}

"""One writer per run directory."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from bioplaus.config import Config
from bioplaus.io import CheckpointError, load_checkpoint
from bioplaus.runlock import RunLock, RunLocked
from bioplaus.train import Trainer
from tests.ckpt_helpers import TINY, quiet
from tests.run_helpers import start_train, wait_for


def test_a_second_train_on_one_out_is_refused_and_the_first_is_unharmed(tmp_path):
    out = tmp_path / "run"
    first = start_train(out, "--checkpoint-every", "1000")
    try:
        assert wait_for(lambda: (out / "checkpoint.h5").exists(), proc=first), first.stdout.read()
        cfg = Config(**{**TINY, "epochs": 2000, "lr_decay_milestones": (1000,)})
        for resume in (True, False):
            with pytest.raises(RunLocked, match=rf"in use by another bioplaus train: process "
                                                rf"{first.pid} on {socket.gethostname()}"):
                Trainer(cfg, str(out), resume=resume, progress=False, log=quiet)
        assert first.poll() is None  # still training
    finally:
        first.send_signal(signal.SIGTERM)
        text = first.communicate(timeout=60)[0]
    assert first.returncode == 130 and "Traceback" not in text, text
    assert load_checkpoint(out / "checkpoint.h5")["step"] > 0
    assert not (out / ".lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(f"{dead.pid} {socket.gethostname()} 2026-01-01T00:00:00\n")
    said = []
    with RunLock(folder, log=said.append):
        assert (folder / ".lock").read_text().split()[0] == str(os.getpid())
    assert "no longer running" in said[0] and str(dead.pid) in said[0]
    assert not (folder / ".lock").exists()


def test_a_live_or_foreign_lock_is_refused_and_never_removed(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    text = f"{os.getppid()} {socket.gethostname()} x\n"  # a live process, not us
    (folder / ".lock").write_text(text)
    with pytest.raises(RunLocked) as exc:
        RunLock(folder).acquire()
    assert isinstance(exc.value, CheckpointError) and f"process {os.getppid()}" in str(exc.value)
    (folder / ".lock").write_text("1 some-other-host x\n")
    with pytest.raises(RunLocked, match="on some-other-host"):
        RunLock(folder).acquire()
    (folder / ".lock").write_text("garbage")
    with pytest.raises(RunLocked, match="cannot be read"):
        RunLock(folder).acquire()
    assert (folder / ".lock").read_text() == "garbage"


def test_a_second_writer_in_the_same_process_is_refused(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match="in use by another run of this process"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released: free again
        pass

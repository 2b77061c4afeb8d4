"""SIGTERM and SIGHUP do what Ctrl-C does; an early first checkpoint."""
import os
import signal
import time

import numpy as np
import pytest

from bioplaus.config import Config
from bioplaus.io import load_checkpoint
from bioplaus.train import Interrupted, Trainer
from tests.ckpt_helpers import TINY, quiet
from tests.run_helpers import start_train, wait_for

CFG = Config(**{**TINY, "epochs": 2000, "lr_decay_milestones": (1000,)})


def test_sigterm_writes_a_checkpoint_exits_cleanly_and_resume_is_exact(tmp_path):
    out = tmp_path / "run"
    proc = start_train(out, "--checkpoint-every", "1000")
    assert wait_for(lambda: (out / "checkpoint.h5").exists(), proc=proc), proc.stdout.read()
    time.sleep(1.0)  # some steps past the first checkpoint (fewer on a loaded machine)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    assert "(SIGTERM)" in text and "--resume" in text and "Traceback" not in text
    s = load_checkpoint(out / "checkpoint.h5")["step"]
    assert s >= 1  # the checkpoint is the interrupted step's, not the run's first
    # the uninterrupted run, watched at step s and s + 6
    snaps = {}

    def snap(tr):
        if tr.step in (s, s + 6):
            snaps[tr.step] = {k: np.array(v) for k, v in tr.model.params.items()}
    Trainer(CFG.replace(max_steps=s + 6), str(tmp_path / "full"), progress=False, log=quiet,
            on_step=snap).run()
    ck = load_checkpoint(out / "checkpoint.h5")
    for k, v in snaps[s].items():
        np.testing.assert_array_equal(ck["params"][k], v, err_msg=k)
    tr = Trainer(CFG.replace(max_steps=s + 6), str(out), resume=True, progress=False, log=quiet)
    tr.run()
    for k, v in snaps[s + 6].items():
        np.testing.assert_array_equal(tr.model.params[k], v, err_msg=k)


def test_sighup_stops_like_ctrl_c_and_the_handlers_are_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)

    def hang_up(tr):
        if tr.step == 3:
            os.kill(os.getpid(), signal.SIGHUP)
    tr = Trainer(CFG, str(tmp_path / "r"), progress=False, log=quiet, on_step=hang_up)
    with pytest.raises(Interrupted, match=r"interrupted at epoch 1, batch 3 \(SIGHUP\)"):
        tr.run()
    assert load_checkpoint(tmp_path / "r" / "checkpoint.h5")["step"] == 3
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)) == before
    assert not (tmp_path / "r" / ".lock").exists()


def test_an_early_checkpoint_comes_in_the_first_epoch(tmp_path):
    seen = []

    def look(tr):
        p = tmp_path / "r" / "checkpoint.h5"
        seen.append(load_checkpoint(p)["step"] if p.exists() else None)
        if tr.step == 3:
            raise KeyboardInterrupt  # a hard stop: no checkpoint of its own
    tr = Trainer(CFG, str(tmp_path / "r"), progress=False, log=quiet, on_step=look,
                 checkpoint_every_s=3600)
    assert tr.early_checkpoint_s == 60.0
    tr.early_checkpoint_s = 0.0  # "the first interval" made immediate for the test
    with pytest.raises(KeyboardInterrupt):
        tr.run()
    assert seen == [None, 1, 1]  # one early checkpoint after step 1, then the hour's interval

"""`bioplaus train` as a researcher uses it: resume by directory, recorded
runs never overwritten, evaluation with progress and Ctrl-C, honest ETA."""
import os
import re
import signal

import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.io import load_log

# 640 examples / batch 128: 5 steps per epoch; 256 test examples
TINY = ["--net", "mlp", "--num-layers", "2", "--num-hidden", "16", "--train-subset", "640",
        "--test-subset", "256", "--batch-size", "128"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    return CliRunner().invoke(main, ["train", *args])


def _errors(out):
    return [r["test_error"] for r in load_log(os.path.join(out, "log.h5"))["records"]]


def test_resume_by_directory_takes_the_configuration_from_the_checkpoint(tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    opts = [*TINY, "--rule", "predsim", "--epochs", "2", "--lr", "1e-3", "--no-progress"]
    assert _run(*opts, "--out", full).exit_code == 0
    res = _run(*opts, "--out", cut, "--max-steps", "3")
    assert res.exit_code == 0, res.output
    res = _run("--out", cut, "--resume", "--max-steps", "0", "--no-progress")  # nothing else typed
    assert res.exit_code == 0, res.output
    assert "resumed" in res.output and "epoch 2" in res.output
    assert _errors(cut) == _errors(full)  # the same run, bit for bit
    # an option typed again with the run's value is fine; one that contradicts it is refused
    res = _run("--out", cut, "--resume", "--rule", "predsim", "--epochs", "3", "--no-progress")
    assert res.exit_code == 0, res.output
    assert len(_errors(cut)) == 3
    res = _run("--out", cut, "--resume", "--epochs", "4", "--net", "vgg8b", "--lr", "0.1")
    assert res.exit_code == 1
    msg = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(msg) == 1 and msg[0].startswith("Error: --resume continues the run in")
    assert "--net 'vgg8b' (the run: 'mlp')" in msg[0] and "--lr 0.1 (the run: 0.001)" in msg[0]
    assert "--epochs" not in msg[0]  # may change
    res = _run("--out", cut, "--resume")
    assert res.exit_code == 1 and "has finished its 3 epochs; pass a larger --epochs" in res.output
    res = _run("--out", str(tmp_path / "none"), "--resume")
    assert res.exit_code == 1 and "nothing to resume" in res.output


def test_a_directory_holding_a_run_is_never_overwritten_without_overwrite(tmp_path):
    out = tmp_path / "rec"
    opts = [*TINY, "--rule", "pred", "--epochs", "1", "--no-progress", "--out", str(out)]
    assert _run(*opts).exit_code == 0
    os.remove(out / "checkpoint.h5")  # as recorded in runs/: the log only
    before = (out / "log.h5").read_bytes()
    res = _run(*opts)
    assert res.exit_code == 1
    assert "already holds a run (log.h5, train.log); refusing to overwrite it" in res.output
    assert "--overwrite" in res.output
    assert (out / "log.h5").read_bytes() == before and sorted(os.listdir(out)) == ["log.h5",
                                                                                  "train.log"]
    res = _run(*opts, "--resume")
    assert res.exit_code == 1 and "holds a run log but no checkpoint.h5" in res.output
    res = _run(*opts, "--overwrite", "--lr", "1e-3")
    assert res.exit_code == 0, res.output
    assert "--overwrite: removed the earlier run's log.h5, train.log" in res.output
    assert load_log(out / "log.h5")["meta"]["config"]["lr"] == 1e-3
    assert (out / "train.log").read_text().count(" started: ") == 1
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert not re.search(r"--out runs/", readme)  # the README's examples write to out/


def test_evaluation_shows_progress_and_max_steps_says_what_it_evaluates(tmp_path):
    res = _run(*TINY, "--rule", "pred-bio", "--epochs", "400", "--max-steps", "3",
               "--out", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    out = res.output
    assert "--max-steps 3: stops after step 3, then evaluates on the test set: 256 examples" in out
    assert "evaluating epoch 1 (test set)" in out
    assert "epoch 1/1" in out and "epoch 1/400" not in out  # the real total
    assert "3/3" in out
    assert "loss_pred=" in out and "loss_sim" not in out  # pred-bio has no sim loss
    assert re.search(r"wall=\d+:\d\d:\d\d", out) and re.search(r"wall \d+:\d\d:\d\d\)", out)
    assert re.search(r"Time: epoch \d+:\d\d:\d\d, run \d+:\d\d:\d\d elapsed, \d+:\d\d:\d\d left "
                     r"\(step 3 of 3\)", out)
    res = _run(*TINY, "--rule", "backprop", "--epochs", "1", "--max-steps", "1",
               "--test-subset", "0", "--no-progress", "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    assert "evaluates on the test set: 10,000 examples (all of it; --test-subset N" in res.output
    assert "loss_pred" not in res.output and "loss_sim" not in res.output


def test_ctrl_c_during_evaluation_says_so_and_resume_evaluates_again(tmp_path, monkeypatch):
    import bioplaus.train as train_mod

    real = train_mod.evaluate

    def ctrl_c_after_one_batch(model, batches, split):
        def gen():
            for i, b in enumerate(batches):
                yield b
                if i == 0:
                    os.kill(os.getpid(), signal.SIGINT)
        return real(model, gen(), split)

    out = str(tmp_path / "e")
    opts = [*TINY, "--rule", "predsim", "--epochs", "1", "--no-progress", "--out", out]
    monkeypatch.setattr(train_mod, "evaluate", ctrl_c_after_one_batch)
    res = _run(*opts)
    assert res.exit_code == 130
    assert "interrupted during the evaluation of epoch 1" in res.output
    assert "--resume evaluates it again" in res.output and "Traceback" not in res.output
    monkeypatch.setattr(train_mod, "evaluate", real)
    res = _run("--out", out, "--resume", "--no-progress")
    assert res.exit_code == 0, res.output
    assert len(_errors(out)) == 1


def test_the_run_length_is_estimated_from_the_first_steps(tmp_path):
    res = _run(*TINY, "--rule", "sim", "--epochs", "2", "--out", str(tmp_path / "t"))
    assert res.exit_code == 0, res.output
    assert re.search(r"estimate from the first 5 steps: [\d.]+ s/step, 5 steps to go "
                     r"\(5 per epoch, 2 epochs with their evaluations\) -> about \d+:\d\d:\d\d",
                     res.output), res.output
    assert "epoch 2/2" in res.output and "run " in res.output and " left" in res.output

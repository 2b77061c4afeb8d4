"""Checkpoints of a pipelined run are `bioplaus train` checkpoints: a pipelined run
resumes sequentially and a sequential one resumes pipelined, to the same bits as
the uninterrupted sequential run; `bioplaus train --pipeline` as a user runs it."""
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from bioplaus.cli import main  # noqa: E402
from bioplaus.config import Config  # noqa: E402
from bioplaus.io import load_checkpoint  # noqa: E402
from bioplaus.pipeline.trainer import PipelineTrainer  # noqa: E402
from bioplaus.train import Trainer  # noqa: E402

# 3 steps an epoch, 2 epochs; the break at step 4 is inside epoch 2
CFG = Config(dataset="fashion-mnist", net="mlp", num_layers=3, num_hidden=24, rule="predsim-bio",
             train_subset=150, test_subset=100, batch_size=50, epochs=2, dropout=0.2, lr=2e-3,
             lr_decay_milestones=(100,), seed=5, beta=0.01)


def quiet(*_):
    pass


def seq(out, cfg, resume=False):
    with threadpool_limits(1):
        Trainer(cfg, str(out), resume=resume, progress=False, log=quiet).run()


def pipe(out, cfg, resume=False, stages=3):
    PipelineTrainer(cfg, str(out), stages=stages, cpus_per_stage=0.5, resume=resume,
                    progress=False, log=quiet).run()


def ck(out):
    return load_checkpoint(os.path.join(out, "checkpoint.h5"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    seq(out, CFG)
    return ck(out)


def assert_same(got, ref):
    assert (got["epoch"], got["batch"], got["step"]) == (ref["epoch"], ref["batch"], ref["step"])
    for group in ("params", "buffers"):
        for k in ref[group]:
            np.testing.assert_array_equal(got[group][k], ref[group][k], err_msg=k)
    for g in ref["optim"]:
        for k in ref["optim"][g]:
            np.testing.assert_array_equal(got["optim"][g][k], ref["optim"][g][k], err_msg=k)
    assert [r["test_error"] for r in got["history"]] == [r["test_error"] for r in ref["history"]]
    assert [r["block0_test_error"] for r in got["history"]] == \
        [r["block0_test_error"] for r in ref["history"]]


def test_pipelined_checkpoint_resumes_sequentially(local_ray, tmp_path, reference):
    out = tmp_path / "run"
    pipe(out, CFG.replace(max_steps=4))
    mid = ck(out)
    assert (mid["epoch"], mid["batch"], mid["step"]) == (2, 1, 4)
    assert mid["partial"]["_n"] == 50  # the epoch's running sums travel in the checkpoint
    seq(out, CFG, resume=True)
    assert_same(ck(out), reference)


def test_sequential_checkpoint_resumes_pipelined(local_ray, tmp_path, reference):
    out = tmp_path / "run"
    seq(out, CFG.replace(max_steps=4))
    pipe(out, CFG, resume=True, stages=2)
    assert_same(ck(out), reference)


def test_cli_pipeline_trains_and_refuses_global_rules(local_ray, tmp_path):
    args = ["train", "--net", "mlp", "--num-layers", "2", "--num-hidden", "16",
            "--train-subset", "100", "--test-subset", "100", "--batch-size", "50",
            "--epochs", "1", "--no-progress", "--stage-cpus", "0.5"]
    r = CliRunner().invoke(main, [*args, "--rule", "pred", "--pipeline", "2",
                                  "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "pipeline: 2 stages" in r.output and "stage 1: blocks 1..1" in r.output
    assert "final test error" in r.output
    assert load_checkpoint(str(tmp_path / "a" / "checkpoint.h5"))["step"] == 2
    r = CliRunner().invoke(main, [*args, "--rule", "backprop", "--pipeline", "2",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 1 and "backprop cannot be pipelined" in r.output
    r = CliRunner().invoke(main, [*args[:-2], "--address", "auto", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "only with --pipeline" in r.output


def test_a_dead_stage_stops_the_run_and_the_checkpoint_resumes(local_ray, tmp_path, reference):
    from bioplaus.pipeline.actors import StageDied

    out = tmp_path / "run"

    def kill_after_step_4(tr):
        if tr.step == 4:
            tr.save()  # a checkpoint at step 4, then the stage's process dies
            ray.kill(tr._actors.actors[1])

    tr = PipelineTrainer(CFG, str(out), stages=2, cpus_per_stage=0.5, progress=False, log=quiet,
                         on_step=kill_after_step_4)
    with pytest.raises(StageDied, match="actor died.*the run stopped.*step 4.*--resume"):
        tr.run()
    assert ck(out)["step"] == 4
    seq(out, CFG, resume=True)
    assert_same(ck(out), reference)

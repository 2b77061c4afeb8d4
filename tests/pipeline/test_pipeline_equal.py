"""A pipelined local run computes what the sequential run computes, bit for bit.

Each stage is a Ray actor on one BLAS thread; the sequential run is trained
here on one BLAS thread too, so every product is summed in the same order
(bitwise equality needs the same thread count: a product split over two
threads may round differently). Tiny nets on real Fashion-MNIST, a few steps,
dropout on (each block draws its masks from its own stream).
"""
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from threadpoolctl import threadpool_limits  # noqa: E402

from bioplaus.config import Config  # noqa: E402
from bioplaus.io import load_checkpoint  # noqa: E402
from bioplaus.pipeline import PipelineError, balanced_split  # noqa: E402
from bioplaus.pipeline.trainer import PipelineTrainer  # noqa: E402
from bioplaus.train import Trainer  # noqa: E402

# 150 examples, batch 50: 3 steps an epoch, 2 epochs (a checkpoint and an evaluation between)
BASE = dict(dataset="fashion-mnist", train_subset=150, test_subset=100, batch_size=50, epochs=2,
            dropout=0.1, lr=2e-3, lr_decay_milestones=(100,), seed=3)
MLP = dict(BASE, net="mlp", num_layers=3, num_hidden=32, rule="predsim")
# vgg8b at 1/20 of its widths: 5 conv blocks (6, 12, 12, 25, 25 maps) and one fc block
VGG = dict(BASE, net="vgg8b", feat_mult=0.05, num_hidden=32, dim_in_decoder=64, rule="predsim")
FRC = dict(MLP, rule="frc-trainable")


def quiet(*_):
    pass


def sequential(out, cfg):
    with threadpool_limits(1):
        Trainer(Config(**cfg), str(out), progress=False, log=quiet).run()
    return load_checkpoint(os.path.join(out, "checkpoint.h5"))


def pipelined(out, cfg, stages):
    tr = PipelineTrainer(Config(**cfg), str(out), stages=stages, cpus_per_stage=0.5,
                         progress=False, log=quiet)
    tr.run()
    return tr, load_checkpoint(os.path.join(out, "checkpoint.h5"))


def assert_same(ck, ref):
    assert (ck["epoch"], ck["batch"], ck["step"]) == (ref["epoch"], ref["batch"], ref["step"])
    for group in ("params", "buffers"):
        assert sorted(ck[group]) == sorted(ref[group])
        for k in ref[group]:
            np.testing.assert_array_equal(ck[group][k], ref[group][k], err_msg=k)
    assert sorted(ck["optim"]) == sorted(ref["optim"])
    for g in ref["optim"]:
        for k in ref["optim"][g]:
            np.testing.assert_array_equal(ck["optim"][g][k], ref["optim"][g][k], err_msg=k)
    # the epochs' records (losses, errors, every early exit) are the same numbers
    strip = ("wall_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in ck["history"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in ref["history"]]


@pytest.mark.parametrize("name,cfg", [("mlp", MLP), ("vgg", VGG), ("frc", FRC)])
def test_pipelined_run_equals_the_sequential_run(local_ray, tmp_path, name, cfg):
    ref = sequential(tmp_path / "seq", cfg)
    assert ref["step"] == 6 and len(ref["history"]) == 2
    for stages in ((1, 2, 3) if name != "frc" else (2,)):
        tr, ck = pipelined(tmp_path / f"pipe{stages}", cfg, stages)
        assert len(tr.bounds) == stages
        assert_same(ck, ref)
        assert tr.sent_bytes > 0 if stages > 1 else tr.sent_bytes == 0


def test_balanced_split_is_contiguous_and_minimises_the_largest_stage():
    assert balanced_split([1, 1, 1, 1], 2) == [(0, 2), (2, 4)]
    assert balanced_split([5, 1, 1, 1, 1, 1], 2) == [(0, 1), (1, 6)]
    assert balanced_split([1, 2, 3], 3) == [(0, 1), (1, 2), (2, 3)]
    assert balanced_split([4, 1, 1, 4], 3) == [(0, 1), (1, 3), (3, 4)]
    with pytest.raises(PipelineError, match="splits into 1 to 3 stages"):
        balanced_split([1, 2, 3], 4)


@pytest.mark.parametrize("rule", ["backprop", "fa", "glob+sim"])
def test_global_rules_are_refused_with_the_reason(tmp_path, rule):
    with pytest.raises(PipelineError, match="cannot be pipelined.*backward locking"):
        PipelineTrainer(Config(**{**MLP, "rule": rule}), str(tmp_path), stages=2)
    assert not os.listdir(tmp_path)

"""Divergence: a loss far above its bound or a non-positive learning rate
stops the run; the message says truthfully which checkpoint exists."""
import numpy as np
import pytest

from bioplaus.config import Config
from bioplaus.train import Trainer, TrainingDiverged
from tests.ckpt_helpers import TINY, quiet, snapshot


def test_lr_10_under_adam_stops_and_claims_no_checkpoint(tmp_path):
    cfg = Config(**{**TINY, "lr": 10.0})
    with pytest.raises(TrainingDiverged, match=r"cross-entropy .* exceeds 23\.03 \(10 x log\(classes\)\)"
                                               r".*No checkpoint was written") as exc:
        Trainer(cfg, str(tmp_path / "r"), progress=False, log=quiet).run()
    assert "lower --lr" in str(exc.value)
    assert snapshot(tmp_path / "r") == {}


def test_a_blow_up_keeps_the_last_sane_checkpoint_and_says_which(tmp_path):
    cfg = Config(**{**TINY, "epochs": 3})

    def blow_up(tr):
        if tr.step == 6:
            before.update(snapshot(tmp_path / "r"))
            tr.model.params["layer_out.weight"] *= 1e4
    before = {}
    with pytest.raises(TrainingDiverged, match=r"at step 6 .*The last checkpoint, at step 4 "
                                               r"\(epoch 2, batch 0\), is kept"):
        Trainer(cfg, str(tmp_path / "r"), progress=False, log=quiet, on_step=blow_up).run()
    assert snapshot(tmp_path / "r") == before and before


def test_a_learning_rate_that_reaches_zero_stops_the_run(tmp_path):
    cfg = Config(**{**TINY, "lr": 1e-200, "lr_decay_fact": 1e-200, "lr_decay_milestones": (1,)})
    with pytest.raises(TrainingDiverged, match=r"the learning rate of epoch 2 is 0\.0 \(it must stay "
                                               r"positive\).*at step 4 \(epoch 2, batch 0\)"):
        Trainer(cfg, str(tmp_path / "r"), progress=False, log=quiet).run()


def test_a_non_finite_parameter_is_named_not_blamed_on_the_lr(tmp_path):
    tr = Trainer(Config(**TINY), str(tmp_path / "r"), progress=False, log=quiet)
    tr.model.params["layers.0.encoder.weight"][0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match=r"parameter layers\.0\.encoder\.weight already held "
                                               r"non-finite values"):
        tr.run()

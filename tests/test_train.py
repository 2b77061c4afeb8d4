"""The training loop on the real Fashion-MNIST: learning, exact resume, failures."""
import os
import signal

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.config import Config
from bioplaus.io import CheckpointError, load_checkpoint
from bioplaus.train import Interrupted, Trainer, TrainingDiverged

SMALL = dict(net="mlp", dataset="fashion-mnist", num_hidden=64, num_layers=2,
             train_subset=2000, test_subset=1000, batch_size=100, epochs=2,
             lr=2e-3, lr_decay_milestones=(100,))


def _quiet(*_):
    pass


def _train(tmp_path, name, **kw):
    cfg = Config(**{**SMALL, **kw})
    tr = Trainer(cfg, str(tmp_path / name), progress=False, log=_quiet)
    return tr, tr.run()


@pytest.mark.parametrize("rule", ["predsim", "pred-bio", "sim", "frc-sym", "backprop", "fa"])
def test_each_family_learns_on_real_data(tmp_path, rule):
    # 200 steps of 100 real Fashion-MNIST images: chance is 90% error.
    _, rec = _train(tmp_path, rule, rule=rule, train_subset=5000, epochs=4)
    assert rec["test_error"] < 30.0, rec
    if rule in ("predsim", "pred-bio", "frc-sym"):
        # every block's local classifier (early exit) learns as well
        exits = [rec[f"block{i}_test_error"] for i in range(2)]
        assert max(exits) < 35.0, rec


def test_frc_random_feedback_fails_where_sign_concordant_learns(tmp_path):
    # Mostafa et al. 2018: independent random K does not train the layers to
    # reduce their own classifier's error; sign-concordant K does.
    _, rnd = _train(tmp_path, "rnd", rule="frc-random")
    _, sgn = _train(tmp_path, "sgn", rule="frc-sign")
    assert rnd["block0_test_error"] > 50.0
    assert sgn["block0_test_error"] < 40.0


def _params(out_dir):
    return load_checkpoint(os.path.join(out_dir, "checkpoint.h5"))


@pytest.mark.parametrize("rule", ["predsim", "brsf"])
def test_interrupted_and_resumed_run_equals_uninterrupted_bitwise(tmp_path, rule):
    # dropout masks and augmentation both in play; brsf redraws its feedback
    # magnitudes from (seed, layer, step), so a resume must pass the true step
    kw = dict(rule=rule, dropout=0.1)
    full, _ = _train(tmp_path, "full", **kw)
    # stop mid-epoch 2 (step 27 of 40), then resume to the end
    cfg = Config(**{**SMALL, **kw, "max_steps": 27})
    Trainer(cfg, str(tmp_path / "cut"), progress=False, log=_quiet).run()
    ck = _params(tmp_path / "cut")
    assert (ck["epoch"], ck["batch"], ck["step"]) == (2, 7, 27)
    Trainer(cfg.replace(max_steps=0), str(tmp_path / "cut"), resume=True, progress=False,
            log=_quiet).run()
    a, b = _params(tmp_path / "full"), _params(tmp_path / "cut")
    assert a["step"] == b["step"] == 40
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k], err_msg=k)
    for k in a["buffers"]:
        np.testing.assert_array_equal(a["buffers"][k], b["buffers"][k], err_msg=k)
    for g in a["optim"]:
        for k in a["optim"][g]:
            np.testing.assert_array_equal(a["optim"][g][k], b["optim"][g][k])
    strip = [{k: v for k, v in r.items() if k != "wall_s"} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k != "wall_s"} for r in b["history"]]
    assert full.history[-1]["test_error"] == b["history"][-1]["test_error"]


def test_brsf_draws_its_feedback_at_every_step_of_the_trainer(tmp_path, monkeypatch):
    # the trainer hands brsf the global step: one draw per layer and step,
    # steps 0..39 in order, continuing across the epoch boundary
    from bioplaus import feedback

    seen = []
    real = feedback.brsf_magnitude

    def recording(xp, seed, layer, step, *args, **kw):
        seen.append((layer, step))
        return real(xp, seed, layer, step, *args, **kw)

    monkeypatch.setattr(feedback, "brsf_magnitude", recording)
    _train(tmp_path, "brsf", rule="brsf")
    steps = sorted({s for _, s in seen})
    assert steps == list(range(40))
    layers = {layer for layer, _ in seen}
    assert len(layers) == 2 and all(seen.count((layer, s)) == 1 for layer in layers for s in steps)


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_exactly(tmp_path):
    full, _ = _train(tmp_path, "full", rule="frc-sign")

    def press_ctrl_c(tr):
        if tr.step == 13:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = Config(**{**SMALL, "rule": "frc-sign"})
    tr = Trainer(cfg, str(tmp_path / "int"), progress=False, log=_quiet, on_step=press_ctrl_c)
    with pytest.raises(Interrupted, match="--resume"):
        tr.run()
    assert _params(tmp_path / "int")["step"] == 13
    Trainer(cfg, str(tmp_path / "int"), resume=True, progress=False, log=_quiet).run()
    a, b = _params(tmp_path / "full"), _params(tmp_path / "int")
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k], err_msg=k)


def test_non_finite_loss_stops_naming_layer_and_step_and_keeps_checkpoint(tmp_path):
    cfg = Config(**{**SMALL, "rule": "pred", "epochs": 2})
    tr = Trainer(cfg, str(tmp_path / "nan"), progress=False, log=_quiet)
    tr.run()  # 2 good epochs, checkpoint at step 40
    before = _params(tmp_path / "nan")
    tr2 = Trainer(cfg.replace(epochs=3), str(tmp_path / "nan"), resume=True, progress=False,
                  log=_quiet)
    tr2.model.params["layers.1.encoder.weight"][0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match=r"layer layers\.1 at step 40"):
        tr2.run()
    after = _params(tmp_path / "nan")
    assert after["step"] == before["step"] == 40
    np.testing.assert_array_equal(after["params"]["layers.1.encoder.weight"],
                                  before["params"]["layers.1.encoder.weight"])


def test_checkpoint_refusals(tmp_path):
    tr, _ = _train(tmp_path, "run", rule="pred", epochs=1)
    path = tmp_path / "run" / "checkpoint.h5"
    # an existing run is not overwritten silently
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(tr.cfg, str(tmp_path / "run"), progress=False, log=_quiet)
    # a contradicting configuration is refused, differences listed
    with pytest.raises(CheckpointError, match=r"(?s)lr: 0\.002.*vs 0\.001.*num_hidden"):
        Trainer(tr.cfg.replace(lr=1e-3, num_hidden=32), str(tmp_path / "run"), resume=True,
                progress=False, log=_quiet)
    # a truncated file
    data = path.read_bytes()
    bad = tmp_path / "trunc"
    bad.mkdir()
    (bad / "checkpoint.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        Trainer(tr.cfg, str(bad), resume=True, progress=False, log=_quiet)
    # a checkpoint of another net (same config otherwise): parameters do not fit
    other = tmp_path / "other"
    other.mkdir()
    with h5py.File(path, "r") as src, h5py.File(other / "checkpoint.h5", "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for g in src:
            src.copy(src[g], dst, name=g)
        del dst["params/layers.1.encoder.weight"]
        dst["params/layers.1.encoder.weight"] = np.zeros((3, 3))
    with pytest.raises(CheckpointError, match="another net"):
        Trainer(tr.cfg, str(other), resume=True, progress=False, log=_quiet)


@pytest.mark.parametrize("args, message", [
    (["--rule", "hebb"], "unknown rule 'hebb'; known rules: backprop, fa, pred"),
    (["--net", "resnet9"], "unknown net 'resnet9'; known nets: mlp"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--rule", "pred", "--beta", "0.5"], "--beta applies only to predsim"),
    (["--rule", "predsim", "--frc-loss", "hinge"], "--frc-loss applies only to the frc-* rules"),
    (["--rule", "backprop", "--dim-in-decoder", "1024"], "--dim-in-decoder applies only"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1)"),
    (["--optim", "rmsprop"], "--optim must be one of adam, amsgrad, sgd"),
    (["--lr-decay-milestones", "10,x"], "comma-separated integers"),
    (["--recipe", "/nonexistent.toml"], "no such file"),
])
def test_bad_options_give_clear_errors(tmp_path, args, message):
    res = CliRunner().invoke(main, ["train", "--net", "mlp", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0
    assert message in res.output, res.output


def test_cli_train_and_eval_print_the_exit_table(tmp_path):
    out = str(tmp_path / "cli")
    res = CliRunner().invoke(main, [
        "train", "--net", "mlp", "--num-layers", "2", "--num-hidden", "32", "--rule", "predsim",
        "--train-subset", "500", "--test-subset", "300", "--epochs", "1", "--no-progress",
        "--out", out])
    assert res.exit_code == 0, res.output
    assert "Train epoch=1" in res.output and "final test error" in res.output
    res = CliRunner().invoke(main, ["eval", out])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "(block" in ln or "(output)" in ln]
    assert len(lines) == 3  # two block exits and the output layer
    macs = [float(ln.split()[-1]) for ln in lines]
    assert macs == sorted(macs)  # deeper exits cost more


def test_layerwise_training_updates_one_block_at_a_time(tmp_path):
    # Mostafa et al. 2018: layers trained one after another. Epoch 1 trains
    # block 0 only; epoch 2 block 1 and the output layer.
    cfg = Config(**{**SMALL, "rule": "frc-sym", "layerwise_epochs": 1, "epochs": 2})
    snaps = []

    def snap(tr):
        if tr.batch == tr.data.batches_per_epoch:  # last step of an epoch
            snaps.append({k: np.array(v) for k, v in tr.model.params.items()})

    tr = Trainer(cfg, str(tmp_path / "lw"), progress=False, log=_quiet, on_step=snap)
    init = {k: np.array(v) for k, v in tr.model.params.items()}
    tr.run()
    e1, e2 = snaps
    assert not np.array_equal(e1["layers.0.encoder.weight"], init["layers.0.encoder.weight"])
    np.testing.assert_array_equal(e1["layers.1.encoder.weight"], init["layers.1.encoder.weight"])
    np.testing.assert_array_equal(e1["layer_out.weight"], init["layer_out.weight"])
    np.testing.assert_array_equal(e2["layers.0.encoder.weight"], e1["layers.0.encoder.weight"])
    assert not np.array_equal(e2["layers.1.encoder.weight"], e1["layers.1.encoder.weight"])
    assert not np.array_equal(e2["layer_out.weight"], e1["layer_out.weight"])
    assert np.isnan(tr.history[0]["train_error"]) and tr.history[1]["test_error"] < 50
    with pytest.raises(Exception, match="--layerwise-epochs needs a local rule"):
        Trainer(cfg.replace(rule="backprop"), str(tmp_path / "bp"), progress=False, log=_quiet)

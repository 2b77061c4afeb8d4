"""`train --log-alignment`, `bioplaus align RUN` and the alignment plot, on real Fashion-MNIST."""
import json
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.config import Config
from bioplaus.io import load_log
from bioplaus.train import Trainer

SMALL = dict(net="mlp", dataset="fashion-mnist", num_hidden=32, num_layers=2,
             train_subset=640, test_subset=200, batch_size=64, epochs=1, lr=2e-3,
             lr_decay_milestones=(100,), dropout=0.1)


def _quiet(*_):
    pass


def _cli_train(out, rule, every, *extra):
    args = ["train", "--rule", rule, "--net", "mlp", "--num-hidden", "32", "--num-layers", "2",
            "--train-subset", "640", "--test-subset", "200", "--batch-size", "64",
            "--epochs", "1", "--dropout", "0.1", "--no-progress", "--out", str(out),
            "--log-alignment", str(every), *extra]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def fa_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fa"
    _cli_train(out, "fa", 3)
    return out


def test_log_alignment_writes_the_alignment_group(fa_run):
    with h5py.File(fa_run / "log.h5", "r") as f:  # the real file, read directly
        assert "alignment" in f
        g = f["alignment"]
        steps = g["step"][()]
        assert list(steps) == [0, 3, 6, 9]  # 10 steps of 64, every 3rd
        assert set(g["angle"]) == {"layers.0.encoder.weight", "layers.0.encoder.bias",
                                   "layers.0.bn.weight", "layers.0.bn.bias",
                                   "layers.1.encoder.weight", "layers.1.encoder.bias",
                                   "layers.1.bn.weight", "layers.1.bn.bias",
                                   "layer_out.weight", "layer_out.bias"}
        assert set(g["feedback"]) == {"layers.1.encoder B~W", "layer_out B~W"}
    a = load_log(fa_run / "log.h5")["alignment"]
    np.testing.assert_allclose(a["epoch"], a["step"] / 10)
    # fa's output layer update is the gradient itself; its blocks are not
    assert np.all(a["angle"]["layer_out.weight"] < 1e-3)
    np.testing.assert_allclose(a["ratio"]["layer_out.weight"], 1.0, rtol=1e-5)
    hidden = a["angle"]["layers.0.encoder.weight"]
    assert np.all(np.isfinite(hidden)) and np.all(hidden > 5.0) and np.all(hidden < 175.0)
    assert np.all(a["wall_s"] > 0)
    # the log's other content is unchanged
    lg = load_log(fa_run / "log.h5")
    assert len(lg["records"]) == 1 and lg["meta"]["config"]["rule"] == "fa"


def test_alignment_does_not_change_the_run(tmp_path):
    base = dict(SMALL, rule="predsim")
    a = Trainer(Config(**base), str(tmp_path / "a"), progress=False, log=_quiet, log_alignment=2)
    ra = a.run()
    b = Trainer(Config(**base), str(tmp_path / "b"), progress=False, log=_quiet)
    rb = b.run()
    assert ra["test_error"] == rb["test_error"]
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    for k in a.model.buffers:
        assert np.array_equal(a.model.buffers[k], b.model.buffers[k]), k
    assert "alignment" not in load_log(tmp_path / "b" / "log.h5")
    assert len(load_log(tmp_path / "a" / "log.h5")["alignment"]["step"]) == 5


def test_resumed_run_records_the_same_alignment(tmp_path):
    base = dict(SMALL, rule="frc-sign", epochs=2)
    full = Trainer(Config(**base), str(tmp_path / "full"), progress=False, log=_quiet,
                   log_alignment=4)
    full.run()
    part = Trainer(Config(**base, max_steps=13), str(tmp_path / "part"), progress=False,
                   log=_quiet, log_alignment=4)
    part.run()
    assert list(load_log(tmp_path / "part" / "log.h5")["alignment"]["step"]) == [0, 4, 8, 12]
    rest = Trainer(Config(**base), str(tmp_path / "part"), resume=True, progress=False,
                   log=_quiet, log_alignment=4)
    rest.run()
    a = load_log(tmp_path / "full" / "log.h5")["alignment"]
    b = load_log(tmp_path / "part" / "log.h5")["alignment"]
    assert list(a["step"]) == list(b["step"]) == [0, 4, 8, 12, 16]
    for part_ in ("angle", "ratio", "feedback"):
        assert set(a[part_]) == set(b[part_])
        for k in a[part_]:
            np.testing.assert_array_equal(a[part_][k], b[part_][k], err_msg=k)


def test_align_cli_on_a_run_and_on_a_fresh_net(fa_run):
    r = CliRunner().invoke(main, ["align", str(fa_run), "--batches", "2", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["rule"] == "fa" and res["batches"] == 2 and res["step"] == 10
    rows = {row["param"]: row for row in res["params"]}
    assert rows["layer_out.weight"]["angle"] < 1e-6
    assert 5.0 < rows["layers.1.encoder.weight"]["angle"] < 175.0
    assert set(res["feedback"]) == {"layers.1.encoder B~W", "layer_out B~W"}
    # the checkpoint file itself, as a table
    r = CliRunner().invoke(main, ["align", str(fa_run / "checkpoint.h5"), "--batches", "1"])
    assert r.exit_code == 0, r.output
    assert "layers.0.encoder.weight" in r.output and "B~W" in r.output
    # a fresh net
    r = CliRunner().invoke(main, ["align", "--rule", "backprop", "--net", "mlp", "--seed", "2",
                                  "--num-hidden", "32", "--num-layers", "2", "--batches", "1",
                                  "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert all(row["angle"] < 1e-6 and abs(row["ratio"] - 1) < 1e-9 for row in res["params"])


def test_align_cli_errors_are_clear(fa_run, tmp_path):
    r = CliRunner().invoke(main, ["align"])
    assert r.exit_code == 2 and "--rule" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["align", str(fa_run), "--rule", "fa"])
    assert r.exit_code == 2 and "--rule" in r.output
    r = CliRunner().invoke(main, ["align", "--rule", "nope"])
    assert r.exit_code == 1 and "unknown rule 'nope'" in r.output
    r = CliRunner().invoke(main, ["align", str(tmp_path)])  # no checkpoint there
    assert r.exit_code == 1 and "checkpoint.h5" in r.output
    r = CliRunner().invoke(main, ["align", str(fa_run), "--batches", "0"])
    assert r.exit_code == 2 and "--batches" in r.output


def test_plot_draws_the_alignment_curves(fa_run):
    pytest.importorskip("matplotlib")
    r = CliRunner().invoke(main, ["plot", str(fa_run)])
    assert r.exit_code == 0, r.output
    path = fa_run / "alignment.png"
    assert path.exists() and os.path.getsize(path) > 1000
    assert "alignment.png" in r.output
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

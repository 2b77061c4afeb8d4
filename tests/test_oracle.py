"""`bioplaus oracle`: files for every rule on mlp and vgg8b, and `oracle check`."""
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.io import load_oracle
from bioplaus.rules.registry import RULES


@pytest.mark.parametrize("net", ["mlp", "vgg8b"])
@pytest.mark.parametrize("rule", list(RULES))
def test_oracle_writes_every_array_for_every_rule(tmp_path, rule, net):
    path = tmp_path / "o.h5"
    args = ["oracle", "--rule", rule, "--net", net, "--seed", "3", "--batch-size", "4",
            "--out", str(path)]
    if net == "vgg8b" and rule in ("pred", "predsim", "pred-bio", "predsim-bio", "sim-bio"):
        args += ["--dim-in-decoder", "1024"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    o = load_oracle(path)
    assert o["attrs"]["rule"] == rule and o["attrs"]["net"] == net
    assert o["input"]["x"].shape == (4, 1, 28, 28) and o["input"]["x"].dtype == np.float64
    prefix = "layers.0." if net == "mlp" else "features.0."
    assert prefix + "encoder.weight" in o["params"]
    for name, g in o["grads"].items():
        assert g.shape == o["params"][name].shape and g.dtype == np.float64, name
        assert np.isfinite(g).all(), name
    # every parameter gets an update, except the local decoder under beta = 1 (none here)
    assert set(o["grads"]) == set(o["params"])
    if RULES[rule].bio:
        assert prefix + "proj_y.weight" in o["fixed"]
    if rule == "fa":
        assert prefix + "encoder.weight_fa" in o["fixed"]
    if rule in ("frc-sym", "frc-sign", "frc-random"):
        assert prefix + "frc.K" in o["fixed"]
    if net == "vgg8b":
        assert "classifier.layer_out.weight" in o["params"]
        if RULES[rule].sim and not RULES[rule].bio:
            assert "features.8.conv_loss.weight" in o["params"]


def test_oracle_is_reproducible_and_check_reports_differences(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for p in (a, b):
        res = CliRunner().invoke(main, ["oracle", "--rule", "predsim", "--net", "mlp",
                                        "--batch-size", "8", "--out", str(p)])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["oracle", "check", str(a), str(b)])
    assert res.exit_code == 0 and "0 above tol" in res.output
    with h5py.File(b, "r+") as f:
        g = f["grads/layers.1.encoder.weight"]
        g[0, 0] = g[0, 0] + 1e-3 * np.abs(g[()]).max()
    res = CliRunner().invoke(main, ["oracle", "check", str(a), str(b), "--tol", "1e-6"])
    assert res.exit_code == 1
    line = next(ln for ln in res.output.splitlines() if ln.startswith("layers.1.encoder.weight"))
    assert float(line.split()[1]) == pytest.approx(1e-3, rel=1e-6) and "> tol" in line
    with h5py.File(b, "r+") as f:
        del f["grads/layer_out.bias"]
    res = CliRunner().invoke(main, ["oracle", "check", str(a), str(b)])
    assert res.exit_code == 1 and "inf" in res.output


def test_oracle_check_refuses_other_files(tmp_path):
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["format"] = "something-else"
    res = CliRunner().invoke(main, ["oracle", "check", str(p), str(p)])
    assert res.exit_code != 0 and "not a bioplaus-oracle file" in res.output


def test_compare_measures_each_gradient_against_its_layer():
    from bioplaus.oracle import compare
    w = np.array([[0.5, -2.0], [1.0, 0.25]])
    a = {"grads": {"layers.0.encoder.weight": w, "layers.0.encoder.bias": np.array([1e-18, -3e-18]),
                   "layers.0.bn.weight": np.array([4.0, 1.0])}}
    # round-off in a bias that is zero by the math (it feeds batch norm): tiny at its layer's scale
    b = {"grads": {"layers.0.encoder.weight": w.copy(),
                   "layers.0.encoder.bias": np.array([-1e-18, 2e-18]),
                   "layers.0.bn.weight": np.array([4.0, 1.0 + 4e-9])}}
    rows = dict(compare(a, b))
    assert rows["layers.0.encoder.weight"] == 0.0
    assert rows["layers.0.encoder.bias"] == pytest.approx(5e-18 / 2.0)  # weight's largest: 2
    assert rows["layers.0.bn.weight"] == pytest.approx(1e-9)  # its own layer: bn (largest 4)
    # a real difference in the bias is still seen at the layer's scale
    b["grads"]["layers.0.encoder.bias"] = np.array([0.2, 0.0])
    assert dict(compare(a, b))["layers.0.encoder.bias"] == pytest.approx(0.1)
    # a layer whose gradients are all zero in both files: any difference is infinite, none is 0
    z = {"grads": {"out.bias": np.zeros(3)}}
    assert dict(compare(z, z))["out.bias"] == 0.0


def test_oracle_write_creates_the_folder_of_out(tmp_path):
    out = tmp_path / "new" / "deeper" / "o.h5"
    res = CliRunner().invoke(main, ["oracle", "--rule", "pred", "--net", "mlp",
                                    "--batch-size", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and not list(out.parent.glob("*.tmp"))

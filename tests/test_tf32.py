"""--tf32: off by default (strict float32), refused on NumPy, part of a run's configuration
and stated in its log; `bench steps --tf32` sets both libraries alike."""
import json
import sys
import types

import h5py
import pytest
from click.testing import CliRunner

from bioplaus import backend
from bioplaus.cli.bench_steps import steps as steps_cmd
from bioplaus.cli.train import train as train_cmd
from bioplaus.config import Config, ConfigError, validate

TINY = ["--net", "mlp", "--num-layers", "1", "--num-hidden", "8", "--train-subset", "40",
        "--test-subset", "20", "--batch-size", "20", "--epochs", "1", "--rule", "predsim",
        "--dataset", "fashion-mnist", "--no-progress"]


def test_off_by_default_and_refused_where_it_cannot_apply():
    assert Config().tf32 is False
    validate(Config(device="gpu", tf32=True))  # a float32 GPU run may ask for it
    with pytest.raises(ConfigError, match=r"--tf32 needs --device gpu"):
        validate(Config(tf32=True))
    with pytest.raises(ConfigError, match=r"--tf32 applies to float32 products; this run's "
                                          r"dtype is float64"):
        validate(Config(device="gpu", dtype="float64", tf32=True))
    with pytest.raises(ConfigError, match=r"--tf32 must be true or false, got 'yes'"):
        Config.from_dict({"tf32": "yes"})
    # a configuration written before the option existed reads as strict float32
    old = Config().to_dict()
    del old["tf32"]
    assert Config.from_dict(old).tf32 is False


def test_numpy_has_no_tf32():
    import numpy as np

    assert backend.set_tf32(np, False) == "float32 products: strict float32"
    with pytest.raises(backend.BackendError, match=r"--tf32 needs --device gpu"):
        backend.set_tf32(np, True)


def test_on_cupy_the_compute_type_of_float32_products_is_set_either_way(monkeypatch):
    calls = []
    linalg = types.SimpleNamespace(COMPUTE_TYPE_DEFAULT=1, COMPUTE_TYPE_TF32=7,
                                   set_compute_type=lambda dt, ct: calls.append((dt, ct)))
    core = types.ModuleType("cupy._core")
    core._routines_linalg = linalg
    cupy_like = types.ModuleType("cupy")
    cupy_like._core = core
    monkeypatch.setitem(sys.modules, "cupy", cupy_like)
    monkeypatch.setitem(sys.modules, "cupy._core", core)
    monkeypatch.setitem(sys.modules, "cupy._core._routines_linalg", linalg)
    monkeypatch.setenv("CUPY_TF32", "1")  # in the environment, yet not asked for
    assert backend.set_tf32(cupy_like, False) == "float32 products: strict float32 (TF32 off)"
    import os

    assert os.environ["CUPY_TF32"] == "0"
    assert backend.set_tf32(cupy_like, True) == ("float32 products: TF32 tensor cores allowed "
                                                 "(--tf32)")
    assert os.environ["CUPY_TF32"] == "1"
    assert [ct for _, ct in calls] == [1, 7] and all(dt.__name__ == "float32" for dt, _ in calls)


def test_train_refuses_tf32_on_the_cpu_and_states_strict_float32(tmp_path):
    res = CliRunner().invoke(train_cmd, TINY + ["--out", str(tmp_path / "a"), "--tf32"])
    assert res.exit_code != 0 and "--tf32 needs --device gpu" in res.output, res.output
    assert not (tmp_path / "a" / "train.log").exists()
    res = CliRunner().invoke(train_cmd, TINY + ["--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "float32 products: strict float32" in res.output
    header = (tmp_path / "b" / "train.log").read_text().splitlines()[0]
    assert header.endswith("; float32 products: strict float32"), header
    with h5py.File(tmp_path / "b" / "log.h5") as f:
        meta = {k: f.attrs[k] for k in f.attrs}
    text = json.dumps({k: str(v) for k, v in meta.items()})
    assert "float32 products: strict float32" in text and '\\"tf32\\": false' in text
    # a resumed run keeps its setting; asking for another one is a contradiction
    res = CliRunner().invoke(train_cmd, TINY + ["--out", str(tmp_path / "b"), "--resume",
                                                "--epochs", "2", "--tf32"])
    assert res.exit_code != 0 and "--tf32 True (the run: False)" in res.output, res.output


def test_bench_steps_tf32_is_for_the_gpu():
    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "predsim", "--tf32",
                                         "--batch-size", "8", "--repeats", "1",
                                         "--num-hidden", "16", "--peak-size", "64", "--no-torch"])
    assert res.exit_code != 0 and "--tf32 needs --device gpu" in res.output, res.output
    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "predsim", "--memory",
                                         "--tf32"])
    assert res.exit_code != 0 and "--memory" in res.output
    res = CliRunner().invoke(steps_cmd, ["--nets", "mlp", "--rules", "predsim",
                                         "--batch-size", "8", "--repeats", "1",
                                         "--num-hidden", "16", "--peak-size", "64", "--no-torch"])
    assert res.exit_code == 0 and "float32 products: strict float32" in res.output, res.output


def test_the_torch_formulation_follows_the_flag():
    torch = pytest.importorskip("torch")
    from bioplaus.bench.steps import load_torch_step

    mod, why = load_torch_step()
    assert mod is not None, why
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        assert "TF32 allowed" in mod.float32_products(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert "strict float32" in mod.float32_products(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

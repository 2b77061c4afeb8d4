"""A checkpoint is checked against the model before its data are read."""
import numpy as np
import pytest

from bioplaus import checks
from bioplaus.io import CheckpointError
from tests.ckpt_helpers import file_bytes, make_run, rewrite, validator


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checks") / "run"
    tr = make_run(folder)
    return tr, folder


def _mutated(run, tmp_path, fn):
    tr, folder = run
    bad = tmp_path / "checkpoint.h5"
    bad.write_bytes(file_bytes(folder / "checkpoint.h5"))
    rewrite(bad, fn)
    return bad


def _replace(name, value):
    def fn(f):
        del f[name]
        f[name] = value
    return fn


CASES = {
    "deleted buffer": (lambda f: f.__delitem__("buffers/layers.0.bn.running_var"),
                       r"buffers/layers\.0\.bn\.running_var: missing"),
    "deleted optimizer group": (lambda f: f.__delitem__("optim/layers.0"),
                                r"optim/layers\.0: optimizer state missing"),
    "extra parameter": (lambda f: f.__setitem__("params/extra.weight", np.zeros(3, "f4")),
                        r"params/extra\.weight: unexpected"),
    "reshaped": (_replace("params/layer_out.weight", np.zeros((3, 3), "f4")),
                 r"another net(?s:.*)layer_out\.weight: shape \(3, 3\), the model's is \(10, 16\)"),
    "int32 weights": (_replace("params/layer_out.weight", np.zeros((10, 16), "i4")),
                      r"layer_out\.weight: dtype int32, expected float32 or float64"),
    "NaN running_var": (lambda f: f["buffers/layers.0.bn.running_var"].__setitem__(0, np.nan),
                        r"running_var: 1 non-finite value"),
    "negative running_var": (lambda f: f["buffers/layers.0.bn.running_var"].__setitem__(0, -1),
                             r"running_var: negative variance"),
    "inf moment": (lambda f: f["optim/layer_out/exp_avg|layer_out.bias"].__setitem__(0, np.inf),
                   r"exp_avg/layer_out\.bias: 1 non-finite"),
    "epoch 10**12": (lambda f: f.attrs.__setitem__("epoch", 10**12),
                     r"disagrees with epoch 1000000000000"),
    "negative step": (lambda f: f.attrs.__setitem__("step", -5), r"step = -5: must be >= 0"),
    "batch past the epoch": (lambda f: f.attrs.__setitem__("batch", 99), r"batch = 99: must lie in 0\.\.4"),
    "float epoch": (lambda f: f.attrs.__setitem__("epoch", 2.5), r"epoch = 2\.5: must be an integer"),
    "Adam step count": (_replace("optim/layer_out/step|layer_out.bias", np.int64(10**6)),
                        r"step count must lie in 0\.\.8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_checkpoint_is_refused_with_a_clear_message(run, tmp_path, case):
    fn, pattern = CASES[case]
    bad = _mutated(run, tmp_path, fn)
    with pytest.raises(CheckpointError, match=pattern) as exc:
        validator(run[0])(bad)
    assert str(bad) in str(exc.value)


def test_every_problem_is_listed_in_one_message(run, tmp_path):
    def many(f):
        del f["buffers/layers.0.bn.running_mean"]
        f["params/extra"] = np.zeros(2, "f4")
        f.attrs["step"] = -1
    bad = _mutated(run, tmp_path, many)
    with pytest.raises(CheckpointError) as exc:
        validator(run[0])(bad)
    msg = str(exc.value)
    assert "3 problems" in msg and "running_mean: missing" in msg and "params/extra" in msg
    assert "step = -1" in msg


def test_a_good_checkpoint_loads_exactly(run):
    tr, folder = run
    ck = validator(tr)(folder / "checkpoint.h5")
    for k, v in tr.model.params.items():
        np.testing.assert_array_equal(ck["params"][k], v)


def test_eval_loader_uses_the_same_checks(run, tmp_path):
    bad = _mutated(run, tmp_path, CASES["NaN running_var"][0])
    with pytest.raises(CheckpointError, match="non-finite"):
        checks.load_model(bad)
    model, _ = checks.load_model(run[1] / "checkpoint.h5")
    for k, v in run[0].model.params.items():
        np.testing.assert_array_equal(model.params[k], v)

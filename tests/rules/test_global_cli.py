"""Every global rule trains from the CLI on mlp, LeNet and a VGG net (one step,
tiny sizes), and the oracle writes the new rules with their feedback under fixed/."""
import numpy as np
import pytest
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.io import load_log
from bioplaus.oracle import compute_oracle
from bioplaus.rules.registry import RULES
from rule_cases import NUM_CLASSES, batch, bioplaus_grads, make_cfg, model_for

GLOBAL = [r for r, info in RULES.items() if info.family == "global"]
NETS = {"mlp": ["--net", "mlp", "--num-layers", "2", "--num-hidden", "16"],
        "lenet": ["--net", "lenet", "--input-size", "32", "--init", "xavier-uniform"],
        "vgg": ["--net", "vgg8b", "--feat-mult", "0.0625", "--num-hidden", "16"]}


def test_the_new_rules_are_global():
    assert {"backprop", "fa", "usf", "brsf", "frsf", "dfa", "drtp"} <= set(GLOBAL)


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("rule", GLOBAL)
def test_global_rule_runs_from_the_cli(tmp_path, rule, net):
    out = str(tmp_path / "run")
    res = CliRunner().invoke(main, ["train", "--rule", rule, *NETS[net], "--train-subset", "32",
                                    "--test-subset", "16", "--batch-size", "16", "--max-steps", "2",
                                    "--epochs", "1", "--no-progress", "--out", out])
    assert res.exit_code == 0, res.output
    rec = load_log(out + "/log.h5")["records"]
    assert len(rec) == 1 and np.isfinite(rec[0]["test_error"])


@pytest.mark.parametrize("rule", ["usf", "brsf", "frsf", "dfa", "drtp"])
def test_oracle_writes_the_feedback_under_fixed(rule):
    x, y = batch("mlp")
    cfg = make_cfg(rule, "mlp")
    res = compute_oracle(cfg, x, y, NUM_CLASSES)
    model = res["model"]
    assert set(res["grads"]) == set(model.params)
    fresh = model_for(cfg, "mlp", randomize=False)
    for k, v in bioplaus_grads(fresh, x, y).items():
        assert np.array_equal(v, res["grads"][k]), k
    fixed = res["fixed"]
    if rule in ("dfa", "drtp"):
        assert set(fixed) == {f"layers.{i}.direct.weight_fa" for i in range(2)}
        assert all(v.shape == (NUM_CLASSES, 16) for v in fixed.values())
        return
    for layer in ("layers.1.encoder", "layer_out"):
        B, W = fixed[layer + ".weight_fb"], res["params"][layer + ".weight"]
        assert (np.sign(B) == np.sign(W)).all() and (B != 0).all()
        if rule == "usf":
            assert np.allclose(np.abs(B), 1 / np.sqrt(3 * W.shape[1]))
        if rule == "frsf":
            assert np.array_equal(np.abs(B), fixed[layer + ".weight_mag"])

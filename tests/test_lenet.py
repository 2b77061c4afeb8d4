"""LeNet (--net lenet), the 32x32 input fit (resize/pad) and --init xavier-uniform."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bioplaus.cli import main
from bioplaus.config import Config, ConfigError, validate
from bioplaus.data.fit import fit_images, pad_to, resize_bilinear
from bioplaus.net.model import build_model
from bioplaus.net.spec import NetError, build_net


def test_lenet_parameter_count_and_shapes():
    spec = build_net("lenet", (1, 32, 32), 10)
    # conv1 6*1*25+6, conv2 16*6*25+16, conv3 120*16*25+120, fc 120*84+84, out 84*10+10
    expected = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (120 * 16 * 25 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert expected == 61706
    assert spec.encoder_param_count() == expected
    model = build_model(Config(rule="backprop", net="lenet"), (1, 32, 32), 10)
    assert model.param_count() == expected
    assert not model.buffers  # no batch norm
    assert [b.out_shape for b in spec.blocks] == [(6, 14, 14), (16, 5, 5), (120, 1, 1), (84,)]
    assert build_net("lenet", (3, 32, 32), 10).encoder_param_count() == expected + 2 * 6 * 25


def test_lenet_refuses_other_sizes_and_names_the_option():
    with pytest.raises(NetError, match="--input-size 32"):
        build_net("lenet", (1, 28, 28), 10)


def test_resize_equals_torch_interpolate_and_pad_centres():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (3, 1, 28, 28))
    ref = F.interpolate(torch.tensor(x), size=(32, 32), mode="bilinear", align_corners=False)
    assert np.abs(resize_bilinear(x, 32) - ref.numpy()).max() < 1e-10
    u8 = x.astype(np.uint8)
    got = fit_images(u8, 32, "resize")
    assert got.dtype == np.uint8 and got.shape == (3, 1, 32, 32)
    assert np.abs(got.astype(float) - resize_bilinear(u8, 32)).max() <= 0.5 + 1e-9
    p = pad_to(u8, 32)
    assert (p[:, :, 2:30, 2:30] == u8).all() and p.sum() == u8.astype(np.int64).sum()
    assert fit_images(u8, 0, "resize") is u8
    with pytest.raises(ValueError, match="resize"):
        pad_to(u8, 20)


def test_xavier_uniform_init_bounds_and_zero_biases():
    cfg = Config(rule="fa", net="lenet", init="xavier-uniform")
    model = build_model(cfg, (1, 32, 32), 10, dtype=np.float64)
    for name in ("conv2.encoder.weight", "fc1.encoder.weight", "fc2.weight"):
        W = model.params[name]
        t = torch.empty(W.shape, dtype=torch.float64)
        torch.nn.init.xavier_uniform_(t)  # the bound torch uses, independently
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(t)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.9 * bound
        assert np.abs(t.numpy()).max() <= bound
        assert np.abs(model.params[name[:-6] + "bias"]).max() == 0
    for name in ("conv2.encoder.weight_fa", "fc2.weight_fa"):  # fa's B at Xavier's bound too
        B = model.fixed[name]
        bound = math.sqrt(6.0 / (B.shape[0] * np.prod(B.shape[2:]) + np.prod(B.shape[1:])))
        assert bound * 0.9 < np.abs(B).max() <= bound
    torch_model = build_model(cfg.replace(init="torch"), (1, 32, 32), 10, dtype=np.float64)
    assert np.abs(torch_model.params["fc1.encoder.bias"]).max() > 0
    with pytest.raises(ConfigError, match="--init must be one of torch, xavier-uniform"):
        validate(cfg.replace(init="xavier"))
    with pytest.raises(ConfigError, match="--input-fit must be one of resize, pad"):
        validate(cfg.replace(input_fit="crop"))


@pytest.mark.parametrize("fit", ["resize", "pad"])
def test_lenet_trains_from_the_cli(tmp_path, fit):
    out = str(tmp_path / "run")
    res = CliRunner().invoke(main, [
        "train", "--net", "lenet", "--rule", "backprop", "--input-size", "32", "--input-fit", fit,
        "--init", "xavier-uniform", "--optim", "sgd", "--momentum", "0.9", "--weight-decay", "1e-3",
        "--lr", "0.01", "--batch-size", "32", "--train-subset", "64", "--test-subset", "32",
        "--max-steps", "2", "--epochs", "1", "--no-progress", "--out", out])
    assert res.exit_code == 0, res.output
    assert os.path.exists(os.path.join(out, "checkpoint.h5"))


@pytest.mark.parametrize("rule", ["backprop", "fa"])
def test_lenet_step_equals_torch(rule):
    """LeNet's blocks without batch norm, 5x5 valid convolutions and its pools,
    against torch autograd (fa: the custom Functions of tests/rules/torch_ref.py)."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "rules"))
    from rule_cases import assert_grads_close, batch, bioplaus_grads, make_cfg, model_for, snapshot
    from torch_ref import TorchRule

    x, y = batch("lenet")
    model = model_for(make_cfg(rule, "lenet"), "lenet")
    expected = TorchRule(model, snapshot(model.params), snapshot(model.buffers)).grads(x, y)
    got = bioplaus_grads(model, x, y)
    assert set(got) == set(expected) == set(model.params)
    assert_grads_close(got, expected, 1e-8, who=rule)

"""usf, brsf, frsf, dfa, drtp: identities with backprop and hand-worked examples.

Identities (on the mlp and the VGG net with batch norm where they apply):

* usf with every W set to s sign(W) (its own magnitude), frsf with its fixed
  magnitudes set to |W|, and brsf's recursion with the magnitude |W| equal
  backprop;
* dfa on a one-hidden-layer net with B_1 = W_out equals backprop.

Hand-worked: the one-block net of test_hand_worked.py (x, h written out
there); the output error and each rule's error into h are computed here
with plain NumPy from their definitions, the block's backward by hand.
"""
import math

import numpy as np
import pytest

from bioplaus.feedback import brsf_magnitude
from bioplaus.rules import signsym
from helpers import rel_error
from rule_cases import (assert_grads_close, batch, bioplaus_grads, make_cfg, model_for)
from test_hand_worked import H, Y_LABELS, bn_relu_encoder_backward, one_block, run
from test_identities import twin

TOL = 1e-10
NETS = ["mlp", "vgg"]


def weight_layers(model):
    """``(layer, W name)`` of every weight layer whose feedback is used (not the first)."""
    out = [(b.name + ".encoder", b.name + ".encoder.weight") for b in model.spec.blocks[1:]]
    return out + [(model.spec.out_name, model.spec.out_name + ".weight")]


@pytest.mark.parametrize("net", NETS)
def test_usf_with_weights_of_magnitude_s_is_backprop(net):
    x, y = batch(net)
    usf = model_for(make_cfg("usf", net), net)
    bp = twin("backprop", usf, net)
    first = usf.spec.blocks[0].name + ".encoder.weight"
    assert rel_error(bioplaus_grads(usf, x, y)[first], bioplaus_grads(bp, x, y)[first]) > 1e-3
    for _, w in weight_layers(usf):
        W = usf.params[w]
        s = 1.0 / math.sqrt(3.0 * np.prod(W.shape[1:]))  # std of U(+-1/sqrt(fan_in))
        usf.params[w] = s * np.sign(W)
    bp = twin("backprop", usf, net)
    assert_grads_close(bioplaus_grads(usf, x, y), bioplaus_grads(bp, x, y), TOL, who="usf")


@pytest.mark.parametrize("net", NETS)
def test_frsf_with_magnitude_abs_W_is_backprop(net):
    x, y = batch(net)
    fr = model_for(make_cfg("frsf", net), net)
    assert set(fr.fixed) == ({b.name + ".encoder.weight_mag" for b in fr.spec.blocks}
                             | {fr.spec.out_name + ".weight_mag"})
    for layer, w in weight_layers(fr):
        assert (fr.fixed[layer + ".weight_mag"] >= 0).all()
        fr.fixed[layer + ".weight_mag"] = np.abs(fr.params[w])
    bp = twin("backprop", fr, net)
    assert_grads_close(bioplaus_grads(fr, x, y), bioplaus_grads(bp, x, y), TOL, who="frsf")


@pytest.mark.parametrize("net", NETS)
def test_brsf_recursion_with_magnitude_abs_W_is_backprop_and_redraws_each_step(net):
    from bioplaus import losses
    x, y = batch(net)
    br = model_for(make_cfg("brsf", net), net)
    Y = losses.one_hot(y, br.spec.num_classes, np.float64, np)
    g, _, _ = signsym.sign_updates(br, x, y, Y, [None] * len(br.spec.blocks),
                                   magnitude=lambda m, layer, i, W, step: np.abs(W))
    bp = twin("backprop", br, net)
    assert_grads_close(g, bioplaus_grads(bp, x, y), TOL, who="brsf(|R|=|W|)")
    # R_t: the same at the same (seed, layer, step), another at the next step
    shape = br.params[br.spec.out_name + ".weight"].shape
    r0, r0b, r1 = (brsf_magnitude(np, 3, 2, t, shape, np.float64) for t in (0, 0, 1))
    assert (r0 == r0b).all() and not np.allclose(r0, r1) and (r0 >= 0).all()
    assert np.abs(r0).max() <= 1 / math.sqrt(shape[1])
    g0, _, _ = signsym.global_updates(br, x, y, Y, [None] * len(br.spec.blocks), step=0)
    g1, _, _ = signsym.global_updates(br, x, y, Y, [None] * len(br.spec.blocks), step=1)
    first = br.spec.blocks[0].name + ".encoder.weight"
    assert rel_error(g0[first], g1[first]) > 1e-3


def test_dfa_one_hidden_layer_with_B_equal_W_out_is_backprop():
    x, y = batch("mlp")
    cfg = make_cfg("dfa", "mlp", num_layers=1)
    dfa = model_for(cfg, "mlp")
    dfa.fixed["layers.0.direct.weight_fa"] = dfa.params["layer_out.weight"].copy()
    bp = twin("backprop", dfa, "mlp", num_layers=1)
    assert_grads_close(bioplaus_grads(dfa, x, y), bioplaus_grads(bp, x, y), TOL, who="dfa(B=W)")
    # with two hidden layers the last one's error still comes straight from e (not W_out)
    two = model_for(make_cfg("dfa", "mlp"), "mlp")
    bp2 = twin("backprop", two, "mlp")
    two.fixed["layers.1.direct.weight_fa"] = two.params["layer_out.weight"].copy()
    g, gb = bioplaus_grads(two, x, y), bioplaus_grads(bp2, x, y)
    assert rel_error(g["layers.1.encoder.weight"], gb["layers.1.encoder.weight"]) < TOL
    assert rel_error(g["layers.0.encoder.weight"], gb["layers.0.encoder.weight"]) > 1e-3


# ---------------------------------------------------------------- hand-worked
W_OUT = np.array([[0.5, -1.0], [-0.25, 2.0]])
Y1 = np.eye(2)[Y_LABELS]


def output_error():
    """e = (softmax(h W_out^T) - Y) / 4 (bias 0), by plain NumPy."""
    z = np.array(H) @ W_OUT.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return (p - Y1) / 4


def check(model, dh):
    """The rule's grads equal the hand backward of ``dh`` and the output layer's true gradient."""
    g = run(model)
    e = output_error()
    dW, dgamma, dbeta = bn_relu_encoder_backward(dh)
    assert np.abs(g["layers.0.encoder.weight"] - dW).max() < 1e-9
    assert np.abs(g["layers.0.bn.weight"] - dgamma).max() < 1e-9
    assert np.abs(g["layers.0.bn.bias"] - dbeta).max() < 1e-9
    assert np.abs(g["layer_out.weight"] - e.T @ np.array(H)).max() < 1e-12
    assert np.abs(g["layer_out.bias"] - e.sum(0)).max() < 1e-12
    assert np.abs(dW).max() > 1e-3


def test_hand_worked_sign_concordant():
    e = output_error()
    # usf: B = s sign(W_out), s = 1/sqrt(3 * 2) (U(+-1/sqrt(2)) has std 1/sqrt(6))
    m = one_block("usf")
    m.params["layer_out.weight"] = W_OUT.copy()
    check(m, e @ (np.sign(W_OUT) / math.sqrt(6)))
    # frsf: B = |B_0| sign(W_out), |B_0| set by hand
    m = one_block("frsf")
    m.params["layer_out.weight"] = W_OUT.copy()
    m.fixed["layer_out.weight_mag"] = np.array([[0.1, 0.2], [0.3, 0.4]])
    check(m, e @ (np.array([[0.1, -0.2], [-0.3, 0.4]])))
    # brsf: B = |R_0| sign(W_out), R_0 the step's random draw
    m = one_block("brsf")
    m.params["layer_out.weight"] = W_OUT.copy()
    R = brsf_magnitude(np, 0, 1, 0, (2, 2), np.float64)
    check(m, e @ (R * np.sign(W_OUT)))


def test_hand_worked_direct():
    e = output_error()
    B = np.array([[1.0, -0.5], [0.25, 2.0]])  # (C, N) = (2, 2)
    m = one_block("dfa")
    m.params["layer_out.weight"] = W_OUT.copy()
    m.fixed["layers.0.direct.weight_fa"] = B
    check(m, e @ B)  # dh_i = sum_c e_ic B_c.
    m = one_block("drtp")
    m.params["layer_out.weight"] = W_OUT.copy()
    m.fixed["layers.0.direct.weight_fa"] = B
    # the target, not the error: rows of class 0 get B[0] = [1, -0.5], class 1 B[1]
    check(m, np.array([[1.0, -0.5], [1.0, -0.5], [0.25, 2.0], [0.25, 2.0]]))


def test_brsf_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """R_t comes from (seed, layer, step): a run cut after 3 steps and resumed ends
    with parameters bitwise equal to the run that went straight through."""
    from click.testing import CliRunner

    from bioplaus import io
    from bioplaus.cli import main

    opts = ["train", "--rule", "brsf", "--net", "mlp", "--num-layers", "2", "--num-hidden", "16",
            "--train-subset", "96", "--test-subset", "16", "--batch-size", "16", "--epochs", "1",
            "--optim", "sgd", "--momentum", "0.9", "--lr", "0.05", "--no-progress"]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert CliRunner().invoke(main, [*opts, "--out", full]).exit_code == 0
    assert CliRunner().invoke(main, [*opts, "--out", cut, "--max-steps", "3"]).exit_code == 0
    assert io.load_checkpoint(cut + "/checkpoint.h5")["step"] == 3
    res = CliRunner().invoke(main, ["train", "--out", cut, "--resume", "--max-steps", "0",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    a, b = io.load_checkpoint(full + "/checkpoint.h5"), io.load_checkpoint(cut + "/checkpoint.h5")
    assert a["step"] == b["step"] == 6
    for k, v in a["params"].items():
        assert np.array_equal(v, b["params"][k]), k

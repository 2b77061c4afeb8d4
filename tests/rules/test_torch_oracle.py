"""Every rule's update against PyTorch autograd, in float64 (SPEC §2-§4; issue item 6a).

For the rules whose update is the gradient of an objective (backprop, pred,
sim, predsim, sim-bio, glob+sim, frc-sym, frc-trainable) the torch side is
plain autograd of that objective: detached between blocks for the local and
frc rules, over the whole net for backprop and glob+sim. For pred-bio and
predsim-bio the decoder's own gradients are exact and the error into ``h``
crosses the fixed ``B`` (the reference's ``LinearFA``); fa, frc-sign and
frc-random are checked the same way, with custom autograd Functions that
carry the error through ``B`` or ``K`` (:mod:`torch_ref`).

Models are (a) an mlp of two fc blocks and (b) a small VGG net with batch
norm, padded average-pool decoders and an odd-sized max-pool, with every
parameter randomised (zero-initialised decoders would hide paths). After the
step, the batch-norm running statistics must equal torch's as well.
"""
import numpy as np
import pytest

from bioplaus.oracle import compute_oracle
from bioplaus.rules.registry import RULES
from bioplaus.net.forward import dropout_masks
from helpers import rel_error
from rule_cases import (NUM_CLASSES, assert_grads_close, batch, bioplaus_grads, make_cfg,
                        model_for, snapshot)
from torch_ref import TorchRule

TOL = 1e-8

#: Rules whose update is the exact gradient of their objective.
GRADIENT_RULES = ("backprop", "pred", "sim", "predsim", "sim-bio", "glob+sim", "frc-sym",
                  "frc-trainable")
#: Rules where an error crosses a fixed matrix (B or K) instead of the forward weight.
FEEDBACK_RULES = ("fa", "pred-bio", "predsim-bio", "frc-sign", "frc-random", "usf", "brsf",
                  "frsf", "dfa", "drtp")


def test_every_rule_is_checked_here():
    assert set(GRADIENT_RULES) | set(FEEDBACK_RULES) == set(RULES)


def compare(model, x, y, masks=None, exact=False):
    """Assert bioplaus' step equals torch's, grads and running statistics."""
    params, buffers = snapshot(model.params), snapshot(model.buffers)
    ref = TorchRule(model, params, buffers, exact=exact)
    expected = ref.grads(x, y, masks)
    got = bioplaus_grads(model, x, y, masks)
    assert set(got) == set(expected) == set(model.params)
    assert_grads_close(got, expected, TOL, who=model.rule.name)
    stats = ref.running_stats()
    for k, v in model.buffers.items():
        assert rel_error(v, stats[k]) < TOL, f"running statistic {k}"
        assert not np.allclose(v, buffers[k]), f"{k} was not updated"
    return got, expected


@pytest.mark.parametrize("net", ["mlp", "vgg"])
@pytest.mark.parametrize("rule", list(RULES))
def test_rule_equals_torch(rule, net, xp):
    x, y = batch(net)
    model = model_for(make_cfg(rule, net), net, xp=xp)
    compare(model, x, y)


@pytest.mark.parametrize("net", ["mlp", "vgg"])
@pytest.mark.parametrize("rule", ["backprop", "fa", "predsim", "predsim-bio", "glob+sim",
                                  "frc-sign", "brsf", "dfa"])
def test_rule_equals_torch_with_dropout_masks(rule, net):
    """The same dropout masks on both sides: the local losses read h before
    dropout, the next block (and frc's classifier) the dropped-out output,
    and the global rules' errors cross the masks."""
    x, y = batch(net, seed=1)
    cfg = make_cfg(rule, net, dropout=0.3)
    model = model_for(cfg, net)
    masks = dropout_masks(model, x.shape[0], 0.3, seed=5, step=0)
    assert all(m is not None and (m == 0).any() for m in masks)
    compare(model, x, y, masks)


@pytest.mark.parametrize("rule", ["pred", "sim", "predsim", "glob+sim", "sim-bio"])
def test_leaky_relu(rule):
    x, y = batch("vgg", seed=2)
    compare(model_for(make_cfg(rule, "vgg", nonlin="leakyrelu"), "vgg"), x, y)


@pytest.mark.parametrize("net", ["mlp", "vgg"])
@pytest.mark.parametrize("rule", ["backprop", "fa", "usf", "dfa", "drtp", "predsim", "pred-bio"])
def test_tanh(rule, net):
    """``--nonlin tanh`` (DRTP's own hidden nonlinearity, Frenkel et al.): the
    derivative each rule applies is 1 - h^2, through batch norm where the net has it."""
    x, y = batch(net, seed=9)
    compare(model_for(make_cfg(rule, net, nonlin="tanh"), net), x, y)


@pytest.mark.parametrize("rule", ["frc-sym", "frc-trainable", "frc-sign", "frc-random"])
def test_frc_squared_hinge(rule):
    x, y = batch("vgg", seed=3)
    compare(model_for(make_cfg(rule, "vgg", frc_loss="hinge"), "vgg"), x, y)


@pytest.mark.parametrize("net", ["vgg-nofc", "vgg-stl"])
@pytest.mark.parametrize("rule", ["backprop", "fa", "predsim", "predsim-bio", "frc-sym"])
def test_other_vgg_shapes(rule, net):
    """No fc block (the output layer is ``classifier``), and the 7x7 stride-2
    first convolution of inputs larger than 64 px with odd map sizes."""
    x, y = batch(net, seed=8)
    compare(model_for(make_cfg(rule, net), net), x, y)


@pytest.mark.parametrize("rule", ["predsim", "predsim-bio"])
@pytest.mark.parametrize("beta", [0.3, 0.01])
def test_predsim_beta(rule, beta):
    x, y = batch("mlp", seed=4)
    compare(model_for(make_cfg(rule, "mlp", beta=beta), "mlp"), x, y)


@pytest.mark.parametrize("rule", ["pred-bio", "predsim-bio"])
def test_bio_decoder_grads_are_exact(rule):
    """The bio decoder's own weight and bias get the exact gradient of the
    BCE objective: the same with or without B in the error path."""
    x, y = batch("vgg", seed=6)
    model = model_for(make_cfg(rule, "vgg", beta=0.5), "vgg")
    params, buffers = snapshot(model.params), snapshot(model.buffers)
    exact = TorchRule(model, params, buffers, exact=True).grads(x, y)
    got = bioplaus_grads(model, x, y)
    dec = [k for k in got if ".decoder_y." in k]
    assert len(dec) == 2 * len(model.spec.blocks)
    assert_grads_close(got, exact, TOL, keys=dec, who=rule)
    # ... and B does change the encoder's update (it is not W in disguise)
    enc = [k for k in got if k.endswith("encoder.weight")]
    assert all(rel_error(got[k], exact[k]) > 1e-3 for k in enc)


@pytest.mark.parametrize("rule", list(RULES))
def test_oracle_at_initialisation_equals_torch(rule):
    """compute_oracle's float64 step from the initial parameters (zero decoders,
    zero output layer under local rules) equals torch's on the same arrays."""
    x, y = batch("vgg", seed=7)
    cfg = make_cfg(rule, "vgg")
    res = compute_oracle(cfg, x, y, NUM_CLASSES)
    model = res["model"]
    ref = TorchRule(model, res["params"], res["buffers"])
    expected = ref.grads(x, y)
    assert set(res["grads"]) == set(expected)
    assert res["no_update"] == []
    # under pred the zero decoders send no error into h yet: the encoder and
    # batch-norm gradients are exactly zero on both sides.
    assert_grads_close(res["grads"], expected, TOL, who=rule, allow_zero=True)
    assert set(res["params"]) == set(model.params)
    extra = set(res["fixed"]) - set(model.fixed)  # the sign rules' feedback of this step
    assert set(model.fixed) <= set(res["fixed"])
    assert all(k.endswith(".weight_fb") for k in extra)
    assert bool(extra) == (rule in ("usf", "brsf", "frsf"))

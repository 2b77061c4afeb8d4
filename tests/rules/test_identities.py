"""Identities between rules (issue item 6b; DESIGN 'How the math is checked').

* fa with B = W (every encoder and the output layer) equals backprop;
* frc-sign with |K| = |M^T| equals frc-sym;
* predsim with beta = 0 equals pred, with beta = 1 equals sim, on the
  parameters they share;
* pred-bio's decoder with B = W gives the exact gradient of its BCE
  objective (torch autograd without the feedback-alignment Function);
* frc-trainable's first update of every block equals frc-sym's with the same M.

Each identity is checked on the mlp and on the VGG net with batch norm.
"""
import numpy as np
import pytest

from helpers import rel_error
from rule_cases import (assert_grads_close, batch, bioplaus_grads, make_cfg, model_for,
                        snapshot)
from torch_ref import TorchRule

TOL = 1e-10
NETS = ["mlp", "vgg"]


def twin(rule, like, net, **kw):
    """A model of ``rule`` whose shared parameters are copies of ``like``'s."""
    model = model_for(make_cfg(rule, net, **kw), net)
    for k in model.params:
        if k in like.params:
            model.params[k] = like.params[k].copy()
    return model


@pytest.mark.parametrize("net", NETS)
def test_fa_with_B_equal_W_is_backprop(net):
    x, y = batch(net)
    fa = model_for(make_cfg("fa", net), net)
    # FA's own B differs from W, so the two rules differ ...
    bp = twin("backprop", fa, net)
    g_fa, g_bp = bioplaus_grads(fa, x, y), bioplaus_grads(bp, x, y)
    first = fa.spec.blocks[0].name + ".encoder.weight"
    assert rel_error(g_fa[first], g_bp[first]) > 1e-3
    # ... until every B is set to its W.
    fa = twin("fa", bp, net)
    n_b = 0
    for k in fa.fixed:
        assert k.endswith(".weight_fa")
        fa.fixed[k] = fa.params[k[:-3]].copy()  # '<layer>.weight_fa' -> '<layer>.weight'
        n_b += 1
    assert n_b == len(fa.spec.blocks) + 1
    bp = twin("backprop", fa, net)
    assert_grads_close(bioplaus_grads(fa, x, y), bioplaus_grads(bp, x, y), TOL, who="fa(B=W)")


@pytest.mark.parametrize("net", NETS)
def test_frc_sign_with_abs_K_equal_abs_M_is_frc_sym(net):
    x, y = batch(net)
    sign = model_for(make_cfg("frc-sign", net), net)
    sym = twin("frc-sym", sign, net)
    for b in sign.spec.blocks:
        p = b.name + "."
        M, K = sign.fixed[p + "frc.M"], sign.fixed[p + "frc.K"]
        np.testing.assert_array_equal(M, sym.fixed[p + "frc.M"])  # the same (seed, layer) M
        assert (np.sign(K) == np.sign(M.T)).all()  # sign-concordant ...
        assert rel_error(np.abs(K), np.abs(M.T)) > 0.1  # ... with other magnitudes
    g_before = bioplaus_grads(sign, x, y)
    sign = twin("frc-sign", sym, net)
    for b in sign.spec.blocks:
        p = b.name + "."
        K = sign.fixed[p + "frc.K"]
        sign.fixed[p + "frc.K"] = np.sign(K) * np.abs(sign.fixed[p + "frc.M"].T)
    g_sign, g_sym = bioplaus_grads(sign, x, y), bioplaus_grads(sym, x, y)
    assert_grads_close(g_sign, g_sym, TOL, who="frc-sign(|K|=|M^T|)")
    assert rel_error(g_before[first_weight(sign)], g_sym[first_weight(sign)]) > 1e-3


def first_weight(model):
    return model.spec.blocks[0].name + ".encoder.weight"


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("beta, other", [(0.0, "pred"), (1.0, "sim")])
def test_predsim_at_beta_0_and_1(net, beta, other):
    x, y = batch(net)
    ps = model_for(make_cfg("predsim", net, beta=beta), net)
    ref = twin(other, ps, net)
    g_ps, g_ref = bioplaus_grads(ps, x, y), bioplaus_grads(ref, x, y)
    shared = [k for k in g_ref if not k.startswith(ps.spec.out_name + ".")]
    assert_grads_close(g_ps, g_ref, TOL, keys=shared, who=f"predsim(beta={beta})")
    out = [k for k in g_ref if k.startswith(ps.spec.out_name + ".")]
    for k in out:  # the output layer's cross-entropy is scaled by (1 - beta)
        np.testing.assert_allclose(g_ps[k], (1 - beta) * g_ref[k], rtol=0, atol=1e-15)
    # the head the other rule lacks gets no (or a zero) update
    for k, v in g_ps.items():
        if k not in g_ref:
            assert not np.any(v), k


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("rule", ["pred-bio", "predsim-bio"])
def test_bio_decoder_with_B_equal_W_is_exact(net, rule):
    x, y = batch(net)
    model = model_for(make_cfg(rule, net, beta=0.5), net)
    for b in model.spec.blocks:
        p = b.name + ".decoder_y."
        model.fixed[p + "weight_fa"] = model.params[p + "weight"].copy()
    exact = TorchRule(model, snapshot(model.params), snapshot(model.buffers), exact=True)
    expected = exact.grads(x, y)
    assert_grads_close(bioplaus_grads(model, x, y), expected, 1e-8, who=f"{rule}(B=W)")


@pytest.mark.parametrize("net", NETS)
def test_frc_trainable_first_step_is_frc_sym(net):
    x, y = batch(net)
    sym = model_for(make_cfg("frc-sym", net), net)
    tr = twin("frc-trainable", sym, net)
    for b in tr.spec.blocks:
        p = b.name + "."
        # frc-trainable starts from the same (seed, layer) classifier M ...
        np.testing.assert_array_equal(
            model_for(make_cfg("frc-trainable", net), net, randomize=False).params[p + "frc.M"],
            sym.fixed[p + "frc.M"])
        tr.params[p + "frc.M"] = sym.fixed[p + "frc.M"].copy()
    g_tr, g_sym = bioplaus_grads(tr, x, y), bioplaus_grads(sym, x, y)
    # ... so its first update of every block's encoder and batch norm is frc-sym's,
    assert_grads_close(g_tr, g_sym, TOL, who="frc-trainable")
    # and it also updates M (frc-sym has no such parameter).
    extra = set(g_tr) - set(g_sym)
    assert extra == {b.name + ".frc.M" for b in tr.spec.blocks}
    assert all(np.abs(g_tr[k]).max() > 0 for k in extra)


@pytest.mark.parametrize("rule, finds_winners", [("predsim", False), ("pred-bio", False),
                                                 ("frc-sym", True), ("backprop", True)])
def test_max_pool_winners_are_found_only_where_an_error_comes_back(rule, finds_winners):
    # local losses read h and pass the pooled output on detached; frc's classifier
    # reads the pooled output, and backprop sends the error through every pool
    import dataclasses

    from bioplaus.evaluate import evaluate_batch

    asked = []
    x, y = batch("vgg")
    model = model_for(make_cfg(rule, "vgg"), "vgg")
    real = model.k.maxpool2d_forward

    def spy(x, k=2, stride=2, winner=True):
        asked.append(winner)
        return real(x, k, stride, winner=winner)

    model.k = dataclasses.replace(model.k, maxpool2d_forward=spy)
    grads = bioplaus_grads(model, x, y)
    assert asked and set(asked) == {finds_winners}
    assert all(np.isfinite(g).all() for g in grads.values())
    asked.clear()
    evaluate_batch(model, x)
    assert asked and set(asked) == {False}

"""bioplaus.align: known answers for the angles between rule updates and the true gradient."""
import math

import numpy as np
import pytest

from bioplaus import align, backend
from bioplaus.config import Config
from bioplaus.net.model import build_model
from bioplaus.rules.registry import RULES

C = 4
SHAPE = (1, 6, 6)


def _model(rule, xp=np, *, dropout=0.0, seed=3, randomize_out=True, **kw):
    """A float64 mlp of two 16-unit blocks; the zero-initialised output layer and
    decoders get random values (with W_out = 0 no error reaches the blocks)."""
    cfg = Config(rule=rule, net="mlp", num_layers=2, num_hidden=16, seed=seed,
                 target_proj_size=8, dtype="float64", dropout=dropout, **kw)
    m = build_model(cfg, SHAPE, C, xp=xp, dtype=np.float64)
    if randomize_out:
        rng = np.random.default_rng(seed + 100)
        for k, v in m.params.items():
            if k.endswith("layer_out.weight") or k.endswith("decoder_y.weight"):
                m.params[k] = backend.to_device(0.3 * rng.standard_normal(v.shape), xp, np.float64)
    return m


def _batch(seed=0, n=16):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    rng.shuffle(y)
    return rng.standard_normal((n,) + SHAPE), y.astype(np.int64)


# ----------------------------------------------------------------- the angle
def test_angle_of_parallel_antiparallel_orthogonal_vectors():
    a = np.array([[3.0, 0.0], [0.0, 4.0]])
    assert align.angle_deg(a, 2.5 * a) == 0.0
    assert align.angle_deg(a, -a) == pytest.approx(180.0, abs=1e-12)
    assert align.angle_deg(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == pytest.approx(90.0)
    assert align.angle_deg(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(45.0)
    assert align.norm_ratio(2.5 * a, a) == pytest.approx(2.5)
    assert math.isnan(align.angle_deg(a, np.zeros_like(a)))
    assert math.isnan(align.norm_ratio(a, np.zeros_like(a)))


def test_independent_random_1024x1024_matrices_are_at_90_degrees():
    rng = np.random.default_rng(7)
    for _ in range(3):
        a, b = rng.standard_normal((2, 1024, 1024))
        assert abs(align.angle_deg(a, b) - 90.0) < 3.0
    # and the angle does not depend on the scale or on float32 storage
    a, b = rng.standard_normal((2, 1024, 1024))
    assert align.angle_deg(a.astype(np.float32), 5 * b) == pytest.approx(align.angle_deg(a, b),
                                                                          abs=1e-4)


# ------------------------------------------------ the rule against its twin
def test_backprop_against_itself_is_zero_degrees_ratio_one(xp):
    m = _model("backprop", xp, dropout=0.2)
    x, y = _batch()
    res = align.batch_alignment(m, x, y, align.step_masks(m, 16, 5))
    assert set(res) == set(align.compared_params(m))
    assert len(res) == 2 * 4 + 2
    for name, (ang, rat) in res.items():
        assert ang < 1e-6, name
        assert rat == pytest.approx(1.0, abs=1e-12), name


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_runs_and_its_output_layer_follows_the_global_gradient(rule):
    m = _model(rule, dropout=0.1)
    res = align.alignment(m, [_batch(0), _batch(1)], first_step=3)
    rows = {r["param"]: r for r in res["params"]}
    assert list(rows) == align.compared_params(m)
    # the output layer's update is the gradient of the output loss itself,
    # weighted by 1 - beta where the rule mixes it with sim (predsim, predsim-bio)
    scale = 1.0 - m.cfg.beta if m.rule.uses_beta else 1.0
    for p in ("layer_out.weight", "layer_out.bias"):
        assert rows[p]["angle"] < 1e-6, (rule, p)
        assert rows[p]["ratio"] == pytest.approx(scale, rel=1e-10), (rule, p)
    for name, r in rows.items():  # every block's angle is defined and in range
        assert r["defined"] == 2, name
        assert 0.0 <= r["angle"] <= 180.0 and r["ratio"] > 0.0, name
    hidden = [r["angle"] for r in res["params"] if r["layer"] != "layer_out"]
    if rule == "backprop":
        assert max(hidden) < 1e-6
    else:  # every other rule's blocks move off the gradient
        assert max(hidden) > 1.0
    text = align.format_table(res)
    assert "layers.1.encoder.weight" in text and rule in text


def test_predsim_output_ratio_follows_beta():
    m = _model("predsim", beta=0.75)
    res = align.batch_alignment(m, *_batch())
    ang, rat = res["layer_out.weight"]
    assert ang < 1e-6 and rat == pytest.approx(0.25, rel=1e-12)


def test_fa_with_b_equal_to_w_is_backprop():
    m = _model("fa")
    for k in list(m.fixed):
        if k.endswith("weight_fa"):
            m.fixed[k] = m.params[k[: -len("_fa")]].copy()
    fb = align.feedback_angles(m)
    assert set(fb) == {"layers.1.encoder B~W", "layer_out B~W"}
    assert all(v < 1e-6 for v in fb.values())
    for name, (ang, rat) in align.batch_alignment(m, *_batch()).items():
        assert ang < 1e-6 and rat == pytest.approx(1.0, abs=1e-12), name


def test_fa_random_feedback_starts_near_90_degrees():
    m = _model("fa")
    fb = align.feedback_angles(m)
    # fixed random B against an independent W (16 x 16 and 4 x 16: wide spread)
    assert all(40.0 < v < 140.0 for v in fb.values()), fb


def test_frc_sign_with_magnitudes_of_m_is_zero_degrees():
    m = _model("frc-sign")
    fb = align.feedback_angles(m)
    assert set(fb) == {"layers.0.frc K~M^T", "layers.1.frc K~M^T"}
    for b in m.spec.blocks:
        p = b.name + "."
        K, MT = m.fixed[p + "frc.K"], m.fixed[p + "frc.M"].T
        assert np.array_equal(np.sign(K), np.sign(MT))  # sign-concordant as built
        assert 0.5 < fb[p + "frc K~M^T"] < 89.0  # random magnitudes: part-way aligned
        m.fixed[p + "frc.K"] = np.sign(K) * np.abs(MT)
    assert all(v < 1e-6 for v in align.feedback_angles(m).values())


def test_frc_sym_feedback_is_m_transposed_and_frc_random_is_not():
    assert all(v < 1e-6 for v in align.feedback_angles(_model("frc-sym")).values())
    fb = align.feedback_angles(_model("frc-random"))
    assert all(50.0 < v < 130.0 for v in fb.values()), fb


def test_bio_decoders_feedback_against_the_decoder():
    m = _model("pred-bio")
    fb = align.feedback_angles(m)
    assert set(fb) == {"layers.0.decoder_y B~W", "layers.1.decoder_y B~W"}
    for b in m.spec.blocks:
        p = b.name + "."
        m.params[p + "decoder_y.weight"] = 3.0 * m.fixed[p + "decoder_y.weight_fa"]
    assert all(v < 1e-6 for v in align.feedback_angles(m).values())
    assert align.feedback_angles(_model("predsim")) == {}


# ---------------------------------------------------- the twin is the truth
def test_backprop_twin_gradient_matches_finite_differences_of_the_output_loss():
    from bioplaus import losses
    from bioplaus.net.forward import forward_block, output_layer

    m = _model("predsim")
    x, y = _batch(n=8)
    twin = align.backprop_twin(align.diagnostic_copy(m))
    g = align._updates(twin, x, y, [None, None])

    def loss():
        a = x
        for b in twin.spec.blocks:
            a, _, _ = forward_block(twin, b, a, None, True)
        logits, _ = output_layer(twin, a)
        return float(losses.softmax_cross_entropy(logits, y)[0])

    rng = np.random.default_rng(1)
    for name in ("layers.0.encoder.weight", "layers.1.bn.weight", "layers.0.bn.bias"):
        P = twin.params[name]
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in P.shape)
            old = P[idx]
            P[idx] = old + 1e-6
            up = loss()
            P[idx] = old - 1e-6
            down = loss()
            P[idx] = old
            assert g[name][idx] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-10), name


def test_diagnostics_run_on_the_reference_kernels():
    from bioplaus import kernels

    m = _model("fa")
    m.k = kernels.fast()  # what a run holds by default
    diag = align.diagnostic_copy(m)
    assert diag.k is kernels.REFERENCE and align.backprop_twin(diag).k is kernels.REFERENCE
    assert m.k is kernels.fast() and diag.params["layers.0.encoder.weight"] is not \
        m.params["layers.0.encoder.weight"]


def test_the_model_is_left_untouched():
    m = _model("predsim", dropout=0.2)
    m.params = {k: v.astype(np.float32) for k, v in m.params.items()}
    m.dtype = np.float32
    before = {k: v.copy() for d in (m.params, m.buffers, m.fixed) for k, v in d.items()}
    res = align.alignment(m, [_batch(0), _batch(1)])
    after = {k: v for d in (m.params, m.buffers, m.fixed) for k, v in d.items()}
    assert set(before) == set(after)
    for k in before:
        assert after[k].dtype == before[k].dtype and np.array_equal(after[k], before[k]), k
    assert res["batches"] == 2


def test_zero_output_layer_leaves_the_blocks_undefined():
    # at initialisation a local rule's output weight is zero: no error crosses it,
    # so the global gradient of every block is exactly zero (angle undefined)
    m = _model("pred", randomize_out=False)
    assert not np.any(m.params["layer_out.weight"])
    res = align.alignment(m, [_batch()])
    for r in res["params"]:
        if r["layer"] != "layer_out":
            assert r["angle"] is None and r["defined"] == 0, r
    assert "n/a" in align.format_table(res)


def test_every_rule_on_a_small_vgg():
    # conv blocks, max-pools and the decoders' average pools: the output layer
    # follows the gradient, fixed feedback is found for every block that has one
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 2, 12, 12))
    y = np.arange(8) % C
    for rule in RULES:
        cfg = Config(rule=rule, net="vgg6a", feat_mult=1 / 32, num_layers=1, num_hidden=16,
                     dim_in_decoder=32, seed=3, target_proj_size=8, dtype="float64", dropout=0.1)
        m = build_model(cfg, (2, 12, 12), C, dtype=np.float64)
        o = m.spec.out_name + ".weight"
        m.params[o] = 0.3 * rng.standard_normal(m.params[o].shape)
        res = align.alignment(m, [(x, y)])
        rows = {r["param"]: r for r in res["params"]}
        assert len(rows) == 4 * len(m.spec.blocks) + 2, rule
        assert rows[o]["angle"] < 1e-6, rule
        n_fb = {"fa": len(m.spec.blocks), "pred-bio": len(m.spec.blocks),
                "predsim-bio": len(m.spec.blocks), "frc-sym": len(m.spec.blocks),
                "frc-sign": len(m.spec.blocks), "frc-random": len(m.spec.blocks)}.get(rule, 0)
        assert len(res["feedback"]) == n_fb, (rule, res["feedback"])
        if rule == "backprop":
            assert all(r["angle"] < 1e-6 for r in rows.values())

r"""One tiny example per family, worked by hand (issue item 6c).

The expected numbers are computed here from scalar formulas, step by step,
with the intermediate values written in the comments; nothing below calls
the functions under test to get an expected value.

The shared net is one fc block (2 inputs -> 2 units) with batch norm and
ReLU, 2 classes and a batch of n = 4::

    x = [[-3,  1],        encoder W = I, b = 0        ->  a = x
         [-1, -1],        batch norm, gamma = 1, beta = 0:
         [ 1, -1],          column 1: mean 0, var 5 -> sigma_1 = sqrt(5 + 1e-5)
         [ 3,  1]]          column 2: mean 0, var 1 -> sigma_2 = sqrt(1 + 1e-5)
    y = [0, 0, 1, 1]      z = a / sigma, write r1 = 1/sigma_1 ~ 0.4472131,
                                              r2 = 1/sigma_2 ~ 0.9999950
    h = relu(z) = [[0,    r2],
                   [0,    0 ],
                   [r1,   0 ],
                   [3 r1, r2]]
"""
import math

import numpy as np
import pytest

from bioplaus.config import Config
from bioplaus.kernels import REFERENCE
from bioplaus.net.model import build_model
from bioplaus.rules.frc import frc_block_update
from bioplaus.rules.local import sim_loss_learned
from bioplaus.rules.step import step_updates

EPS = 1e-5
X = np.array([[-3.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [3.0, 1.0]])
Y_LABELS = np.array([0, 0, 1, 1])
R1, R2 = 1 / math.sqrt(5 + EPS), 1 / math.sqrt(1 + EPS)
H = [[0.0, R2], [0.0, 0.0], [R1, 0.0], [3 * R1, R2]]
XHAT = [[-3 * R1, R2], [-R1, -R2], [R1, -R2], [3 * R1, R2]]
SIGMA = [1 / R1, 1 / R2]


def sigmoid(t):
    return 1 / (1 + math.exp(-t))


def one_block(rule, **kw):
    cfg = Config(rule=rule, net="mlp", num_layers=1, num_hidden=2, seed=0, dtype="float64", **kw)
    model = build_model(cfg, (2, 1, 1), 2, xp=np, dtype=np.float64, reference=True)
    model.params["layers.0.encoder.weight"] = np.eye(2)
    model.params["layers.0.encoder.bias"] = np.zeros(2)
    model.params["layers.0.bn.weight"] = np.ones(2)
    model.params["layers.0.bn.bias"] = np.zeros(2)
    model.params["layer_out.bias"] = np.zeros(2)
    return model


def run(model):
    grads = {}
    for upd in step_updates(model, X.reshape(4, 2, 1, 1), Y_LABELS, [None]):
        grads.update(upd.grads)
    return grads


def bn_relu_encoder_backward(dh):
    """The block's backward by hand: ReLU, batch norm (batch statistics), W = I.

    Per column j: dz = dh * 1[z > 0]; dbeta_j = sum_i dz_ij;
    dgamma_j = sum_i dz_ij xhat_ij; da_ij = (dz_ij - dbeta_j/4 - xhat_ij dgamma_j/4) / sigma_j;
    dW = da^T x; db = sum_i da_ij (0: batch norm removes the bias).
    """
    dz = [[dh[i][j] if XHAT[i][j] > 0 else 0.0 for j in range(2)] for i in range(4)]
    dbeta = [sum(dz[i][j] for i in range(4)) for j in range(2)]
    dgamma = [sum(dz[i][j] * XHAT[i][j] for i in range(4)) for j in range(2)]
    da = [[(dz[i][j] - dbeta[j] / 4 - XHAT[i][j] * dgamma[j] / 4) / SIGMA[j] for j in range(2)]
          for i in range(4)]
    dW = [[sum(da[i][r] * X[i][c] for i in range(4)) for c in range(2)] for r in range(2)]
    return np.array(dW), np.array(dgamma), np.array(dbeta)


def two_class_errors(logits):
    """e_i = (p_i0 - Y_i0) / n for softmax over 2 classes: p_i0 = sigmoid(l_i0 - l_i1).
    The CE error of example i is [e_i, -e_i]."""
    return [(sigmoid(li[0] - li[1]) - (1.0 if Y_LABELS[i] == 0 else 0.0)) / 4
            for i, li in enumerate(logits)]


def test_pred_first_step_from_zero_decoder():
    """pred at initialisation: decoder W_d = 0, b_d = 0 (and the output layer likewise).

    y_hat = 0 -> softmax = [1/2, 1/2] -> delta = (1/2 - Y) / 4:
      examples 0, 1 (class 0): [-1/8, +1/8]; examples 2, 3 (class 1): [+1/8, -1/8]
    dW_d[0] = sum_i delta_i0 h_i = -1/8 [0, r2] - 1/8 [0, 0] + 1/8 [r1, 0] + 1/8 [3 r1, r2]
            = [r1/2, 0];   dW_d[1] = [-r1/2, 0];   db_d = sum_i delta_i = [0, 0]
    dh = delta W_d = 0: the encoder and batch norm get exactly zero on this step.
    The output layer reads the same h with the same zero weights: the same numbers.
    """
    model = one_block("pred")
    model.params["layers.0.decoder_y.bias"] = np.zeros(2)
    g = run(model)
    expected_dW = np.array([[R1 / 2, 0.0], [-R1 / 2, 0.0]])
    for name in ("layers.0.decoder_y", "layer_out"):
        np.testing.assert_allclose(g[name + ".weight"], expected_dW, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(g[name + ".bias"], [0.0, 0.0], atol=1e-15)
    for name in ("encoder.weight", "encoder.bias", "bn.weight", "bn.bias"):
        np.testing.assert_array_equal(g["layers.0." + name], 0.0)


def pred_identity_decoder_expected():
    """pred with decoder W_d = I, b_d = 0, so y_hat = h:

    e_0 = (sigmoid(0 - r2) - 1)/4 ~ (0.268942 - 1)/4 = -0.182764
    e_1 = (sigmoid(0) - 1)/4      = -0.125
    e_2 = sigmoid(r1 - 0)/4       ~ 0.609977/4 = 0.152494
    e_3 = sigmoid(3 r1 - r2)/4    ~ 0.584590/4 = 0.146147
    delta_i = [e_i, -e_i]; dW_d = delta^T h; db_d = [sum e, -sum e]; dh = delta W_d = delta.
    """
    e = two_class_errors(H)
    delta = [[ei, -ei] for ei in e]
    dWd = np.array([[sum(delta[i][r] * H[i][c] for i in range(4)) for c in range(2)]
                    for r in range(2)])
    dbd = np.array([sum(e), -sum(e)])
    return e, delta, dWd, dbd


def test_pred_with_a_trained_decoder_reaches_the_encoder():
    e, delta, dWd, dbd = pred_identity_decoder_expected()
    assert abs(e[0] + 0.182764) < 1e-6 and abs(e[3] - 0.146147) < 1e-6  # the comment's numbers
    # Only examples 2, 3 pass ReLU in column 1, examples 0, 3 in column 2:
    # dz = [[0, -e0], [0, 0], [e2, 0], [e3, -e3]].
    dW, dgamma, dbeta = bn_relu_encoder_backward(delta)
    np.testing.assert_allclose(dbeta, [e[2] + e[3], -e[0] - e[3]], rtol=1e-12)
    np.testing.assert_allclose(dgamma, [R1 * e[2] + 3 * R1 * e[3], -R2 * e[0] - R2 * e[3]],
                               rtol=1e-12)
    model = one_block("pred")
    model.params["layers.0.decoder_y.weight"] = np.eye(2)
    model.params["layers.0.decoder_y.bias"] = np.zeros(2)
    g = run(model)
    np.testing.assert_allclose(g["layers.0.decoder_y.weight"], dWd, rtol=1e-10)
    np.testing.assert_allclose(g["layers.0.decoder_y.bias"], dbd, rtol=1e-10)
    np.testing.assert_allclose(g["layers.0.encoder.weight"], dW, rtol=1e-8)
    np.testing.assert_allclose(g["layers.0.bn.weight"], dgamma, rtol=1e-10)
    np.testing.assert_allclose(g["layers.0.bn.bias"], dbeta, rtol=1e-10)
    assert np.abs(g["layers.0.encoder.bias"]).max() < 1e-15


def test_backprop_and_fa_one_block():
    """backprop with the output layer W_o = I, b_o = 0 computes exactly pred's
    numbers above (the output layer plays the decoder). fa sends the same
    error through B_o = [[0, 1], [1, 0]] instead of W_o: dh_i = delta_i B_o =
    [-e_i, e_i] = -delta_i, so every encoder and batch-norm update flips sign,
    while the output layer's own update (exact in both) is unchanged."""
    e, delta, dWd, dbd = pred_identity_decoder_expected()
    dW, dgamma, dbeta = bn_relu_encoder_backward(delta)
    out = {}
    for rule in ("backprop", "fa"):
        model = one_block(rule)
        model.params["layer_out.weight"] = np.eye(2)
        if rule == "fa":
            model.fixed["layer_out.weight_fa"] = np.array([[0.0, 1.0], [1.0, 0.0]])
        out[rule] = g = run(model)
        np.testing.assert_allclose(g["layer_out.weight"], dWd, rtol=1e-10)
        np.testing.assert_allclose(g["layer_out.bias"], dbd, rtol=1e-10)
    bp, fa = out["backprop"], out["fa"]
    np.testing.assert_allclose(bp["layers.0.encoder.weight"], dW, rtol=1e-8)
    np.testing.assert_allclose(bp["layers.0.bn.weight"], dgamma, rtol=1e-10)
    np.testing.assert_allclose(bp["layers.0.bn.bias"], dbeta, rtol=1e-10)
    np.testing.assert_allclose(fa["layers.0.encoder.weight"], -dW, rtol=1e-8)
    np.testing.assert_allclose(fa["layers.0.bn.weight"], -dgamma, rtol=1e-10)
    np.testing.assert_allclose(fa["layers.0.bn.bias"], -dbeta, rtol=1e-10)


def test_sim_head_by_hand():
    r"""The similarity matching loss of one fc head, NN = I, n = 3, d = 3, C = 2.

    h = I (rows e_1, e_2, e_3); centred rows e_i - 1/3, norm sqrt(2/3):
      S(h) = [[1, -1/2, -1/2], [-1/2, 1, -1/2], [-1/2, -1/2, 1]]
    labels [0, 0, 1]: centred one-hot rows +-[1/2, -1/2], so
      S(Y) = [[1, 1, -1], [1, 1, -1], [-1, -1, 1]]
    D = S(h) - S(Y) = [[0, -3/2, 1/2], [-3/2, 0, 1/2], [1/2, 1/2, 0]]
    L = sum D^2 / 9 = (2 * 9/4 + 4 * 1/4) / 9 = 5.5 / 9 ~ 0.611111
    (up to the 1e-8 added to each norm: effects ~1e-9, hence atol 1e-8 below).
    The hand values: dh = [[0, -2/3, 2/3], [-2/3, 0, 2/3], [0, 0, 0]].
    Backward: dS = 2 D / 9; dXn = (dS + dS^T) Xn = 2 dS Xn;
    dXc_i = (dXn_i - Xn_i <Xn_i, dXn_i>) / ||Xc_i||; dX_i = dXc_i - mean(dXc_i);
    with NN = I: dh = dX and dW_NN = dX^T h = dX^T.
    """
    h = np.eye(3)
    Y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    D = [[0, -1.5, 0.5], [-1.5, 0, 0.5], [0.5, 0.5, 0]]
    L_hand = sum(v * v for row in D for v in row) / 9
    assert abs(L_hand - 5.5 / 9) < 1e-15
    c = math.sqrt(2 / 3)
    Xn = [[(1 if k == i else 0) - 1 / 3 for k in range(3)] for i in range(3)]
    Xn = [[v / c for v in row] for row in Xn]
    dS = [[2 * D[i][j] / 9 for j in range(3)] for i in range(3)]
    dXn = [[sum(2 * dS[i][j] * Xn[j][k] for j in range(3)) for k in range(3)] for i in range(3)]
    dX = []
    for i in range(3):
        proj = sum(Xn[i][k] * dXn[i][k] for k in range(3))
        dXc = [(dXn[i][k] - Xn[i][k] * proj) / c for k in range(3)]
        m = sum(dXc) / 3
        dX.append([v - m for v in dXc])
    dX = np.array(dX)
    np.testing.assert_allclose(dX, [[0, -2 / 3, 2 / 3], [-2 / 3, 0, 2 / 3], [0, 0, 0]], atol=1e-15)
    L, grads, dh = sim_loss_learned(h, Y, np.eye(3), "linear", k=REFERENCE)
    assert abs(L - L_hand) < 1e-7
    np.testing.assert_allclose(dh, dX, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grads["linear_loss.weight"], dX.T, rtol=1e-6, atol=1e-8)
    # scaled as in predsim: loss and gradients times beta
    L2, g2, dh2 = sim_loss_learned(h, Y, np.eye(3), "linear", scale=0.25, k=REFERENCE)
    assert abs(L2 - 0.25 * L) < 1e-15
    np.testing.assert_allclose(dh2, 0.25 * dh, rtol=1e-12)


@pytest.mark.parametrize("rule", ["frc-sym", "frc-sign", "frc-trainable"])
def test_frc_classifier_error_by_hand(rule):
    """Mostafa et al.'s local classifier on a block output f (n = 2, N = 2, C = 2).

    f = [[1, 0], [0, 2]], M = [[1, -1], [0.5, 0]]  ->  y_l = f M^T = [[1, 0.5], [-2, 0]]
    labels [0, 1]; softmax CE, mean over n = 2:
      e_0 = [sigmoid(0.5) - 1, 1 - sigmoid(0.5)] / 2 ~ [-0.188770, 0.188770]
      e_1 = [sigmoid(-2), -sigmoid(-2)] / 2          ~ [ 0.059601, -0.059601]
    error into the block: df_i = K e_i, K = M^T (sym, trainable) or
      K = [[2, 0.1], [-0.5, 0.2]] (sign: the signs of M^T = [[1, 0.5], [-1, 0]] where nonzero)
    trainable also updates M: dM = e^T f.
    """
    model = one_block(rule)
    M = np.array([[1.0, -1.0], [0.5, 0.0]])
    K = M.T if rule != "frc-sign" else np.array([[2.0, 0.1], [-0.5, 0.2]])
    if rule == "frc-trainable":
        model.params["layers.0.frc.M"] = M
    else:
        model.fixed["layers.0.frc.M"] = M
        model.fixed["layers.0.frc.K"] = K
    f = np.array([[1.0, 0.0], [0.0, 2.0]])
    s0, s1 = sigmoid(0.5), sigmoid(-2.0)
    e = np.array([[s0 - 1, 1 - s0], [s1, -s1]]) / 2
    assert abs(e[0, 0] + 0.188770) < 1e-6 and abs(e[1, 0] - 0.059601) < 1e-6
    df_hand = np.array([[K[0, 0] * e[i, 0] + K[0, 1] * e[i, 1],
                         K[1, 0] * e[i, 0] + K[1, 1] * e[i, 1]] for i in range(2)])
    L_hand = -(math.log(s0) + math.log(1 - s1)) / 2
    L, grads, df, y_l = frc_block_update(model, model.spec.blocks[0], f, np.array([0, 1]))
    np.testing.assert_allclose(y_l, [[1.0, 0.5], [-2.0, 0.0]], rtol=1e-15)
    assert abs(L - L_hand) < 1e-12
    np.testing.assert_allclose(df, df_hand, rtol=1e-12)
    if rule == "frc-trainable":
        dM = np.array([[sum(e[i, r] * f[i, c] for i in range(2)) for c in range(2)]
                       for r in range(2)])
        np.testing.assert_allclose(grads["layers.0.frc.M"], dM, rtol=1e-12)
    else:
        assert grads == {}


def test_frc_squared_hinge_by_hand():
    """Squared hinge on the same scores y_l = [[1, 0.5], [-2, 0]], labels [0, 1]:
    targets t = [[1, -1], [-1, 1]]; margins max(0, 1 - t y) = [[0, 1.5], [0, 1]];
    L = (0 + 2.25 + 0 + 1) / 2 = 1.625; dL/dy = -(2/2) t * margin = [[0, 1.5], [0, -1]];
    with K = M^T: df_0 = M^T [0, 1.5] = [0.75, 0], df_1 = M^T [0, -1] = [-0.5, 0]."""
    model = one_block("frc-sym", frc_loss="hinge")
    M = np.array([[1.0, -1.0], [0.5, 0.0]])
    model.fixed["layers.0.frc.M"], model.fixed["layers.0.frc.K"] = M, M.T
    L, _, df, _ = frc_block_update(model, model.spec.blocks[0], np.array([[1.0, 0.0], [0.0, 2.0]]),
                                   np.array([0, 1]))
    assert abs(L - 1.625) < 1e-14
    np.testing.assert_allclose(df, [[0.75, 0.0], [-0.5, 0.0]], atol=1e-15)

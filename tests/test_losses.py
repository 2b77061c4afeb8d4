"""Losses: finite differences, torch autograd, a naive-loop similarity twin,
the zero-variance and all-zero-row cases, NumPy/CuPy parity."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bioplaus import backend
from bioplaus.losses import bce_with_logits, one_hot, sim_loss, softmax_cross_entropy, squared_hinge
from bioplaus.similarity import similarity_matrix_backward, similarity_matrix_forward
from helpers import check_grad, rel_error


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def torch_similarity_matrix(x, use_std=True):
    """The reference code's ``similarity_matrix``, written in torch."""
    if x.dim() == 4:
        if use_std and x.size(1) > 3 and x.size(2) > 1:
            z = x.view(x.size(0), x.size(1), -1)
            x = z.std(dim=2)
        else:
            x = x.view(x.size(0), -1)
    xc = x - x.mean(dim=1).unsqueeze(1)
    xn = xc / (1e-8 + torch.sqrt(torch.sum(xc**2, dim=1))).unsqueeze(1)
    return xn.matmul(xn.transpose(1, 0)).clamp(-1, 1)


def naive_similarity_matrix(x, use_std=True):
    """Explicit loops: every map's std, every row's mean and norm, every s_ij."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if x.ndim == 4 and use_std and x.shape[1] > 3 and x.shape[2] > 1:
        c, m = x.shape[1], x.shape[2] * x.shape[3]
        rows = []
        for i in range(n):
            row = []
            for k in range(c):
                vals = [float(v) for v in x[i, k].ravel()]
                mu = sum(vals) / m
                row.append((sum((v - mu) ** 2 for v in vals) / (m - 1)) ** 0.5)
            rows.append(row)
    else:
        rows = [[float(v) for v in x[i].ravel()] for i in range(n)]
    xn = []
    for row in rows:
        mu = sum(row) / len(row)
        xc = [v - mu for v in row]
        norm = sum(v * v for v in xc) ** 0.5
        xn.append([v / (1e-8 + norm) for v in xc])
    S = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            s_ij = sum(a * b for a, b in zip(xn[i], xn[j]))
            S[i, j] = min(1.0, max(-1.0, s_ij))
    return S


SIM_SHAPES = [
    ((6, 5), True),  # fc activation
    ((5, 4, 3, 3), True),  # conv, c > 3 and h > 1: std of each map
    ((5, 4, 3, 3), False),  # conv, std disabled: flatten
    ((5, 3, 4, 4), True),  # c <= 3: flatten
    ((5, 6, 1, 1), True),  # h == 1: flatten
]


# ----------------------------------------------------------------------------
# one_hot
# ----------------------------------------------------------------------------
def test_one_hot(xp):
    y = backend.to_device(np.array([2, 0, 1, 2]), xp)
    Y = one_hot(y, 3, dtype=np.float64, xp=xp)
    assert backend.array_module(Y) is xp and Y.dtype == np.float64 and Y.shape == (4, 3)
    Yh = backend.to_numpy(Y)
    np.testing.assert_array_equal(Yh.sum(axis=1), 1.0)
    np.testing.assert_array_equal(Yh.argmax(axis=1), [2, 0, 1, 2])
    with pytest.raises(ValueError, match="labels"):
        one_hot(backend.to_device(np.array([0, 3]), xp), 3)


# ----------------------------------------------------------------------------
# Softmax cross-entropy, BCE with logits, squared hinge
# ----------------------------------------------------------------------------
def _logits_labels(seed, n=6, C=4, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, C)) * scale, rng.integers(0, C, size=n), rng


def test_softmax_cross_entropy_grad_and_torch():
    z, y, rng = _logits_labels(0)
    loss, dz = softmax_cross_entropy(z, y)
    g = rng.standard_normal()
    check_grad(lambda: softmax_cross_entropy(z, y)[0], z, g, g * dz)
    tz = _t(z, True)
    tl = F.cross_entropy(tz, torch.tensor(y))
    tl.backward()
    assert rel_error(loss, tl.item()) < 1e-12
    assert rel_error(dz, tz.grad.numpy()) < 1e-12


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-800.0, 800.0, 0.0]])
    y = np.array([0, 2])
    loss, dz = softmax_cross_entropy(z, y)
    tz = _t(z, True)
    tl = F.cross_entropy(tz, torch.tensor(y))
    tl.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    assert rel_error(loss, tl.item()) < 1e-12
    assert rel_error(dz, tz.grad.numpy()) < 1e-12


def test_bce_with_logits_grad_and_torch():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, 7)) * 4.0
    t = (rng.random((5, 7)) > 0.5).astype(np.float64)
    loss, dz = bce_with_logits(z, t)
    g = rng.standard_normal()
    check_grad(lambda: bce_with_logits(z, t)[0], z, g, g * dz)
    tz = _t(z, True)
    tl = F.binary_cross_entropy_with_logits(tz, _t(t))
    tl.backward()
    assert rel_error(loss, tl.item()) < 1e-12
    assert rel_error(dz, tz.grad.numpy()) < 1e-12
    # Huge logits: finite, and the same as torch.
    zb = np.array([[800.0, -800.0, 0.0]])
    tb = np.array([[0.0, 1.0, 1.0]])
    lb, dzb = bce_with_logits(zb, tb)
    tzb = _t(zb, True)
    F.binary_cross_entropy_with_logits(tzb, _t(tb)).backward()
    assert np.isfinite(lb) and rel_error(dzb, tzb.grad.numpy()) < 1e-12


def test_squared_hinge_grad_and_definition():
    z, y, rng = _logits_labels(2, n=7, C=5, scale=1.5)
    loss, dz = squared_hinge(z, y)
    g = rng.standard_normal()
    check_grad(lambda: squared_hinge(z, y)[0], z, g, g * dz)
    # torch autograd on the definition: t = 2 Y - 1, mean_n sum_k relu(1 - t z)^2.
    tz = _t(z, True)
    t = 2.0 * F.one_hot(torch.tensor(y), 5).double() - 1.0
    tl = torch.clamp(1.0 - t * tz, min=0.0).pow(2).sum(dim=1).mean()
    tl.backward()
    assert rel_error(loss, tl.item()) < 1e-12
    assert rel_error(dz, tz.grad.numpy()) < 1e-12
    # A margin-satisfying example contributes nothing.
    zc = np.array([[3.0, -2.0, -1.5]])
    lc, dzc = squared_hinge(zc, np.array([0]))
    assert float(lc) == 0.0 and not np.any(dzc)


# ----------------------------------------------------------------------------
# Similarity matrix
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,use_std", SIM_SHAPES)
def test_similarity_forward_matches_naive_loops(shape, use_std):
    x = np.random.default_rng(3).standard_normal(shape)
    S, _ = similarity_matrix_forward(x, use_std=use_std)
    assert S.shape == (shape[0], shape[0]) and S.dtype == np.float64
    assert rel_error(S, naive_similarity_matrix(x, use_std)) < 1e-12


@pytest.mark.parametrize("shape,use_std", SIM_SHAPES)
def test_similarity_backward_finite_differences_and_torch(shape, use_std):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    g = rng.standard_normal((shape[0], shape[0]))
    S, cache = similarity_matrix_forward(x, use_std=use_std)
    dx = similarity_matrix_backward(g, cache)
    assert dx.shape == x.shape and dx.dtype == np.float64
    check_grad(lambda: similarity_matrix_forward(x, use_std=use_std)[0], x, g, dx)
    tx = _t(x, True)
    tS = torch_similarity_matrix(tx, use_std)
    tS.backward(_t(g))
    assert rel_error(S, tS.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-10


def test_similarity_keeps_float32():
    x = np.random.default_rng(5).standard_normal((4, 5, 3, 3)).astype(np.float32)
    S, cache = similarity_matrix_forward(x)
    dx = similarity_matrix_backward(np.ones((4, 4), np.float32), cache)
    assert S.dtype == np.float32 and dx.dtype == np.float32


def test_similarity_zero_variance_map_has_zero_gradient():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 5, 3, 3))
    x[1, 2] = 0.7  # one constant feature map: std 0, no derivative
    g = rng.standard_normal((4, 4))
    S, cache = similarity_matrix_forward(x)
    dx = similarity_matrix_backward(g, cache)
    assert np.all(np.isfinite(dx))
    np.testing.assert_array_equal(dx[1, 2], 0.0)  # the documented subgradient
    assert np.any(dx[1, :2] != 0.0)  # the same example's other maps still learn
    # Central differences see the same 0 (std is even in the perturbation).
    check_grad(lambda: similarity_matrix_forward(x)[0], x, g, dx)
    tx = _t(x, True)
    torch_similarity_matrix(tx).backward(_t(g))
    assert rel_error(dx, tx.grad.numpy()) < 1e-10


def test_similarity_all_zero_row_gradient_is_finite_and_documented():
    rng = np.random.default_rng(7)
    n, d = 4, 5
    x = rng.standard_normal((n, d))
    x[2] = 0.0  # centres to the zero vector: x_n = 0
    g = rng.standard_normal((n, n))
    S, cache = similarity_matrix_forward(x)
    np.testing.assert_array_equal(S[2], 0.0)
    np.testing.assert_array_equal(S[:, 2], 0.0)
    dx = similarity_matrix_backward(g, cache)
    assert np.all(np.isfinite(dx))
    # Documented value: d x_n / d x_c = I / 1e-8 at x_c = 0, then centring.
    xn = cache.Xn
    dxn_row = (g + g.T)[2] @ xn  # (d,)
    expected = (dxn_row - dxn_row.mean()) / 1e-8
    assert rel_error(dx[2], expected) < 1e-12
    # It is the true derivative: central differences with a step far below 1e-8.
    f = lambda: similarity_matrix_forward(x)[0]  # noqa: E731
    h = 1e-15
    num = np.empty(d)
    for k in range(d):
        x[2, k] = h
        fp = np.sum(g * f())
        x[2, k] = -h
        fm = np.sum(g * f())
        x[2, k] = 0.0
        num[k] = (fp - fm) / (2 * h)
    assert rel_error(dx[2], num) < 1e-5
    # Other rows: exactly as torch, which is NaN on the zero row only.
    tx = _t(x, True)
    torch_similarity_matrix(tx).backward(_t(g))
    tg = tx.grad.numpy()
    assert np.all(np.isnan(tg[2]))
    keep = [0, 1, 3]
    assert rel_error(dx[keep], tg[keep]) < 1e-10


def test_similarity_clamp_blocks_gradient_outside_range():
    # Rows with huge norms: the diagonal x_n . x_n rounds above 1 for some of them.
    rng = np.random.default_rng(8)
    for _ in range(50):
        x = rng.standard_normal((16, 7)) * 1e9
        S, cache = similarity_matrix_forward(x)
        raw = np.diag(cache.Xn @ cache.Xn.T)
        above = np.flatnonzero(raw > 1.0)
        inside = np.flatnonzero(raw <= 1.0)
        if above.size and inside.size:
            break
    else:  # pragma: no cover - depends on rounding
        pytest.fail("no diagonal entry rounded above 1")
    assert S.max() <= 1.0 and np.all(S[above, above] == 1.0)
    for i, expect_zero in ((above[0], True), (inside[0], False)):
        g = np.zeros((16, 16))
        g[i, i] = 1.0
        dx = similarity_matrix_backward(g, cache)
        assert (not np.any(dx)) == expect_zero


def test_similarity_rejects_other_ranks():
    with pytest.raises(ValueError, match="2-D or 4-D"):
        similarity_matrix_forward(np.zeros((2, 3, 4)))


def test_similarity_parity(xp):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5, 4, 4))
    g = rng.standard_normal((6, 6))
    S0, c0 = similarity_matrix_forward(x)
    dx0 = similarity_matrix_backward(g, c0)
    S1, c1 = similarity_matrix_forward(backend.to_device(x, xp))
    dx1 = similarity_matrix_backward(backend.to_device(g, xp), c1)
    assert backend.array_module(S1) is xp and backend.array_module(dx1) is xp
    assert rel_error(S1, S0) < 1e-12 and rel_error(dx1, dx0) < 1e-12


# ----------------------------------------------------------------------------
# sim loss
# ----------------------------------------------------------------------------
def test_sim_loss_grad_and_torch():
    rng = np.random.default_rng(10)
    R_h = rng.uniform(-1, 1, (6, 6))
    R_y = rng.uniform(-1, 1, (6, 6))
    loss, dR_h = sim_loss(R_h, R_y)
    g = rng.standard_normal()
    check_grad(lambda: sim_loss(R_h, R_y)[0], R_h, g, g * dR_h)
    th = _t(R_h, True)
    tl = F.mse_loss(th, _t(R_y))
    tl.backward()
    assert rel_error(loss, tl.item()) < 1e-12 and rel_error(dR_h, th.grad.numpy()) < 1e-12


def test_sim_loss_through_similarity_matches_torch():
    """The whole sim-bio head: S(H) against S(Y), gradient to H."""
    rng = np.random.default_rng(11)
    H = rng.standard_normal((8, 6, 3, 3))
    y = rng.integers(0, 4, size=8)
    Y = one_hot(y, 4, dtype=np.float64)
    R_h, cache = similarity_matrix_forward(H)
    R_y, _ = similarity_matrix_forward(Y)
    loss, dR_h = sim_loss(R_h, R_y)
    dH = similarity_matrix_backward(dR_h, cache)
    tH = _t(H, True)
    tl = F.mse_loss(torch_similarity_matrix(tH), torch_similarity_matrix(_t(Y)))
    tl.backward()
    assert rel_error(loss, tl.item()) < 1e-12 and rel_error(dH, tH.grad.numpy()) < 1e-10


def test_losses_parity(xp):
    z, y, rng = _logits_labels(12)
    t = (rng.random(z.shape) > 0.5).astype(np.float64)
    zd, yd, td = (backend.to_device(a, xp) for a in (z, y, t))
    for fn, args, argsd in (
        (softmax_cross_entropy, (z, y), (zd, yd)),
        (squared_hinge, (z, y), (zd, yd)),
        (bce_with_logits, (z, t), (zd, td)),
        (sim_loss, (z, t), (zd, td)),
    ):
        l0, d0 = fn(*args)
        l1, d1 = fn(*argsd)
        assert backend.array_module(d1) is xp
        assert rel_error(l1, l0) < 1e-12 and rel_error(d1, d0) < 1e-12


def test_losses_keep_float32():
    z, y, _ = _logits_labels(13)
    for fn in (softmax_cross_entropy, squared_hinge):
        loss, dz = fn(z.astype(np.float32), y)
        assert dz.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    loss, dz = bce_with_logits(z.astype(np.float32), np.ones(z.shape, np.float32))
    assert dz.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    loss, dR = sim_loss(z.astype(np.float32), np.zeros(z.shape, np.float32))
    assert dR.dtype == np.float32 and np.asarray(loss).dtype == np.float32

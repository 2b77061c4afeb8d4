"""Fixed random matrices: regeneration, layer keys, bounds, the K variants, parity."""
import numpy as np
import pytest

from bioplaus import backend
from bioplaus.feedback import (
    FRC_KINDS,
    bio_decoder_feedback,
    fa_matrix,
    frc_classifier,
    frc_feedback,
    label_projection,
)


def _h(a):
    return backend.to_numpy(a)


def _check_bound(a, bound):
    a = _h(a)
    assert np.abs(a).max() <= bound
    assert np.abs(a).max() > 0.9 * bound  # the bound is the one used, not a smaller one
    assert abs(a.mean()) < 0.1 * bound  # centred


@pytest.mark.parametrize("shape", [(64, 50), (16, 8, 3, 3)])
def test_fa_matrix(xp, shape):
    B = fa_matrix(xp, 3, 2, shape, dtype=np.float64)
    assert backend.array_module(B) is xp and B.shape == shape and B.dtype == np.float64
    _check_bound(B, 1 / np.sqrt(np.prod(shape[1:])))
    np.testing.assert_array_equal(_h(B), _h(fa_matrix(np, 3, 2, shape, dtype=np.float64)))
    assert not np.allclose(_h(B), _h(fa_matrix(xp, 3, 3, shape, dtype=np.float64)))
    assert not np.allclose(_h(B), _h(fa_matrix(xp, 4, 2, shape, dtype=np.float64)))
    assert fa_matrix(xp, 3, 2, shape).dtype == np.float32


def test_label_projection(xp):
    P = label_projection(xp, 1, 0, 10, dtype=np.float64)
    assert backend.array_module(P) is xp and P.shape == (128, 10)
    _check_bound(P, 1 / np.sqrt(10))
    assert label_projection(xp, 1, 0, 10, size=32).shape == (32, 10)
    np.testing.assert_array_equal(_h(P), _h(label_projection(np, 1, 0, 10, dtype=np.float64)))
    assert not np.allclose(_h(P), _h(label_projection(xp, 1, 1, 10, dtype=np.float64)))


def test_bio_decoder_feedback(xp):
    shape = (128, 300)
    B = bio_decoder_feedback(xp, 5, 1, shape, dtype=np.float64)
    assert backend.array_module(B) is xp and B.shape == shape
    _check_bound(B, 1 / np.sqrt(300))
    np.testing.assert_array_equal(_h(B), _h(bio_decoder_feedback(np, 5, 1, shape, dtype=np.float64)))
    assert not np.allclose(_h(B), _h(bio_decoder_feedback(xp, 5, 2, shape, dtype=np.float64)))
    # A different purpose from FA's B: same key and bound, different numbers.
    assert not np.allclose(_h(B), _h(fa_matrix(xp, 5, 1, shape, dtype=np.float64)))


def test_frc_classifier(xp):
    M = frc_classifier(xp, 7, 0, 10, 500, dtype=np.float64)
    assert backend.array_module(M) is xp and M.shape == (10, 500)
    _check_bound(M, 1 / np.sqrt(500))
    np.testing.assert_array_equal(_h(M), _h(frc_classifier(np, 7, 0, 10, 500, dtype=np.float64)))
    assert not np.allclose(_h(M), _h(frc_classifier(xp, 7, 1, 10, 500, dtype=np.float64)))


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_frc_feedback_kinds(xp):
    C, N = 10, 2000
    M = frc_classifier(xp, 7, 3, C, N, dtype=np.float64)
    Mt = _h(M).T
    bound = 1 / np.sqrt(N)
    for kind in ("sym", "trainable"):
        K = frc_feedback(kind, M, xp, 7, 3, dtype=np.float64)
        assert K.shape == (N, C)
        np.testing.assert_array_equal(_h(K), Mt)
    # sign: the signs of M^T, independent magnitudes in (0, 1/sqrt(N)).
    K = _h(frc_feedback("sign", M, xp, 7, 3, dtype=np.float64))
    assert K.shape == (N, C)
    np.testing.assert_array_equal(np.sign(K), np.sign(Mt))
    mag = np.abs(K)
    assert mag.max() <= bound and mag.min() > 0 and abs(mag.mean() - bound / 2) < 0.05 * bound
    assert abs(_corr(np.abs(K), np.abs(Mt))) < 0.05  # 20000 entries: sd ~ 0.007
    # random: independent of M altogether.
    R = _h(frc_feedback("random", M, xp, 7, 3, dtype=np.float64))
    assert R.shape == (N, C)
    _check_bound(R, bound)
    assert abs(_corr(R, Mt)) < 0.05
    assert np.mean(np.sign(R) == np.sign(Mt)) < 0.55
    # Regenerated, layer-keyed, identical on NumPy.
    for kind in ("sign", "random"):
        again = _h(frc_feedback(kind, frc_classifier(np, 7, 3, C, N, np.float64), np, 7, 3, np.float64))
        np.testing.assert_array_equal(_h(frc_feedback(kind, M, xp, 7, 3, np.float64)), again)
        other = _h(frc_feedback(kind, M, xp, 7, 4, np.float64))
        assert not np.allclose(other, again)


def test_frc_trainable_follows_the_current_M(xp):
    M = frc_classifier(xp, 0, 0, 3, 8, dtype=np.float64)
    M_trained = M * 2.0 + 0.5
    K = frc_feedback("trainable", M_trained, xp, 0, 0, dtype=np.float64)
    np.testing.assert_array_equal(_h(K), _h(M_trained).T)


def test_frc_feedback_unknown_kind():
    M = frc_classifier(np, 0, 0, 3, 8)
    with pytest.raises(ValueError) as err:
        frc_feedback("transpose", M, np, 0, 0)
    for kind in FRC_KINDS:
        assert kind in str(err.value)

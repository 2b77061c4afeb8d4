"""Augmentation, normalisation, holdout, the classes-per-batch sampler, the resume contract."""
import numpy as np
import pytest
import torch

from bioplaus.backend import stream, to_numpy
from bioplaus.data import DATASETS, Split, class_batches, holdout, iterate_batches, make_loader
from bioplaus.data.augment import AugParams, augment, cutout, draw_params, hflip, normalize, random_crop


def _split(n=300, shape=(3, 8, 8), k=10, seed=0, name="cifar10"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, k, size=n).astype(np.int64)
    return Split(images, labels, name, "train", None)


# ---------------------------------------------------------------------------- single operations
def test_random_crop_on_known_content():
    x = (np.arange(16, dtype=np.uint8) + 1).reshape(1, 1, 4, 4)
    out = random_crop(np.repeat(x, 3, axis=0), np.array([[0, 0], [2, 2], [4, 3]]), pad=2)
    top_left = np.zeros((4, 4), np.uint8)
    top_left[2:, 2:] = x[0, 0, :2, :2]  # window starts 2 px above and left of the image
    np.testing.assert_array_equal(out[0, 0], top_left)
    np.testing.assert_array_equal(out[1, 0], x[0, 0])  # offset (pad, pad) is the identity
    shifted = np.zeros((4, 4), np.uint8)
    shifted[:2, :3] = x[0, 0, 2:, 1:]  # window starts 2 px below and 1 px right
    np.testing.assert_array_equal(out[2, 0], shifted)


def _naive_crop(x, offsets, pad):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        p = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)))
        dy, dx = offsets[i]
        out[i] = p[:, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return out


def _naive_cutout(x, centres, length):
    """The reference's Cutout, one image at a time, for one hole."""
    out = x.copy()
    h, w = x.shape[2:]
    for i, (y, xc) in enumerate(centres):
        mask = np.ones((h, w), np.float32)
        y1, y2 = np.clip(y - length // 2, 0, h), np.clip(y + length // 2, 0, h)
        x1, x2 = np.clip(xc - length // 2, 0, w), np.clip(xc + length // 2, 0, w)
        mask[y1:y2, x1:x2] = 0.0
        out[i] = x[i] * mask
    return out


def test_vectorised_ops_equal_their_per_image_twins():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(40, 3, 9, 7), dtype=np.uint8)
    params = draw_params(rng, 40, (9, 7), crop_pad=4, hflip=True, cutout=5)
    np.testing.assert_array_equal(random_crop(x, params.offsets, 4), _naive_crop(x, params.offsets, 4))
    naive_flip = np.stack([xi[:, :, ::-1] if f else xi for xi, f in zip(x, params.flips)])
    np.testing.assert_array_equal(hflip(x, params.flips), naive_flip)
    xf = normalize(x, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    centres = np.concatenate([params.centres, [[0, 0], [8, 6], [4, 3]]])  # corners clip the hole
    xf = np.concatenate([xf, xf[:3]])
    np.testing.assert_array_equal(cutout(xf, centres, 5), _naive_cutout(xf, centres, 5))
    assert (cutout(xf, centres, 5)[-3, :, :2, :2] == 0).all()  # centre (0, 0): a 2x2 hole at the corner


def test_normalize_equals_torch_totensor_then_normalize_bit_for_bit():
    x = np.random.default_rng(0).integers(0, 256, size=(5, 3, 6, 6), dtype=np.uint8)
    mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
    ref = torch.from_numpy(x).float().div(255)
    ref = ref.sub(torch.as_tensor(mean).view(1, 3, 1, 1)).div(torch.as_tensor(std).view(1, 3, 1, 1))
    out = normalize(x, mean, std)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref.numpy())


def test_draw_params_seeded_and_in_range():
    a = draw_params(stream(5, "aug.3", 7), 500, (32, 32), crop_pad=4, hflip=True, cutout=16)
    b = draw_params(stream(5, "aug.3", 7), 500, (32, 32), crop_pad=4, hflip=True, cutout=16)
    c = draw_params(stream(5, "aug.3", 8), 500, (32, 32), crop_pad=4, hflip=True, cutout=16)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.offsets, c.offsets)
    assert set(np.unique(a.offsets)) == set(range(9))  # 0 .. 2 * pad
    assert 0.4 < a.flips.mean() < 0.6
    assert a.centres.min() == 0 and a.centres.max() == 31
    none = draw_params(stream(5, "aug.3", 7), 4, (32, 32))
    assert none == AugParams(None, None, None)


def test_augment_identical_on_numpy_and_xp(xp):
    x = np.random.default_rng(1).integers(0, 256, size=(16, 3, 12, 12), dtype=np.uint8)
    params = draw_params(stream(0, "aug.1", 0), 16, (12, 12), crop_pad=4, hflip=True, cutout=6)
    ref = augment(x, params, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), crop_pad=4, cutout_length=6)
    out = augment(xp.asarray(x), params, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), crop_pad=4, cutout_length=6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(out), ref)


# ---------------------------------------------------------------------------- loader and resume contract
def test_resume_mid_epoch_equals_the_tail_of_the_full_epoch():
    s = _split()
    loader = make_loader(s, batch_size=32, train=True, seed=11, cutout=4)
    assert loader.crop_pad == 4 and loader.hflip  # CIFAR-10's augmentation (SPEC section 6)
    full = list(loader(epoch=2))
    assert len(full) == len(loader) == 10 and full[-1][0].shape == (12, 3, 8, 8)
    tail = list(iterate_batches(loader, epoch=2, start=6))
    assert len(tail) == 4
    for (x, y), (xr, yr) in zip(full[6:], tail):
        np.testing.assert_array_equal(x, xr)
        np.testing.assert_array_equal(y, yr)
    again = make_loader(s, batch_size=32, train=True, seed=11, cutout=4)  # a fresh process: no state
    np.testing.assert_array_equal(next(again(2, start=3))[0], full[3][0])
    other = list(loader(epoch=3))
    assert not np.array_equal(other[0][1], full[0][1])  # a new epoch reshuffles
    seen = np.sort(np.concatenate([y for _, y in full]))
    np.testing.assert_array_equal(seen, np.sort(s.labels))  # every example once


def test_training_batches_are_augmented_copies_of_the_right_examples():
    s = _split(n=64)
    loader = make_loader(s, batch_size=16, train=True, seed=4)
    idx = loader.batch_indices(1)
    x, y = next(loader(1, start=2))
    np.testing.assert_array_equal(y, s.labels[idx[2]])
    params = draw_params(stream(4, "aug.1", 2), 16, (8, 8), crop_pad=4, hflip=True)
    np.testing.assert_array_equal(x, augment(s.images[idx[2]], params, loader.mean, loader.std, crop_pad=4))


def test_eval_loader_is_in_order_and_unaugmented():
    s = _split(n=70)
    loader = make_loader(s, batch_size=32, train=False, seed=1, cutout=8)
    xs, ys = zip(*loader(epoch=5))
    np.testing.assert_array_equal(np.concatenate(ys), s.labels)
    np.testing.assert_array_equal(np.concatenate(xs), normalize(s.images, loader.mean, loader.std))
    assert len(make_loader(s, batch_size=32, drop_last=True, train=True)) == 2


def test_loader_on_xp_equals_numpy(xp):
    s = _split(n=50)
    a = list(make_loader(s, 16, train=True, seed=2, cutout=3)(1))
    b = list(make_loader(s, 16, train=True, seed=2, cutout=3, xp=xp)(1))
    for (x, y), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(to_numpy(xb), x)
        np.testing.assert_array_equal(to_numpy(yb), y)
        assert yb.dtype == np.int64


def test_start_out_of_range_is_refused():
    loader = make_loader(_split(n=10), 4, train=True)
    with pytest.raises(ValueError, match=r"start must lie in 0..3"):
        list(loader(1, start=4))


# ---------------------------------------------------------------------------- sampler
def test_classes_per_batch_sampler():
    labels = np.random.default_rng(0).integers(0, 10, size=2000)
    order = stream(0, "shuffle", 1).permutation(2000)
    batches = class_batches(labels, order, 128, 2)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(2000))
    assert [len(b) for b in batches] == [128] * 15 + [80]
    n_classes = np.array([len(np.unique(labels[b])) for b in batches])
    assert (n_classes <= 2).mean() >= 0.8
    assert (n_classes[:-3] == 2).all()  # until the epoch's end runs short of examples
    literal = class_batches(labels, order, 128, 2, fill_to=10)  # the reference code's literal 10
    assert np.mean([len(np.unique(labels[b])) for b in literal]) > 5


def test_loader_uses_sampler_until_the_given_epoch():
    s = _split(n=400)
    loader = make_loader(s, 40, train=True, seed=3, classes_per_batch=3, classes_per_batch_until_epoch=2)
    per_batch = [len(np.unique(s.labels[b])) for b in loader.batch_indices(2)]
    assert np.median(per_batch) == 3
    assert not loader.uses_class_sampler(3)
    plain = [len(np.unique(s.labels[b])) for b in loader.batch_indices(3)]
    assert np.median(plain) > 5
    x3, y3 = list(loader(2))[3]
    xr, yr = next(loader(2, start=3))
    np.testing.assert_array_equal(x3, xr)


# ---------------------------------------------------------------------------- holdout
@pytest.mark.parametrize("stratified", [True, False])
def test_holdout_is_disjoint_sized_and_seeded(stratified):
    s = _split(n=500)
    s = s._replace(images=np.arange(500, dtype=np.int64))  # each "image" is its own index
    tr, va = holdout(s, 60, seed=1, stratified=stratified)
    assert len(va.labels) == 60 and len(tr.labels) == 440 and va.split == "val"
    assert not set(tr.images) & set(va.images)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr.images, va.images])), np.arange(500))
    np.testing.assert_array_equal(s.labels[va.images], va.labels)
    np.testing.assert_array_equal(holdout(s, 60, seed=1, stratified=stratified)[1].images, va.images)
    assert not np.array_equal(holdout(s, 60, seed=2, stratified=stratified)[1].images, va.images)
    if stratified:
        want = 60 * np.bincount(s.labels, minlength=10) / 500
        assert np.abs(np.bincount(va.labels, minlength=10) - want).max() < 1
    with pytest.raises(ValueError, match="val_size must lie in 1..499"):
        holdout(s, 500)


def test_registry_constants_are_spec_section_6():
    spec = {  # dataset: (shape, crop pad, h-flip, mean, std)
        "mnist": ((1, 28, 28), 2, False, (0.1307,), (0.3081,)),
        "fashion-mnist": ((1, 28, 28), 2, True, (0.286,), (0.353,)),
        "kmnist": ((1, 28, 28), 0, False, (0.1904,), (0.3475,)),
        "cifar10": ((3, 32, 32), 4, True, (0.424, 0.415, 0.384), (0.283, 0.278, 0.284)),
        "cifar100": ((3, 32, 32), 4, True, (0.438, 0.418, 0.377), (0.300, 0.287, 0.294)),
        "svhn": ((3, 32, 32), 0, False, (0.431, 0.430, 0.446), (0.197, 0.198, 0.199)),
        "stl10": ((3, 96, 96), 0, False, (0.447, 0.440, 0.407), (0.260, 0.257, 0.271)),
    }
    for name, (shape, pad, flip, mean, std) in spec.items():
        info = DATASETS[name]
        assert (info.shape, info.crop_pad, info.hflip, info.mean, info.std) == (shape, pad, flip, mean, std)
    assert DATASETS["cifar100"].num_classes == 100 and DATASETS["svhn"].sizes["train"] == 604388

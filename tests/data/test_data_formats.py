"""Round trips: genuine-format files written to tmp_path load pixel-exact, upright."""
import json

import numpy as np
import pytest
from data_writers import (
    asymmetric_images,
    cifar_bytes,
    md5,
    stl10_bytes,
    write_cifar,
    write_idx_split,
    write_stl10,
    write_svhn,
    write_tar_gz,
)

from bioplaus.data import DATASETS, get_info, load_dataset


def _labels(n, k, seed=1):
    return np.random.default_rng(seed).integers(0, k, size=n).astype(np.int64)


def _assert_upright(images):
    """The marker of asymmetric_images: top row's left half bright, first column dark below."""
    w = images.shape[3]
    assert (images[:, 0, 0, : w // 2] == 255).all()
    assert (images[:, 0, 1:, 0] == 0).all()


@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist"),
                                         ("kmnist", "kmnist")])
def test_idx_round_trip(tmp_path, name, folder):
    sums = {}
    for prefix, n in (("train", 7), ("t10k", 3)):
        x = asymmetric_images(n, 1, 28, 28, seed=n)
        y = _labels(n, 10, seed=n)
        for p in write_idx_split(tmp_path / folder, prefix, x, y):
            sums[p.name] = md5(p)
        split = "train" if prefix == "train" else "test"
        s = load_dataset(name, split, tmp_path, checksums=sums, search_system=False)
        assert s.images.dtype == np.uint8 and s.images.shape == (n, 1, 28, 28)
        assert s.labels.dtype == np.int64
        np.testing.assert_array_equal(s.images, x)
        np.testing.assert_array_equal(s.labels, y)
        _assert_upright(s.images)
        assert s.source_path == tmp_path / folder and s.name == name and s.split == split
        assert all(how == "md5 (given)" for _, how in s.verification)


def test_idx_uncompressed_and_torchvision_layout(tmp_path, monkeypatch):
    """Decompressed IDX files in torchvision's MNIST/raw are found through $BIOPLAUS_DATA;
    with no published checksum for them, only their structure is checked, and said so."""
    import gzip

    x = asymmetric_images(4, 1, 28, 28)
    y = _labels(4, 10)
    raw = tmp_path / "MNIST" / "raw"
    for p in write_idx_split(raw, "train", x, y):
        p.with_suffix("").write_bytes(gzip.decompress(p.read_bytes()))
        p.unlink()
    monkeypatch.setenv("BIOPLAUS_DATA", str(tmp_path))
    s = load_dataset("MNIST", "train")
    np.testing.assert_array_equal(s.images, x)
    assert s.source_path == raw
    assert all(how.startswith("format only") for _, how in s.verification)


def test_cifar10_round_trip(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    xs, ys, sums = [], [], {}
    for i in range(1, 6):
        x, y = asymmetric_images(2 + i, 3, 32, 32, seed=i), _labels(2 + i, 10, seed=i)
        sums[write_cifar(folder / f"data_batch_{i}.bin", x, y).name] = None
        xs.append(x)
        ys.append(y)
    xt, yt = asymmetric_images(4, 3, 32, 32, seed=9), _labels(4, 10, seed=9)
    write_cifar(folder / "test_batch.bin", xt, yt)
    sums = {p.name: md5(p) for p in folder.iterdir()}
    tr = load_dataset("CIFAR10", "train", tmp_path, checksums=sums)
    np.testing.assert_array_equal(tr.images, np.concatenate(xs))
    np.testing.assert_array_equal(tr.labels, np.concatenate(ys))
    _assert_upright(tr.images)
    te = load_dataset("cifar10", "test", tmp_path, checksums=sums)
    np.testing.assert_array_equal(te.images, xt)
    np.testing.assert_array_equal(te.labels, yt)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    x, fine, coarse = asymmetric_images(5, 3, 32, 32), _labels(5, 100), _labels(5, 20, seed=7)
    write_cifar(folder / "train.bin", x, fine, coarse=coarse)
    s = load_dataset("cifar100", "train", tmp_path, checksums={"train.bin": md5(folder / "train.bin")})
    np.testing.assert_array_equal(s.images, x)
    np.testing.assert_array_equal(s.labels, fine)


def test_svhn_round_trip_train_extra_and_digit_zero(tmp_path):
    folder = tmp_path / "svhn"
    parts = {}
    for k, (fname, n) in enumerate((("train_32x32.mat", 5), ("extra_32x32.mat", 4), ("test_32x32.mat", 3))):
        x = asymmetric_images(n, 3, 32, 32, seed=k)
        y = np.arange(n) % 10  # includes the digit 0, stored as 10
        parts[fname] = (x, y)
        write_svhn(folder / fname, x, y)
    sums = {f: md5(folder / f) for f in parts}
    tr = load_dataset("SVHN", "train", tmp_path, checksums=sums)  # train + extra, as the papers
    np.testing.assert_array_equal(tr.images, np.concatenate([parts["train_32x32.mat"][0], parts["extra_32x32.mat"][0]]))
    np.testing.assert_array_equal(tr.labels, np.concatenate([parts["train_32x32.mat"][1], parts["extra_32x32.mat"][1]]))
    assert tr.labels.min() == 0 and tr.labels.dtype == np.int64
    _assert_upright(tr.images)
    only = load_dataset("svhn", "train-only", tmp_path, checksums=sums)
    np.testing.assert_array_equal(only.images, parts["train_32x32.mat"][0])
    te = load_dataset("svhn", "test", tmp_path, checksums=sums)
    np.testing.assert_array_equal(te.labels, parts["test_32x32.mat"][1])


def test_stl10_round_trip_is_upright(tmp_path):
    folder = tmp_path / "stl10" / "stl10_binary"
    x, y = asymmetric_images(3, 3, 96, 96), _labels(3, 10)
    paths = write_stl10(folder, "train", x, y)
    sums = {p.name: md5(p) for p in paths}
    s = load_dataset("STL10", "train", tmp_path, checksums=sums)
    np.testing.assert_array_equal(s.images, x)
    np.testing.assert_array_equal(s.labels, y)
    _assert_upright(s.images)
    # the raw bytes are column-major: a plain row-major reading would be transposed
    naive = np.frombuffer(paths[0].read_bytes(), np.uint8).reshape(3, 3, 96, 96)
    assert not np.array_equal(naive, x)


def test_cifar10_archive_placed_by_hand_is_verified_unpacked_and_recorded(tmp_path):
    x, y = asymmetric_images(6, 3, 32, 32), _labels(6, 10)
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": cifar_bytes(x[i - 1:i], y[i - 1:i]) for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_bytes(x[5:], y[5:])
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    archive = write_tar_gz(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    sums = {"cifar-10-binary.tar.gz": md5(archive)}
    s = load_dataset("cifar10", "train", tmp_path, checksums=sums)
    np.testing.assert_array_equal(s.images, x[:5])
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    manifest = json.loads((folder / "bioplaus-manifest.json").read_text())
    assert manifest["archive_md5"] == sums["cifar-10-binary.tar.gz"]
    assert set(manifest["files"]) == {f"data_batch_{i}.bin" for i in range(1, 6)} | {"test_batch.bin"}
    assert not (folder / "readme.html").exists()  # only the registry's files are taken out
    again = load_dataset("cifar10", "test", tmp_path)  # no checksums given: the manifest's are used
    assert again.verification[0][1].startswith("md5 (recorded in bioplaus-manifest.json")
    np.testing.assert_array_equal(again.labels, y[5:])


def test_stl10_archive_members_checked_against_their_md5(tmp_path):
    x, y = asymmetric_images(2, 3, 96, 96), _labels(2, 10)
    labels = bytes((y + 1).astype(np.uint8).tolist())
    members = {"stl10_binary/train_X.bin": stl10_bytes(x), "stl10_binary/train_y.bin": labels,
               "stl10_binary/test_X.bin": stl10_bytes(x[:1]), "stl10_binary/test_y.bin": labels[:1]}
    archive = write_tar_gz(tmp_path / "stl10" / "stl10_binary.tar.gz", members)
    import hashlib

    sums = {n.split("/")[1]: hashlib.md5(b).hexdigest() for n, b in members.items()}
    sums["stl10_binary.tar.gz"] = md5(archive)
    s = load_dataset("stl10", "test", tmp_path, checksums=sums)
    np.testing.assert_array_equal(s.images, x[:1])
    _assert_upright(s.images)


def test_names_are_case_insensitive_and_accept_reference_spellings():
    for spelling, canon in [("MNIST", "mnist"), ("FashionMNIST", "fashion-mnist"), ("Fashion-MNIST", "fashion-mnist"),
                            ("KuzushijiMNIST", "kmnist"), ("kuzushiji-mnist", "kmnist"), ("CIFAR10", "cifar10"),
                            ("cifar100", "cifar100"), ("SVHN", "svhn"), ("STL10", "stl10")]:
        assert get_info(spelling).name == canon
    assert len(DATASETS) == 7

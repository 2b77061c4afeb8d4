"""Every bad input gets a DataError naming the file, what is wrong and what would be right."""
import io
import os

import numpy as np
import pytest
from data_writers import (
    asymmetric_images,
    cifar_bytes,
    idx_bytes,
    md5,
    write_cifar,
    write_gz,
    write_idx_split,
    write_stl10,
    write_svhn,
    write_tar_gz,
)

from bioplaus.data import DataError, fetch, load_dataset
from bioplaus.data.fetch import download


def _mnist(tmp_path, n=5, labels_n=None, images=None):
    x = asymmetric_images(n, 1, 28, 28) if images is None else images
    y = np.arange(n if labels_n is None else labels_n) % 10
    folder = tmp_path / "mnist"
    a = write_gz(folder / "train-images-idx3-ubyte.gz", idx_bytes(x[:, 0]))
    b = write_gz(folder / "train-labels-idx1-ubyte.gz", idx_bytes(y.astype(np.uint8)))
    return a, b


def _sums(*paths):
    return {p.name: md5(p) for p in paths}


def _load(tmp_path, sums=None, name="mnist", split="train", **kw):
    return load_dataset(name, split, tmp_path, checksums=sums, search_system=False, **kw)


# ---------------------------------------------------------------------------- names, missing files
def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; known datasets: mnist, fashion-mnist, "
                                        r"kmnist, cifar10, cifar100, svhn, stl10"):
        load_dataset("imagenet", "train")


def test_unknown_split_lists_the_splits():
    with pytest.raises(DataError, match=r"SVHN has no split 'valid'; choose one of train, train-only, extra, test"):
        load_dataset("svhn", "valid")


def test_missing_files_say_where_looked_and_how_to_place_them(tmp_path):
    with pytest.raises(DataError) as e:
        _load(tmp_path, name="kmnist")
    msg = str(e.value)
    assert msg.startswith("missing file: Kuzushiji-MNIST 'train' split not found")
    assert "train-images-idx3-ubyte[.gz]" in msg and str(tmp_path / "kmnist") in msg
    assert "bioplaus data fetch kmnist" in msg and "place the files by hand" in msg
    assert "http://codh.rois.ac.jp/kmnist/dataset/kmnist/train-images-idx3-ubyte.gz" in msg


def test_half_present_split_names_the_missing_file(tmp_path):
    a, b = _mnist(tmp_path)
    b.unlink()
    with pytest.raises(DataError, match=r"mnist has train-images-idx3-ubyte.gz but lacks train-labels-idx1-ubyte"):
        _load(tmp_path)


# ---------------------------------------------------------------------------- IDX
def test_idx_truncated_payload(tmp_path):
    a, b = _mnist(tmp_path)
    write_gz(a, idx_bytes(asymmetric_images(5, 1, 28, 28)[:, 0])[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated IDX file: the header promises "
                                        r"5x28x28 = 3920 bytes of data but only 3820 are present"):
        _load(tmp_path, _sums(a, b))


def test_idx_truncated_gzip_stream(tmp_path):
    a, b = _mnist(tmp_path)
    a.write_bytes(a.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: truncated gzip file"):
        _load(tmp_path, _sums(a, b))


def test_idx_wrong_magic_number(tmp_path):
    a, b = _mnist(tmp_path)
    write_gz(a, idx_bytes(np.zeros(5, np.uint8)))  # a label file where the images belong
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: wrong magic number 0x00000801; an IDX image "
                                        r"file starts with 0x00000803"):
        _load(tmp_path, _sums(a, b))


def test_idx_image_label_count_mismatch(tmp_path):
    a, b = _mnist(tmp_path, n=5, labels_n=4)
    with pytest.raises(DataError, match=r"image/label count mismatch: .*train-images-idx3-ubyte.gz holds 5 images "
                                        r"but .*train-labels-idx1-ubyte.gz holds 4 labels"):
        _load(tmp_path, _sums(a, b))


def test_idx_header_count_larger_than_data(tmp_path):
    a, b = _mnist(tmp_path)
    write_gz(a, idx_bytes(asymmetric_images(5, 1, 28, 28)[:, 0], count=6))
    with pytest.raises(DataError, match=r"truncated IDX file: the header promises 6x28x28"):
        _load(tmp_path, _sums(a, b))


def test_idx_bad_checksum_given_and_published(tmp_path):
    a, b = _mnist(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: bad checksum: md5 [0-9a-f]{32}, expected "
                                        r"0{32} \(given\).*bioplaus data fetch mnist"):
        _load(tmp_path, {**_sums(a, b), a.name: "0" * 32})
    # without an override the published md5 applies, which a small file cannot have
    with pytest.raises(DataError, match=r"bad checksum: md5 [0-9a-f]{32}, expected f68b3c2dcbeaaa9fbdd348bbdeb94873 "
                                        r"\(published\)"):
        _load(tmp_path)
    assert _load(tmp_path, verify=False).verification[0][1] == "not verified (verify=False)"


def test_fashion_mnist_gz_checked_by_content_hash_too(tmp_path):
    folder = tmp_path / "fashion-mnist"
    write_idx_split(folder, "train", asymmetric_images(3, 1, 28, 28), np.arange(3))
    with pytest.raises(DataError, match=r"bad checksum: md5 .*expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d \(published\); "
                                        r"nor is the SHA-256 of its decompressed bytes the recorded c59f468a"):
        _load(tmp_path, name="fashion-mnist")


def test_labels_out_of_range(tmp_path):
    a, b = _mnist(tmp_path)
    write_gz(b, idx_bytes(np.array([0, 1, 2, 3, 12], np.uint8)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: labels range over 0..12 but must lie in 0..9"):
        _load(tmp_path, _sums(a, b))


def test_wrong_image_size_for_the_dataset(tmp_path):
    x = np.zeros((2, 1, 32, 32), np.uint8)
    a, b = _mnist(tmp_path, n=2, images=x)
    with pytest.raises(DataError, match=r"images are 1x32x32 \(c x h x w\) but MNIST's are 1x28x28"):
        _load(tmp_path, _sums(a, b))


# ---------------------------------------------------------------------------- CIFAR
def _cifar10(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    for i in range(1, 6):
        write_cifar(folder / f"data_batch_{i}.bin", asymmetric_images(2, 3, 32, 32), np.array([1, 2]))
    return folder


def test_cifar_truncated_record(tmp_path):
    folder = _cifar10(tmp_path)
    p = folder / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"data_batch_3.bin: truncated or damaged CIFAR binary file: 6136 bytes is not "
                                        r"a whole number of 3073-byte records .* 3063 bytes of a last record"):
        _load(tmp_path, name="cifar10")


def test_cifar_label_out_of_range_is_caught(tmp_path):
    """CIFAR has no magic number; a file of another layout shows as labels out of range."""
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    write_cifar(folder / "train.bin", asymmetric_images(2, 3, 32, 32), np.array([5, 120]), coarse=np.array([1, 2]))
    with pytest.raises(DataError, match=r"train.bin: labels range over 5..120 but must lie in 0..99"):
        _load(tmp_path, name="cifar100")


def test_cifar_bad_checksum_against_manifest(tmp_path):
    x = asymmetric_images(6, 3, 32, 32)
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": cifar_bytes(x[i:i + 1], [i]) for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_bytes(x[:1], [0])
    archive = write_tar_gz(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    _load(tmp_path, {archive.name: md5(archive)}, name="cifar10")  # unpacks, writes the manifest
    p = tmp_path / "cifar10" / "cifar-10-batches-bin" / "data_batch_2.bin"
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data_batch_2.bin: bad checksum: md5 .* \(recorded in bioplaus-manifest.json"):
        _load(tmp_path, name="cifar10")


def test_archive_with_bad_checksum_is_refused_and_not_unpacked(tmp_path):
    archive = write_tar_gz(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", {"x": b"y"})
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz: bad checksum: md5 .*expected "
                                        r"c32a1d4ab5d03f1284b67883e8d87530 \(published\)"):
        _load(tmp_path, name="cifar10")
    assert not (tmp_path / "cifar10" / "cifar-10-batches-bin").exists()
    with pytest.raises(DataError, match=r"lacks data_batch_1.bin.* it is not the genuine cifar-10-binary.tar.gz"):
        _load(tmp_path, {archive.name: md5(archive)}, name="cifar10")


# ---------------------------------------------------------------------------- SVHN
def _svhn(tmp_path, n=4, y_count=None):
    p = write_svhn(tmp_path / "svhn" / "test_32x32.mat", asymmetric_images(n, 3, 32, 32), np.arange(n), y_count)
    return p


def test_svhn_truncated_mat(tmp_path):
    p = _svhn(tmp_path)
    p.write_bytes(p.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"test_32x32.mat: cannot be read as a MATLAB .mat file .*truncated or damaged"):
        _load(tmp_path, _sums(p), name="svhn", split="test")


def test_svhn_count_mismatch(tmp_path):
    p = _svhn(tmp_path, n=4, y_count=3)
    with pytest.raises(DataError, match=r"image/label count mismatch in .*test_32x32.mat: X holds 4 images but y holds 3"):
        _load(tmp_path, _sums(p), name="svhn", split="test")


def test_svhn_wrong_variables_and_bad_checksum(tmp_path):
    import scipy.io

    p = tmp_path / "svhn" / "test_32x32.mat"
    p.parent.mkdir(parents=True)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError, match=r"test_32x32.mat: no variable 'y'; an SVHN \*_32x32.mat file holds X"):
        _load(tmp_path, _sums(p), name="svhn", split="test")
    with pytest.raises(DataError, match=r"test_32x32.mat: bad checksum: md5 .*expected eb5a983be6a315427106f1b164d9cef3"):
        _load(tmp_path, name="svhn", split="test")


# ---------------------------------------------------------------------------- STL-10
def _stl(tmp_path, n=2):
    return write_stl10(tmp_path / "stl10" / "stl10_binary", "test", asymmetric_images(n, 3, 96, 96), np.arange(n))


def test_stl10_truncated_images(tmp_path):
    xp_, yp = _stl(tmp_path)
    xp_.write_bytes(xp_.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"test_X.bin: truncated or damaged STL-10 image file: 55291 bytes is not a "
                                        r"whole number of 27648-byte images"):
        _load(tmp_path, _sums(xp_, yp), name="stl10", split="test")


def test_stl10_count_mismatch(tmp_path):
    xp_, yp = _stl(tmp_path)
    yp.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match=r"image/label count mismatch: .*test_X.bin holds 2 images but .*test_y.bin "
                                        r"holds 3 labels"):
        _load(tmp_path, _sums(xp_, yp), name="stl10", split="test")


def test_stl10_bad_published_checksum(tmp_path):
    _stl(tmp_path)
    with pytest.raises(DataError, match=r"test_X.bin: bad checksum: md5 .*expected 7f263ba9f9e0b06b93213547f721ac82 "
                                        r"\(published\)"):
        _load(tmp_path, name="stl10", split="test")


# ---------------------------------------------------------------------------- cache and download
def test_unwritable_cache_directory(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(DataError, match=r"cache directory .*afile/sub/mnist is not writable .*--data-dir or the "
                                        r"environment variable BIOPLAUS_DATA"):
        fetch("mnist", tmp_path / "afile" / "sub", opener=_never_called)


def _never_called(url):
    raise AssertionError("no download should start")


class _Breaks(io.RawIOBase):
    """A stream that delivers some bytes, then fails like a dropped connection."""

    def __init__(self):
        self.sent = 0

    def readable(self):
        return True

    def read(self, n=-1):
        if self.sent >= 3:
            raise ConnectionResetError("connection reset by peer")
        self.sent += 1
        return b"x" * 1000


def test_failed_download_says_how_to_place_files_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError) as e:
        fetch("kmnist", tmp_path, opener=lambda url: _Breaks())
    msg = str(e.value)
    assert msg.startswith("download failed for train-images-idx3-ubyte.gz: http://codh.rois.ac.jp/")
    assert "ConnectionResetError: connection reset by peer" in msg
    assert f"place the files by hand in {tmp_path / 'kmnist'}/" in msg
    assert "t10k-labels-idx1-ubyte.gz from http://codh.rois.ac.jp/kmnist/dataset/kmnist/t10k-labels-idx1-ubyte.gz" in msg
    assert os.listdir(tmp_path / "kmnist") == []  # no partial file left


def test_download_with_wrong_md5_is_not_kept(tmp_path):
    src = tmp_path / "mirror" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(b"hello")
    with pytest.raises(DataError, match=r"file://.*f.bin: md5 5d41402abc4b2a76b9719d911017c592 is not the published 0{32}"):
        download([src.as_uri()], tmp_path / "cache" / "f.bin", "0" * 32, manual="place it by hand")
    assert os.listdir(tmp_path / "cache") == []
    good = download([src.as_uri()], tmp_path / "cache" / "f.bin", md5(src))
    assert good.read_bytes() == b"hello"


def test_fetch_from_a_file_mirror_then_load(tmp_path):
    x, y = asymmetric_images(4, 1, 28, 28), np.arange(4)
    mirror = tmp_path / "mirror"
    paths = write_idx_split(mirror, "train", x, y) + write_idx_split(mirror, "t10k", x[:2], y[:2])
    sums = _sums(*paths)
    where = fetch("mnist", tmp_path / "cache", mirrors=[mirror.as_uri() + "/"], checksums=sums)
    assert where == {"train": tmp_path / "cache" / "mnist", "test": tmp_path / "cache" / "mnist"}
    assert sorted(os.listdir(tmp_path / "cache" / "mnist")) == sorted(p.name for p in paths)
    s = load_dataset("mnist", "train", tmp_path / "cache", checksums=sums)
    np.testing.assert_array_equal(s.images, x)


def test_load_with_download_fetches_an_archive_through_an_opener(tmp_path):
    x = asymmetric_images(2, 3, 32, 32)
    members = {"cifar-100-binary/train.bin": cifar_bytes(x, [3, 99], coarse=[0, 19]),
               "cifar-100-binary/test.bin": cifar_bytes(x[:1], [7], coarse=[1])}
    archive = write_tar_gz(tmp_path / "mirror" / "cifar-100-binary.tar.gz", members)
    urls = []

    def opener(url):
        urls.append(url)
        return open(archive, "rb")

    s = load_dataset("cifar100", "train", tmp_path / "cache", download=True, opener=opener,
                     checksums={archive.name: md5(archive)})
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]
    np.testing.assert_array_equal(s.labels, [3, 99])
    np.testing.assert_array_equal(s.images, x)
    assert not [f for f in os.listdir(tmp_path / "cache" / "cifar100") if f.endswith(".part")]

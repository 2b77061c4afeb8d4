"""The real Fashion-MNIST from Debian's dataset-fashion-mnist (installed by set-up and CI)."""
from pathlib import Path

import numpy as np

from bioplaus.data import load_dataset, make_loader

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def test_real_fashion_mnist_from_the_debian_package():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("FashionMNIST", "test")
    assert train.source_path == DEBIAN and test.source_path == DEBIAN
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    assert all(how.startswith("sha256 of the decompressed") for _, how in train.verification + test.verification)
    mean = train.images.mean(dtype=np.float64) / 255
    std = np.sqrt(np.square(train.images, dtype=np.float64).mean() / 255**2 - mean**2)
    assert abs(mean - 0.286) < 5e-4 and abs(std - 0.353) < 5e-4  # SPEC section 6
    # upright: in class 9 (ankle boot) the sole is at the bottom, so the lower half is brighter
    boots = train.images[train.labels == 9, 0].astype(np.float64)
    assert boots[:, 20:].mean() > boots[:, :8].mean()
    x, y = next(make_loader(test, 128)(1))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # normalised

"""`bioplaus data info` and `bioplaus data fetch` through click's test runner."""
from click.testing import CliRunner

from bioplaus.cli import main


def test_data_info_fashion_mnist():
    r = CliRunner().invoke(main, ["data", "info", "fashion-mnist"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "Fashion-MNIST (fashion-mnist): 10 classes, images 1x28x28" in out
    assert "train: 60000 examples from /usr/share/datasets/fashion-mnist" in out
    assert "test: 10000 examples from /usr/share/datasets/fashion-mnist" in out
    assert "class balance: " + " ".join(f"{k}:6000" for k in range(10)) in out
    assert "class balance: " + " ".join(f"{k}:1000" for k in range(10)) in out
    assert "pixel mean (0.2860) std (0.3530)" in out
    assert "train augmentation: crop pad 2, h-flip" in out


def test_data_info_unknown_name_fails_cleanly():
    r = CliRunner().invoke(main, ["data", "info", "imagenet"])
    assert r.exit_code == 1
    assert "Error: unknown dataset 'imagenet'; known datasets: mnist, fashion-mnist" in r.output
    assert isinstance(r.exception, SystemExit)  # a click error, not an uncaught exception


def test_data_info_missing_dataset_says_how_to_get_it(tmp_path):
    r = CliRunner().invoke(main, ["data", "info", "stl10", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "missing file: STL-10 'train' split not found" in r.output
    assert f"place the files by hand in {tmp_path / 'stl10'}/" in r.output


def test_data_fetch_from_a_file_mirror_of_the_debian_files(tmp_path):
    """A full download path with genuine files: Debian's (recompressed) copies served
    as a file:// mirror are verified by their content hash and cached."""
    args = ["data", "fetch", "FashionMNIST", "--no-system", "--data-dir", str(tmp_path),
            "--mirror", "file:///usr/share/datasets/fashion-mnist/"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert f"train: verified in {tmp_path / 'fashion-mnist'}" in r.output
    assert sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_data_fetch_failure_is_a_clean_error(tmp_path):
    r = CliRunner().invoke(main, ["data", "fetch", "mnist", "--data-dir", str(tmp_path),
                                  "--mirror", (tmp_path / "nowhere").as_uri() + "/"])
    assert r.exit_code == 1
    assert "download failed for train-images-idx3-ubyte.gz" in r.output
    assert f"place the files by hand in {tmp_path / 'mnist'}/ with these names: train-images-idx3-ubyte.gz" in r.output
    assert list((tmp_path / "mnist").iterdir()) == []

"""The seven datasets of the papers: names, shapes, constants, sources, checksums.

Everything here is a constant table; nothing reads files or the network.

Checksums
---------
``md5`` values are the ones published with each distribution (the
dataset pages, repeated in torchvision's dataset modules):

* MNIST, Fashion-MNIST, Kuzushiji-MNIST: the four ``.gz`` IDX files.
* CIFAR-10 / CIFAR-100: the *binary* archives ``cifar-10-binary.tar.gz`` and
  ``cifar-100-binary.tar.gz`` (the members inside have no published
  checksum; see :mod:`bioplaus.data.fetch` for how they are verified).
* SVHN: the three ``*_32x32.mat`` files.
* STL-10: the archive ``stl10_binary.tar.gz`` and the members
  ``train_X.bin``, ``train_y.bin``, ``test_X.bin``, ``test_y.bin``.

Debian's ``dataset-fashion-mnist`` package recompresses the four IDX files, so
their ``.gz`` md5 differs from the published one while the decompressed bytes
are the same data. For those files ``content_sha256`` records the SHA-256 of
the *decompressed* IDX bytes (computed from Debian's package
0.0~git20200523.55506a9-1, whose images and labels match the published
counts and class balance); a ``.gz`` file passes when either its own md5 is
the published one or its decompressed bytes have the recorded SHA-256.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class DataError(RuntimeError):
    """A dataset cannot be used: the message names the file, what is wrong,
    and what would be right."""


ENV_VAR = "BIOPLAUS_DATA"
DEFAULT_DIR = "~/.cache/bioplaus"


@dataclass(frozen=True)
class Remote:
    """One file as distributed: its name, where to get it, its published md5."""

    filename: str
    urls: tuple[str, ...]
    md5: str


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset.

    Attributes
    ----------
    name : canonical name (``'fashion-mnist'``); ``title`` for display.
    fmt : file format: ``'idx'``, ``'cifar10'``, ``'cifar100'``, ``'svhn'``,
        ``'stl10'``.
    shape : ``(c, h, w)`` of one image.
    num_classes : labels are ``0 .. num_classes - 1``.
    mean, std : per-channel normalisation constants (SPEC section 6), on the
        [0, 1] pixel scale.
    crop_pad : training random crop with this zero padding (0: no crop).
    hflip : training random horizontal flip.
    splits : the split names :func:`bioplaus.data.load_dataset` accepts.
    sizes : example counts of the genuine distribution, per split.
    files : per split, the files that hold it (names inside ``subdir``).
    remotes : what :func:`bioplaus.data.fetch` downloads.
    subdir : folder (inside the dataset's cache folder) holding ``files``;
        for archives, the folder the archive unpacks to.
    search : further folders, relative to the data directory, where files
        placed by other tools are looked for (torchvision's layout).
    system_dirs : absolute folders searched before the cache (Debian).
    member_md5 : published md5 of files inside an archive.
    content_sha256 : SHA-256 of decompressed IDX files (see module notes).
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    fmt: str
    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int
    hflip: bool
    splits: tuple[str, ...]
    sizes: dict
    files: dict
    remotes: tuple[Remote, ...]
    subdir: str = ""
    search: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    member_md5: dict = field(default_factory=dict)
    content_sha256: dict = field(default_factory=dict)

    @property
    def train_aug(self) -> str:
        """The training augmentation in words, as in SPEC section 6."""
        parts = []
        if self.crop_pad:
            parts.append(f"crop pad {self.crop_pad}")
        if self.hflip:
            parts.append("h-flip")
        return ", ".join(parts) or "none"


def _idx_files():
    return {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }


def _idx_remotes(mirrors, md5s):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(Remote(n, tuple(m + n for m in mirrors), h) for n, h in zip(names, md5s))


_MNIST_SIZES = {"train": 60000, "test": 10000}

DATASETS: dict[str, DatasetInfo] = {}


def _add(info: DatasetInfo) -> None:
    DATASETS[info.name] = info


_add(DatasetInfo(
    name="mnist", title="MNIST", aliases=("MNIST",), fmt="idx",
    shape=(1, 28, 28), num_classes=10, mean=(0.1307,), std=(0.3081,),
    crop_pad=2, hflip=False, splits=("train", "test"), sizes=_MNIST_SIZES,
    files=_idx_files(),
    remotes=_idx_remotes(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    search=("MNIST/raw", "MNIST"),
))

_add(DatasetInfo(
    name="fashion-mnist", title="Fashion-MNIST", aliases=("FashionMNIST", "fashion_mnist", "fmnist"),
    fmt="idx", shape=(1, 28, 28), num_classes=10, mean=(0.286,), std=(0.353,),
    crop_pad=2, hflip=True, splits=("train", "test"), sizes=_MNIST_SIZES,
    files=_idx_files(),
    remotes=_idx_remotes(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
    search=("FashionMNIST/raw", "FashionMNIST"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    content_sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
))

_add(DatasetInfo(
    name="kmnist", title="Kuzushiji-MNIST", aliases=("KuzushijiMNIST", "kuzushiji-mnist", "KMNIST"),
    fmt="idx", shape=(1, 28, 28), num_classes=10, mean=(0.1904,), std=(0.3475,),
    crop_pad=0, hflip=False, splits=("train", "test"), sizes=_MNIST_SIZES,
    files=_idx_files(),
    remotes=_idx_remotes(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
         "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134")),
    search=("KMNIST/raw", "KuzushijiMNIST/raw", "KMNIST", "KuzushijiMNIST"),
))

_add(DatasetInfo(
    name="cifar10", title="CIFAR-10", aliases=("CIFAR10", "cifar-10"), fmt="cifar10",
    shape=(3, 32, 32), num_classes=10,
    mean=(0.424, 0.415, 0.384), std=(0.283, 0.278, 0.284),
    crop_pad=4, hflip=True, splits=("train", "test"), sizes={"train": 50000, "test": 10000},
    files={"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    remotes=(Remote("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                    "c32a1d4ab5d03f1284b67883e8d87530"),),
    subdir="cifar-10-batches-bin",
    search=("cifar-10-batches-bin", "CIFAR10/cifar-10-batches-bin"),
))

_add(DatasetInfo(
    name="cifar100", title="CIFAR-100", aliases=("CIFAR100", "cifar-100"), fmt="cifar100",
    shape=(3, 32, 32), num_classes=100,
    mean=(0.438, 0.418, 0.377), std=(0.300, 0.287, 0.294),
    crop_pad=4, hflip=True, splits=("train", "test"), sizes={"train": 50000, "test": 10000},
    files={"train": ("train.bin",), "test": ("test.bin",)},
    remotes=(Remote("cifar-100-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
                    "03b5dce01913d631647c71ecec9e9cb8"),),
    subdir="cifar-100-binary",
    search=("cifar-100-binary", "CIFAR100/cifar-100-binary"),
))

_SVHN = "http://ufldl.stanford.edu/housenumbers/"
_add(DatasetInfo(
    name="svhn", title="SVHN", aliases=("SVHN",), fmt="svhn",
    shape=(3, 32, 32), num_classes=10,
    mean=(0.431, 0.430, 0.446), std=(0.197, 0.198, 0.199),
    crop_pad=0, hflip=False, splits=("train", "train-only", "extra", "test"),
    sizes={"train": 73257 + 531131, "train-only": 73257, "extra": 531131, "test": 26032},
    files={"train": ("train_32x32.mat", "extra_32x32.mat"), "train-only": ("train_32x32.mat",),
           "extra": ("extra_32x32.mat",), "test": ("test_32x32.mat",)},
    remotes=(Remote("train_32x32.mat", (_SVHN + "train_32x32.mat",), "e26dedcc434d2e4c54c9b2d4a06d8373"),
             Remote("extra_32x32.mat", (_SVHN + "extra_32x32.mat",), "a93ce644f1a588dc4d68dda5feec44a7"),
             Remote("test_32x32.mat", (_SVHN + "test_32x32.mat",), "eb5a983be6a315427106f1b164d9cef3")),
    search=("SVHN", "."),
))

_add(DatasetInfo(
    name="stl10", title="STL-10", aliases=("STL10", "stl-10"), fmt="stl10",
    shape=(3, 96, 96), num_classes=10,
    mean=(0.447, 0.440, 0.407), std=(0.260, 0.257, 0.271),
    crop_pad=0, hflip=False, splits=("train", "test"), sizes={"train": 5000, "test": 8000},
    files={"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")},
    remotes=(Remote("stl10_binary.tar.gz", ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                    "91f7769df0f17e558f3565bffb0c7dfb"),),
    subdir="stl10_binary",
    search=("stl10_binary", "STL10/stl10_binary"),
    member_md5={"train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
                "train_y.bin": "5a34089d4802c674881badbb80307741",
                "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
                "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e"},
))


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_LOOKUP = {}
for _info in DATASETS.values():
    for _n in (_info.name, _info.title, *_info.aliases):
        _LOOKUP[_key(_n)] = _info.name


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` for ``name`` (case-insensitive; the reference's
    spellings such as ``FashionMNIST`` and ``KuzushijiMNIST`` are accepted).

    Raises
    ------
    DataError
        for an unknown name, listing the known ones.
    """
    canon = _LOOKUP.get(_key(str(name)))
    if canon is None:
        known = ", ".join(DATASETS)
        raise DataError(f"unknown dataset {name!r}; known datasets: {known} "
                        "(the reference's spellings MNIST, FashionMNIST, KuzushijiMNIST, "
                        "CIFAR10, CIFAR100, SVHN, STL10 are accepted too)")
    return DATASETS[canon]


def data_root(data_dir=None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$BIOPLAUS_DATA``, else
    ``~/.cache/bioplaus``. Each dataset lives in a sub-folder named after it."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_VAR) or DEFAULT_DIR
    return Path(os.path.expanduser(str(data_dir)))


def check_split(info: DatasetInfo, split: str) -> str:
    if split not in info.splits:
        raise DataError(f"{info.title} has no split {split!r}; choose one of {', '.join(info.splits)}")
    return split

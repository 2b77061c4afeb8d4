"""Write small files in the datasets' genuine distribution formats.

Written from the format descriptions (LeCun's IDX page, Krizhevsky's CIFAR
page, the SVHN .mat layout, Coates' STL-10 page), independently of the
package's parsers, so a round trip checks the parsers against the formats.
"""
import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import scipy.io


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def asymmetric_images(n, c, h, w, seed=0):
    """uint8 (n, c, h, w) random images with a marker that breaks every symmetry:
    a bright bar along the top row's left half of channel 0, dark elsewhere in
    the top-left corner column."""
    x = np.random.default_rng(seed).integers(0, 200, size=(n, c, h, w), dtype=np.uint8)
    x[:, 0, 0, : w // 2] = 255
    x[:, 0, 1:, 0] = 0
    return x


def idx_bytes(array, magic=None, count=None):
    """IDX bytes: magic 0x0000 08 <ndim>, big-endian uint32 dims, then data."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x0800 | a.ndim) if magic is None else magic
    dims = list(a.shape)
    if count is not None:
        dims[0] = count
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *dims) + a.tobytes()


def write_gz(path, payload: bytes):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def write_idx_split(folder, prefix, images, labels):
    """``{prefix}-images-idx3-ubyte.gz`` (n, 28, 28) and ``{prefix}-labels-idx1-ubyte.gz``."""
    a = write_gz(Path(folder) / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images[:, 0]))
    b = write_gz(Path(folder) / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels.astype(np.uint8)))
    return a, b


def cifar_bytes(images, labels, coarse=None) -> bytes:
    """Records <label byte(s)><1024 R><1024 G><1024 B>, each plane row-major."""
    out = io.BytesIO()
    for i in range(images.shape[0]):
        if coarse is not None:
            out.write(bytes([int(coarse[i])]))
        out.write(bytes([int(labels[i])]))
        for ch in range(3):
            out.write(images[i, ch].tobytes(order="C"))
    return out.getvalue()


def write_cifar(path, images, labels, coarse=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cifar_bytes(images, labels, coarse))
    return path


def write_svhn(path, images, labels, y_count=None):
    """X (32, 32, 3, n) indexed (row, col, channel, example); y (n, 1) with 10 for digit 0."""
    X = np.zeros((32, 32, 3, images.shape[0]), dtype=np.uint8)
    for i in range(images.shape[0]):
        for ch in range(3):
            X[:, :, ch, i] = images[i, ch]
    y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
    if y_count is not None:
        y = y[:y_count]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": X, "y": y})
    return path


def stl10_bytes(images) -> bytes:
    """Each channel plane column-major: the first 96 values are the first column."""
    return b"".join(images[i, ch].tobytes(order="F") for i in range(images.shape[0]) for ch in range(3))


def write_stl10(folder, prefix, images, labels):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}_X.bin").write_bytes(stl10_bytes(images))
    (folder / f"{prefix}_y.bin").write_bytes(bytes((labels + 1).astype(np.uint8).tolist()))
    return folder / f"{prefix}_X.bin", folder / f"{prefix}_y.bin"


def write_tar_gz(path, members: dict):
    """A .tar.gz holding ``{member name: bytes}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path

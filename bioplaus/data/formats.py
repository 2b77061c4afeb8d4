"""Parsers for the datasets' distribution formats (bytes in, arrays out).

Every parser checks the structure of what it reads and raises
:class:`~bioplaus.data.registry.DataError` naming the file, what is wrong and
what would be right; none returns a partial dataset. Images come back as
``uint8`` arrays of shape ``(n, c, h, w)`` (NCHW, upright: row 0 is the top of
the picture), labels as ``int64`` arrays of shape ``(n,)``.

Formats
-------
IDX (MNIST family; LeCun's description): a big-endian header
``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
data in row-major order. Type ``0x08`` is unsigned byte, so an image file
starts with ``0x00000803`` (n, rows, cols) and a label file with
``0x00000801`` (n).

CIFAR binary (Krizhevsky's page): records of ``<label bytes><3072 pixels>``
with one label byte (CIFAR-10) or two (CIFAR-100: coarse, then fine); pixels
are the red, green and blue 32x32 planes, each row-major.

SVHN (``*_32x32.mat``, MATLAB v5): variable ``X`` of shape (32, 32, 3, n)
indexed (row, col, channel, example), and ``y`` of shape (n, 1) in 1..10,
where 10 stands for the digit 0.

STL-10 binary (Coates' page): ``*_X.bin`` holds (n, 3, 96, 96) bytes where
each channel plane is stored column-major (the first 96 values are the first
*column*), so a row-major reshape gives ``[n, c, col, row]`` and is
transposed; ``*_y.bin`` holds one byte per example in 1..10.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from bioplaus.data.registry import DataError

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


# The largest decompressed file any registered IDX dataset has is 47 MB
# (60000 28x28 images); a header declaring more than this is refused.
IDX_MAX_BYTES = 1 << 28
_GZ_CHUNK = 1 << 20


def gunzip(raw: bytes, path, limit: int | None = None) -> bytes:
    """Decompress one gzip stream, as a stream: never more than ``limit`` bytes
    of output are produced (more is an error), a truncated or damaged stream
    is an error."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    view = memoryview(raw)
    pos = 0
    try:
        while not d.eof:
            if d.unconsumed_tail:
                chunk = d.unconsumed_tail
            elif pos < len(view):
                chunk = view[pos:pos + _GZ_CHUNK]
                pos += len(chunk)
            else:
                break
            room = _GZ_CHUNK if limit is None else min(_GZ_CHUNK, limit - len(out) + 1)
            out += d.decompress(chunk, room)
            if limit is not None and len(out) > limit:
                raise DataError(f"{path}: decompresses to more than the {limit:,} bytes "
                                "its header declares; the file is damaged or not the genuine "
                                "one (refused before decompressing further)")
    except zlib.error as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc}); expected the .gz file "
                        "as distributed, or its decompressed IDX file without the .gz suffix") from None
    if not d.eof:
        raise DataError(f"{path}: truncated gzip file ({len(raw)} bytes): the compressed "
                        "stream ends before its end marker; download it again")
    if d.unused_data or pos < len(view):
        raise DataError(f"{path}: unexpected bytes after the end of its gzip stream; the file "
                        "is damaged")
    return bytes(out)


def idx_declared_size(header: bytes, path, max_bytes: int = IDX_MAX_BYTES) -> int | None:
    """Total bytes (header and data) an IDX file's header declares, from its
    first bytes; None when ``header`` is too short to tell. Sizes are Python
    integers (no overflow); more than ``max_bytes`` is refused."""
    if len(header) < 4:
        return None
    ndim = header[3]
    if len(header) < 4 + 4 * ndim:
        return None
    dims = [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    total = 4 + 4 * ndim + math.prod(dims)
    if total > max_bytes:
        raise DataError(f"{path}: its IDX header declares {'x'.join(map(str, dims))} = "
                        f"{math.prod(dims):,} bytes of data, more than the {max_bytes:,} any "
                        "dataset here has; the file is damaged")
    return total


def gunzip_idx(raw: bytes, path, max_bytes: int = IDX_MAX_BYTES) -> bytes:
    """Decompress a ``.gz`` IDX file, capped at the size its header declares."""
    head = gunzip_prefix(raw, path, 4)
    ndim = head[3] if len(head) >= 4 else 0
    head = gunzip_prefix(raw, path, 4 + 4 * ndim)
    declared = idx_declared_size(head, path, max_bytes)
    return gunzip(raw, path, limit=declared if declared is not None else 4 + 4 * ndim)


def gunzip_prefix(raw: bytes, path, n: int) -> bytes:
    """The first ``n`` decompressed bytes (fewer if the stream is shorter)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pos = 0
    try:
        while len(out) < n and not d.eof and (pos < len(raw) or d.unconsumed_tail):
            chunk = d.unconsumed_tail or raw[pos:pos + 4096]
            if not d.unconsumed_tail:
                pos += len(chunk)
            out += d.decompress(chunk, n - len(out))
    except zlib.error as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc}); expected the .gz file "
                        "as distributed, or its decompressed IDX file without the .gz suffix") from None
    return bytes(out)


def parse_idx(data: bytes, path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes; ``magic`` is the expected magic number.

    Returns
    -------
    ndarray, uint8, of the shape the header gives: ``(n, rows, cols)`` for
    images, ``(n,)`` for labels.
    """
    kind = "image" if magic == IDX_IMAGES_MAGIC else "label"
    ndim = magic & 0xFF
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file: {len(data)} bytes, not even the 4-byte magic number")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong magic number 0x{found:08x}; an IDX {kind} file starts with "
                        f"0x{magic:08x} (unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX file: {len(data)} bytes, shorter than its "
                        f"{header}-byte header")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)  # Python integers: no overflow
    have = len(data) - header
    shape = "x".join(map(str, dims))
    if have < expected:
        raise DataError(f"{path}: truncated IDX file: the header promises {shape} = {expected} "
                        f"bytes of data but only {have} are present")
    if have > expected:
        raise DataError(f"{path}: {have - expected} unexpected trailing bytes after the {shape} "
                        "data the header describes; the file is damaged")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def idx_pair(images_raw: bytes, labels_raw: bytes, images_path, labels_path, num_classes: int):
    """Images and labels of one IDX split, checked against each other.

    Returns ``images`` uint8 (n, 1, 28, 28) and ``labels`` int64 (n,).
    """
    images = parse_idx(images_raw, images_path, IDX_IMAGES_MAGIC)
    labels = parse_idx(labels_raw, labels_path, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"image/label count mismatch: {images_path} holds {images.shape[0]} images "
                        f"but {labels_path} holds {labels.shape[0]} labels; they must be equal")
    labels = check_labels(labels.astype(np.int64), num_classes, labels_path)
    return images[:, None, :, :], labels  # (n, rows, cols) -> (n, 1, rows, cols)


def check_labels(labels: np.ndarray, num_classes: int, path, offset: int = 0) -> np.ndarray:
    """Refuse labels outside ``offset .. offset + num_classes - 1``."""
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < offset or hi >= offset + num_classes:
            raise DataError(f"{path}: labels range over {lo}..{hi} but must lie in "
                            f"{offset}..{offset + num_classes - 1}; the file is damaged or "
                            "belongs to another dataset")
    return labels


def parse_cifar(data: bytes, path, label_bytes: int, num_classes: int):
    """Parse a CIFAR binary file: ``label_bytes`` is 1 (CIFAR-10) or 2 (CIFAR-100,
    whose second label byte, the fine label, is used).

    Returns ``images`` uint8 (n, 3, 32, 32) and ``labels`` int64 (n,).
    """
    record = label_bytes + 3 * 32 * 32
    n, rest = divmod(len(data), record)
    if rest:
        raise DataError(f"{path}: truncated or damaged CIFAR binary file: {len(data)} bytes is not a "
                        f"whole number of {record}-byte records ({label_bytes} label byte(s) + 3072 "
                        f"pixel bytes); {rest} bytes of a last record are left over")
    if n == 0:
        raise DataError(f"{path}: empty CIFAR binary file; expected {record}-byte records")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, record)
    if label_bytes == 2:
        check_labels(rec[:, 0].astype(np.int64), 20, path)  # coarse labels: 20 superclasses
    labels = check_labels(rec[:, label_bytes - 1].astype(np.int64), num_classes, path)
    images = rec[:, label_bytes:].reshape(n, 3, 32, 32).copy()  # (n, 3072) -> (n, c, h, w)
    return images, labels


def parse_svhn(path):
    """Parse an SVHN ``*_32x32.mat`` file (a path) with :func:`scipy.io.loadmat`.

    Returns ``images`` uint8 (n, 3, 32, 32) and ``labels`` int64 (n,), with
    the file's label 10 mapped to digit 0.
    """
    import scipy.io  # noqa: PLC0415  (scipy is only needed for SVHN)

    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except Exception as exc:  # scipy raises many types for damaged files
        raise DataError(f"{path}: cannot be read as a MATLAB .mat file ({type(exc).__name__}: {exc}); "
                        "the file is truncated or damaged: download it again") from None
    for var in ("X", "y"):
        if var not in mat:
            raise DataError(f"{path}: no variable {var!r}; an SVHN *_32x32.mat file holds X "
                            "(32, 32, 3, n) uint8 and y (n, 1)")
    X, y = mat["X"], mat["y"]
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.dtype != np.uint8:
        raise DataError(f"{path}: X has shape {X.shape} and dtype {X.dtype}; SVHN's X is "
                        "(32, 32, 3, n) uint8")
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if y.shape[0] != X.shape[3]:
        raise DataError(f"image/label count mismatch in {path}: X holds {X.shape[3]} images but "
                        f"y holds {y.shape[0]} labels; they must be equal")
    check_labels(y, 10, path, offset=1)
    images = np.ascontiguousarray(X.transpose(3, 2, 0, 1))  # (h, w, c, n) -> (n, c, h, w)
    return images, y % 10  # label 10 is the digit 0


STL_SHAPE = (3, 96, 96)


def parse_stl10(x_raw: bytes, y_raw: bytes, x_path, y_path):
    """Parse an STL-10 ``*_X.bin`` / ``*_y.bin`` pair.

    Returns ``images`` uint8 (n, 3, 96, 96), upright, and ``labels`` int64
    (n,) in 0..9 (the file's 1..10 minus one).
    """
    size = int(np.prod(STL_SHAPE))
    n, rest = divmod(len(x_raw), size)
    if n == 0 or rest:
        raise DataError(f"{x_path}: truncated or damaged STL-10 image file: {len(x_raw)} bytes is not "
                        f"a whole number of {size}-byte images (3x96x96)")
    if len(y_raw) != n:
        raise DataError(f"image/label count mismatch: {x_path} holds {n} images but {y_path} holds "
                        f"{len(y_raw)} labels; they must be equal")
    labels = check_labels(np.frombuffer(y_raw, dtype=np.uint8).astype(np.int64), 10, y_path, offset=1)
    # stored column-major per plane: reshape gives [n, c, col, row]; swap to [n, c, row, col]
    images = np.frombuffer(x_raw, dtype=np.uint8).reshape(n, *STL_SHAPE).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(images), labels - 1

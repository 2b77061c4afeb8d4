"""Load one split of a dataset as arrays: find, verify, parse.

>>> from bioplaus.data import load_dataset
>>> train = load_dataset("fashion-mnist", "train")      # Debian's copy, verified
>>> train.images.shape, train.images.dtype, train.labels.dtype
((60000, 1, 28, 28), dtype('uint8'), dtype('int64'))

See :mod:`bioplaus.data.fetch` for where files are looked for and how each
is verified before use.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from bioplaus.data import formats
from bioplaus.data.fetch import (
    bad_checksum,
    dataset_dir,
    expected_md5,
    fetch,
    locate,
    md5_file,
    md5_hex,
    read_bytes,
    sha256_hex,
    unpack,
)
from bioplaus.data.registry import DataError, DatasetInfo, check_split, get_info


class Split(NamedTuple):
    """One split of a dataset, in memory.

    Attributes
    ----------
    images : ndarray, uint8, (n, c, h, w), upright (row 0 is the top).
    labels : ndarray, int64, (n,), in ``0 .. num_classes - 1``.
    name : canonical dataset name (``'fashion-mnist'``).
    split : ``'train'``, ``'test'`` (SVHN also ``'train-only'``, ``'extra'``),
        or ``'train'``/``'val'`` after :func:`bioplaus.data.holdout`.
    source_path : the folder the files were read from.
    files : the files read, in order.
    verification : ``((file name, how it was verified), ...)``.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str
    source_path: Path
    files: tuple = ()
    verification: tuple = ()


def _verify_file(info: DatasetInfo, path: Path, folder: Path, checksums, verify: bool):
    """Read and verify one file; return (content for the parser, how verified).

    IDX content is returned decompressed; SVHN content is the path (scipy
    reads it), after a streamed md5.
    """
    name = path.name
    if info.fmt == "svhn":
        want, source = expected_md5(info, name, folder, checksums)
        got = md5_file(path) if verify else None
        if verify and got != want:
            raise bad_checksum(path, got, want, source, info.name)
        return path, (f"md5 ({source})" if verify else "not verified (verify=False)")
    raw = read_bytes(path)
    base = name[:-3] if name.endswith(".gz") else name
    want, source = expected_md5(info, name, folder, checksums)

    def content_of():  # decompressed as a stream, capped at the size the IDX header declares
        return formats.gunzip_idx(raw, path) if name.endswith(".gz") else raw

    if not verify:
        return content_of(), "not verified (verify=False)"
    got = md5_hex(raw)  # the compressed bytes are checked before anything is decompressed
    if want is not None and got == want:
        return content_of(), f"md5 ({source})"
    sha = info.content_sha256.get(base)
    if sha is not None:
        content = content_of()
        got_sha = sha256_hex(content)
        if got_sha == sha:
            return content, "sha256 of the decompressed IDX bytes (recorded)"
        if want is None:
            raise DataError(f"{path}: bad checksum: SHA-256 {got_sha} of its IDX bytes, expected {sha} "
                            f"(recorded). The file is damaged or not the genuine one: delete it and "
                            f"run `bioplaus data fetch {info.name}`, or load with verify=False")
        raise bad_checksum(path, got, want, source, info.name,
                           extra=f"; nor is the SHA-256 of its decompressed bytes the recorded {sha}")
    if want is None:
        return content_of(), "format only (no checksum is published for this file)"
    raise bad_checksum(path, got, want, source, info.name)


def verify_split(info: DatasetInfo, paths, folder: Path, checksums=None, verify: bool = True):
    """Read and verify every file of a split.

    Returns ``(contents, verification)``: one entry per path.
    """
    contents, levels = [], []
    for p in paths:
        content, level = _verify_file(info, Path(p), Path(folder), checksums, verify)
        contents.append(content)
        levels.append((Path(p).name, level))
    return contents, tuple(levels)


def _parse(info: DatasetInfo, paths, contents):
    """Images (n, c, h, w) uint8 and labels (n,) int64 from verified contents."""
    if info.fmt == "idx":
        images, labels = formats.idx_pair(contents[0], contents[1], paths[0], paths[1], info.num_classes)
    elif info.fmt in ("cifar10", "cifar100"):
        label_bytes = 1 if info.fmt == "cifar10" else 2
        parts = [formats.parse_cifar(c, p, label_bytes, info.num_classes) for c, p in zip(contents, paths)]
        images, labels = _concat(parts)
    elif info.fmt == "svhn":
        images, labels = _concat([formats.parse_svhn(p) for p in paths])
    elif info.fmt == "stl10":
        images, labels = formats.parse_stl10(contents[0], contents[1], paths[0], paths[1])
    else:  # pragma: no cover - the registry only holds the formats above
        raise DataError(f"no parser for format {info.fmt!r}")
    if images.shape[1:] != info.shape:
        raise DataError(f"{paths[0]}: images are {'x'.join(map(str, images.shape[1:]))} (c x h x w) but "
                        f"{info.title}'s are {'x'.join(map(str, info.shape))}")
    return images, labels


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _unpack_cached_archive(info: DatasetInfo, data_dir, checksums) -> bool:
    """Unpack an archive placed in the cache by hand; True if there was one."""
    for r in info.remotes if info.subdir else ():
        archive = dataset_dir(info, data_dir) / r.filename
        if archive.is_file():
            unpack(info, archive, data_dir, checksums)
            return True
    return False


def load_dataset(name: str, split: str = "train", data_dir=None, *, verify: bool = True,
                 checksums=None, search_system: bool = True, download: bool = False,
                 opener=None, mirrors=None) -> Split:
    """Load one split of a dataset, verified, as uint8 images and int64 labels.

    Parameters
    ----------
    name : ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``cifar100``,
        ``svhn``, ``stl10`` (case-insensitive; reference spellings accepted).
    split : ``'train'`` or ``'test'``. SVHN's ``'train'`` is train + extra
        (604,388 examples, as in the papers); ``'train-only'`` and ``'extra'``
        give the two parts.
    data_dir : data directory (default ``$BIOPLAUS_DATA``, else
        ``~/.cache/bioplaus``).
    verify : check checksums before use (default); ``False`` skips them
        (the structure is always checked).
    checksums : ``{file name: md5}`` overriding the published values.
    search_system : look in system folders (Debian's Fashion-MNIST) first.
    download : fetch missing files (needs a network); else a missing split
        raises :class:`DataError` saying how to obtain it.
    opener, mirrors : passed to :func:`bioplaus.data.fetch`.

    Returns
    -------
    Split
        ``images`` (n, c, h, w) uint8 and ``labels`` (n,) int64, with where
        they came from and how each file was verified.

    Raises
    ------
    DataError
        unknown name or split, missing/truncated/damaged file, bad checksum,
        wrong magic number, image/label count mismatch, labels out of range,
        unwritable cache, failed download.
    """
    info = get_info(name)
    check_split(info, split)
    try:
        folder, paths = locate(info, split, data_dir, search_system)
    except DataError:
        if not _unpack_cached_archive(info, data_dir, checksums):
            if not download:
                raise
            fetch(info.name, data_dir, opener=opener, mirrors=mirrors, checksums=checksums,
                  search_system=search_system)
        folder, paths = locate(info, split, data_dir, search_system)
    contents, verification = verify_split(info, paths, folder, checksums, verify)
    images, labels = _parse(info, paths, contents)
    return Split(images, labels, info.name, split, Path(folder), tuple(map(str, paths)), verification)


def discover(name: str, data_dir=None, search_system: bool = True) -> dict:
    """``{split: folder or None}``: where each split's files are (not verified)."""
    info = get_info(name)
    out = {}
    for split in info.splits:
        try:
            out[split] = locate(info, split, data_dir, search_system)[0]
        except DataError:
            out[split] = None
    return out

"""Data files are verified before they are decompressed, decompressed as a
stream capped at the size their header declares, and headers that overflow
or disagree with the file are refused."""
import gzip
import struct
import tracemalloc

import numpy as np
import pytest
from data_writers import asymmetric_images, idx_bytes, md5, write_gz

from bioplaus.data import DataError, formats, load_dataset


def _mnist(tmp_path, images_payload=None):
    folder = tmp_path / "mnist"
    x = asymmetric_images(5, 1, 28, 28)
    a = write_gz(folder / "train-images-idx3-ubyte.gz", images_payload or idx_bytes(x[:, 0]))
    b = write_gz(folder / "train-labels-idx1-ubyte.gz", idx_bytes(np.arange(5, dtype=np.uint8)))
    return a, b


def _bomb(n_zeros: int) -> bytes:
    """An IDX image header declaring 5 images, then ``n_zeros`` bytes: a gzip bomb."""
    head = struct.pack(">I", 0x0803) + struct.pack(">3I", 5, 28, 28)
    return head + bytes(n_zeros)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_gzip_bomb_stops_at_the_size_its_header_declares(tmp_path):
    a, b = _mnist(tmp_path, _bomb(200 * 2**20))  # 200 MiB of zeros, ~200 kB compressed
    sums = {a.name: md5(a), b.name: md5(b)}  # even with the right checksum
    msg = {}

    def go():
        with pytest.raises(DataError, match=r"decompresses to more than the 3,936 bytes its header "
                                            r"declares") as exc:
            load_dataset("mnist", "train", tmp_path, checksums=sums, search_system=False)
        msg["m"] = str(exc.value)
    assert _peak(go) < 20 * 2**20  # nowhere near the 200 MiB the stream would give
    assert "train-images-idx3-ubyte.gz" in msg["m"]


def test_a_bad_checksum_is_found_before_decompressing(tmp_path):
    # a valid-looking 47 MB IDX whose compressed bytes do not have the published md5
    x = np.zeros((60000, 28, 28), np.uint8)
    a, b = _mnist(tmp_path, idx_bytes(x))

    def go():
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: bad checksum"):
            load_dataset("mnist", "train", tmp_path, search_system=False)
    assert _peak(go) < 20 * 2**20  # the 47 MB content was never produced


def test_idx_headers_that_overflow_are_refused(tmp_path):
    huge = struct.pack(">I", 0x0803) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match=r"truncated IDX file: the header promises "
                                        r"4294967295x4294967295x4294967295"):
        formats.parse_idx(huge + bytes(10), "x.idx", formats.IDX_IMAGES_MAGIC)
    with pytest.raises(DataError, match=r"x\.gz: its IDX header declares 4294967295x4294967295x"
                                        r"4294967295 = .* bytes of data, more than"):
        formats.gunzip_idx(gzip.compress(huge + bytes(100)), "x.gz")
    a, _ = _mnist(tmp_path, huge)
    with pytest.raises(DataError, match="more than the"):
        load_dataset("mnist", "train", tmp_path, verify=False, search_system=False)


def test_trailing_and_truncated_streams(tmp_path):
    good = idx_bytes(asymmetric_images(2, 1, 28, 28)[:, 0])
    z = gzip.compress(good)
    assert formats.gunzip_idx(z, "g.gz") == good
    with pytest.raises(DataError, match="truncated gzip file"):
        formats.gunzip_idx(z[:-10], "g.gz")
    with pytest.raises(DataError, match="unexpected bytes after the end of its gzip stream"):
        formats.gunzip_idx(z + b"junk", "g.gz")
    with pytest.raises(DataError, match="not a valid gzip file"):
        formats.gunzip_idx(b"\x1f\x8b" + bytes(30), "g.gz")

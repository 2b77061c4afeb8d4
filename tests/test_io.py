"""Checkpoint files: checksums, version, regular files only, atomic unique
temporaries, the previous checkpoint and the fallback to it."""
import os
import threading

import h5py
import numpy as np
import pytest

from bioplaus import io
from bioplaus.io import CheckpointError
from tests.ckpt_helpers import data_offsets, file_bytes, make_run, rewrite


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("io") / "run"
    tr = make_run(folder)
    return tr, folder


def test_every_array_is_checksummed_and_the_previous_checkpoint_kept(run):
    tr, folder = run
    path = folder / "checkpoint.h5"
    with h5py.File(path, "r") as f:
        assert f.attrs["version"] == 2
        seen = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                seen.append(name)
                assert "sha256" in obj.attrs, name
                if obj.size > 0 and obj.ndim:
                    assert obj.fletcher32 and obj.chunks, name
        f.visititems(visit)
        assert len(seen) > 20
    assert io.load_checkpoint(path)["step"] == 8
    assert io.load_checkpoint(folder / "checkpoint.prev.h5")["step"] == 4
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_a_flipped_byte_in_array_data_names_the_file_and_the_dataset(run, tmp_path):
    _, folder = run
    src = folder / "checkpoint.h5"
    offsets = data_offsets(src)
    rng = np.random.default_rng(0)
    for name, off, size in [offsets[i] for i in rng.choice(len(offsets), 6, replace=False)]:
        data = bytearray(file_bytes(src))
        pos = off + int(rng.integers(size))
        data[pos] ^= 0xFF
        bad = tmp_path / "bad.h5"
        bad.write_bytes(bytes(data))
        with pytest.raises(CheckpointError) as exc:
            io.load_checkpoint(bad)
        assert str(bad) in str(exc.value) and name in str(exc.value), str(exc.value)


def test_sha256_catches_what_fletcher32_cannot_see(run, tmp_path):
    # a dataset rewritten in place (valid HDF5, valid fletcher32) without its digest updated
    _, folder = run
    bad = tmp_path / "c.h5"
    bad.write_bytes(file_bytes(folder / "checkpoint.h5"))

    def poke(f):
        f["params/layer_out.bias"][0] = 123.0
    rewrite(bad, poke, fix_digests=False)
    with pytest.raises(CheckpointError, match=r"/params/layer_out\.bias fails its SHA-256"):
        io.load_checkpoint(bad)


def test_unknown_version_refused_and_version_1_still_read(run, tmp_path):
    _, folder = run
    bad = tmp_path / "v99.h5"
    bad.write_bytes(file_bytes(folder / "checkpoint.h5"))
    rewrite(bad, lambda f: f.attrs.__setitem__("version", 99))
    with pytest.raises(CheckpointError, match="format version 99 is not one this bioplaus reads"):
        io.load_checkpoint(bad)
    # a version-1 file as the previous bioplaus wrote it: no filters, no digests
    ck = io.load_checkpoint(folder / "checkpoint.h5")
    v1 = tmp_path / "v1.h5"
    with h5py.File(v1, "w") as f:
        f.attrs.update({"format": io.CHECKPOINT_FORMAT, "version": 1,
                        "config": __import__("json").dumps(ck["config"]), "epoch": ck["epoch"],
                        "step": ck["step"], "batch": ck["batch"], "meta": "{}"})
        for g in ("params", "buffers"):
            for k, v in ck[g].items():
                f[f"{g}/{k}"] = v
        for g, st in ck["optim"].items():
            for k, v in st.items():
                f[f"optim/{g}/{k.replace('/', '|')}"] = v
        f.create_group("log").attrs.update({"history": __import__("json").dumps(ck["history"]),
                                            "partial": "{}"})
    old = io.load_checkpoint(v1)
    for k in ck["params"]:
        np.testing.assert_array_equal(old["params"][k], ck["params"][k])


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_only_regular_files_are_opened(tmp_path, kind):
    path = tmp_path / "checkpoint.h5"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    result = {}

    def go():
        try:
            io.load_checkpoint(path)
        except CheckpointError as exc:
            result["msg"] = str(exc)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "load_checkpoint hung"
    assert "not a regular file" in result["msg"] and str(path) in result["msg"]


def test_a_shape_bomb_is_refused_before_it_is_read(run, tmp_path):
    _, folder = run
    bad = tmp_path / "bomb.h5"
    bad.write_bytes(file_bytes(folder / "checkpoint.h5"))

    def bomb(f):
        del f["buffers/layers.0.bn.running_var"]
        f.create_dataset("buffers/layers.0.bn.running_var", shape=(2**20, 2**20), dtype="f4",
                         chunks=(1, 1024))
    rewrite(bad, bomb, fix_digests=False)
    with pytest.raises(CheckpointError, match=r"declares shape \(1048576, 1048576\)"):
        io.load_checkpoint(bad)


def test_writes_use_unique_temporaries_and_never_delete_another_writers(tmp_path):
    path = tmp_path / "x.h5"
    foreign = tmp_path / ".x.h5.foreign.tmp"
    foreign.write_bytes(b"another process's temporary")
    legacy = tmp_path / "x.h5.tmp"  # the name every process used to share
    legacy.write_bytes(b"x")

    def boom(f):
        f["a"] = np.arange(3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_h5(path, boom)
    assert not path.exists()
    assert foreign.read_bytes() == b"another process's temporary" and legacy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.h5.foreign.tmp", "x.h5.tmp"]
    # concurrent writers of one file: each completes, the result is one of them, whole
    errs = []

    def write(i):
        try:
            for _ in range(5):
                io.atomic_h5(path, lambda f: f.create_dataset("v", data=np.full(1000, i)))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errs.append(exc)
    ts = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs
    with h5py.File(path, "r") as f:
        v = f["v"][()]
    assert len(set(v.tolist())) == 1


def test_fallback_to_the_previous_checkpoint_says_so(run, tmp_path):
    _, folder = run
    d = tmp_path / "r"
    d.mkdir()
    data = file_bytes(folder / "checkpoint.h5")
    (d / "checkpoint.h5").write_bytes(data[: len(data) // 3])
    (d / "checkpoint.prev.h5").write_bytes(file_bytes(folder / "checkpoint.prev.h5"))
    said = []
    ck, used = io.load_run_checkpoint(d, log=said.append)
    assert used == str(d / "checkpoint.prev.h5") and ck["step"] == 4
    assert "truncated" in said[0] and "using the previous checkpoint" in said[0]
    # both unusable: one error naming both files
    (d / "checkpoint.prev.h5").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError) as exc:
        io.load_run_checkpoint(d, log=said.append)
    assert "checkpoint.h5" in str(exc.value) and "checkpoint.prev.h5" in str(exc.value)

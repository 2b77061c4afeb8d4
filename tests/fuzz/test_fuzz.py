"""Seeded fuzzing of real checkpoint, data and recipe files.

Every case must end in a clear error (the expected error class, naming the
file or the key) or an exact result (what loads equals the original); a
traceback, a hang, a silent change or a failed run that changes or deletes an
existing checkpoint fails the suite. The counts go to ``out/fuzz_counts.md``.
"""
import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest

from bioplaus import io
from bioplaus.config import ConfigError
from bioplaus.data import DataError, load_dataset
from bioplaus.io import CheckpointError
from bioplaus.recipes import RecipeError, load_recipe
from bioplaus.train import Trainer
from tests.ckpt_helpers import data_offsets, file_bytes, make_run, quiet, rewrite, snapshot, validator
from tests.data.data_writers import asymmetric_images, idx_bytes, md5, write_gz
from tests.run_helpers import start_train, wait_for

SEED = 20261202
COLUMNS = ("tried", "clear error", "exact", "traceback", "hang", "silent", "data loss")
COUNTS = defaultdict(Counter)
FAILURES = defaultdict(list)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_table():
    lines = ["| family | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    total = Counter()
    for fam in sorted(COUNTS):
        c = COUNTS[fam]
        total.update(c)
        lines.append(f"| {fam} | " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
    lines.append("| **all** | " + " | ".join(str(total[k]) for k in COLUMNS) + " |")
    os.makedirs(os.path.join(ROOT, "out"), exist_ok=True)
    with open(os.path.join(ROOT, "out", "fuzz_counts.md"), "w") as f:
        f.write(f"Fuzz counts (seed {SEED})\n\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    _write_table()


def _run(fn, timeout=20.0):
    """``('ok', value)``, ``('raised', exc)`` or ``('hang', None)``."""
    box = {}

    def go():
        try:
            box["r"] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - classified by the caller
            box["r"] = ("raised", exc)
    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    return box.get("r", ("hang", None))


def _record(family, case, outcome, *, errors, names=(), any_of=(), equal=None):
    """Classify one case; ``equal(value)`` tells an exact result from a silent change."""
    kind, value = outcome
    COUNTS[family]["tried"] += 1
    if kind == "hang":
        col = "hang"
    elif kind == "raised":
        msg = str(value)
        ok = (isinstance(value, errors) and all(str(n) in msg for n in names)
              and (not any_of or any(str(n) in msg for n in any_of)) and "Traceback" not in msg)
        col = "clear error" if ok else "traceback"
    else:
        col = "exact" if equal is not None and equal(value) else "silent"
    COUNTS[family][col] += 1
    if col not in ("clear error", "exact"):
        FAILURES[family].append(f"{case}: {col}: {value!r}"[:500])


def _assert_clean(family):
    assert not FAILURES[family], "\n".join(FAILURES[family])


# ------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "run"
    tr = make_run(folder)
    load = validator(tr)
    good = load(folder / "checkpoint.h5")
    return tr, folder, load, good


def _same(good):
    def equal(ck):
        return all(np.array_equal(ck[s][k], good[s][k]) for s in ("params", "buffers")
                   for k in good[s]) and ck["step"] == good["step"]
    return equal


def _check_ckpt(family, case, data: bytes, run, tmp_path, resume=False):
    tr, folder, load, good = run
    slug = "".join(c if c.isalnum() else "_" for c in f"{family}-{case}")
    path = tmp_path / f"{slug}.h5"
    path.write_bytes(data)
    _record(family, case, _run(lambda: load(path)), errors=(CheckpointError,), names=(path,),
            equal=_same(good))
    if resume:  # a failed `train --resume` must leave the run's files as they were
        d = tmp_path / f"{slug}-dir"
        d.mkdir()
        shutil.copy(path, d / "checkpoint.h5")
        before = snapshot(d)
        out = _run(lambda: Trainer(tr.cfg, str(d), resume=True, progress=False, log=quiet))
        if out[0] == "raised" and snapshot(d) != before:
            COUNTS[family]["data loss"] += 1
            FAILURES[family].append(f"{case}: a failed resume changed the checkpoint")


def test_truncated_checkpoints(run, tmp_path):
    data = file_bytes(run[1] / "checkpoint.h5")
    rng = np.random.default_rng(SEED)
    for i, n in enumerate(sorted(rng.integers(0, len(data), 12).tolist())):
        _check_ckpt("checkpoint: truncated", f"{n}", data[:n], run, tmp_path, resume=i < 3)
    _assert_clean("checkpoint: truncated")


def test_byte_flips_in_array_data(run, tmp_path):
    src = run[1] / "checkpoint.h5"
    data, offsets = file_bytes(src), data_offsets(src)
    rng = np.random.default_rng(SEED + 1)
    for i in range(20):
        name, off, size = offsets[int(rng.integers(len(offsets)))]
        d = bytearray(data)
        for _ in range(4):
            d[off + int(rng.integers(size))] ^= int(rng.integers(1, 256))
        _check_ckpt("checkpoint: flips in data", f"{name}@{off}", bytes(d), run, tmp_path,
                    resume=i < 2)
    _assert_clean("checkpoint: flips in data")


def test_byte_flips_in_metadata(run, tmp_path):
    src = run[1] / "checkpoint.h5"
    data = file_bytes(src)
    in_data = np.zeros(len(data), bool)
    for _, off, size in data_offsets(src):
        in_data[off:off + size] = True
    meta = np.flatnonzero(~in_data)
    rng = np.random.default_rng(SEED + 2)
    for i in range(30):
        d = bytearray(data)
        pos = int(meta[int(rng.integers(len(meta)))])
        d[pos] ^= 1 << int(rng.integers(8))
        _check_ckpt("checkpoint: flips in metadata", f"bit@{pos}", bytes(d), run, tmp_path,
                    resume=i < 2)
    _assert_clean("checkpoint: flips in metadata")


def _structural_cases():
    def replace(name, value):
        def fn(f):
            del f[name]
            f[name] = value
        return fn

    def bomb(f):
        del f["params/layer_out.weight"]
        f.create_dataset("params/layer_out.weight", shape=(2**20, 2**20), dtype="f4",
                         chunks=(1, 1024))
    return {
        "deleted param": lambda f: f.__delitem__("params/layer_out.bias"),
        "deleted buffer": lambda f: f.__delitem__("buffers/layers.0.bn.running_var"),
        "deleted optimizer group": lambda f: f.__delitem__("optim/layer_out"),
        "deleted group /log": lambda f: f.__delitem__("log"),
        "extra dataset": lambda f: f.__setitem__("params/x", np.zeros(2, "f4")),
        "reshaped": replace("params/layer_out.weight", np.zeros((16, 10), "f4")),
        "retyped int32": replace("params/layer_out.weight", np.zeros((10, 16), "i4")),
        "retyped float16": replace("buffers/layers.0.bn.running_mean", np.zeros(16, "f2")),
        "string dataset": replace("params/layer_out.bias", np.array([b"abc"] * 10)),
        "shape bomb": bomb,
        "NaN running_var": lambda f: f["buffers/layers.0.bn.running_var"].__setitem__(0, np.nan),
        "inf weight": lambda f: f["params/layer_out.weight"].__setitem__((0, 0), np.inf),
        "epoch 10**12": lambda f: f.attrs.__setitem__("epoch", 10**12),
        "negative step": lambda f: f.attrs.__setitem__("step", -3),
        "version 99": lambda f: f.attrs.__setitem__("version", 99),
        "format other": lambda f: f.attrs.__setitem__("format", "x"),
        "config not JSON": lambda f: f.attrs.__setitem__("config", "{"),
        "history not a list": lambda f: f["log"].attrs.__setitem__("history", "3"),
        "step count huge": replace("optim/layer_out/step|layer_out.bias", np.int64(10**9)),
        "step count float": replace("optim/layer_out/step|layer_out.bias", np.float64(1.0)),
    }


def test_structural_damage(run, tmp_path):
    src = run[1] / "checkpoint.h5"
    for case, fn in _structural_cases().items():
        for fix in (True, False):  # written deliberately (digests fixed) or damaged
            path = tmp_path / "s.h5"
            path.write_bytes(file_bytes(src))
            rewrite(path, fn, fix_digests=fix)
            _check_ckpt("checkpoint: deleted/reshaped/retyped/bombs", f"{case}/{fix}",
                        file_bytes(path), run, tmp_path, resume=case in ("shape bomb", "epoch 10**12"))
    _assert_clean("checkpoint: deleted/reshaped/retyped/bombs")


def test_special_files_in_place_of_a_checkpoint(run, tmp_path):
    tr, folder, load, good = run
    fam = "checkpoint: FIFO/dir/empty/link"
    makers = {
        "fifo": lambda p: os.mkfifo(p),
        "directory": lambda p: p.mkdir(),
        "empty": lambda p: p.write_bytes(b""),
        "symlink to dir": lambda p: os.symlink(tmp_path, p),
        "dangling symlink": lambda p: os.symlink(tmp_path / "nowhere", p),
    }
    for case, make in makers.items():
        d = tmp_path / case.replace(" ", "_")
        d.mkdir()
        make(d / "checkpoint.h5")
        _record(fam, case, _run(lambda: load(d / "checkpoint.h5"), timeout=10),
                errors=(CheckpointError,), names=(d / "checkpoint.h5",))
        _record(fam, case + " (eval)", _run(lambda: __import__("bioplaus.checks").checks.load_model(d),
                                            timeout=10), errors=(CheckpointError,))
        _record(fam, case + " (resume)", _run(lambda: Trainer(tr.cfg, str(d), resume=True,
                                                              progress=False, log=quiet), timeout=10),
                errors=(CheckpointError,))
    _assert_clean(fam)


def test_fallback_when_the_newest_is_damaged(run, tmp_path):
    tr, folder, load, good = run
    fam = "checkpoint: newest damaged, previous kept"
    prev_good = load(folder / "checkpoint.prev.h5")
    data = file_bytes(folder / "checkpoint.h5")
    rng = np.random.default_rng(SEED + 3)
    for i in range(4):
        d = tmp_path / f"fb{i}"
        shutil.copytree(folder, d)
        cut = int(rng.integers(0, len(data)))
        (d / "checkpoint.h5").write_bytes(data[:cut])
        prev_bytes = file_bytes(d / "checkpoint.prev.h5")
        out = _run(lambda: Trainer(tr.cfg, str(d), resume=True, progress=False, log=quiet))
        _record(fam, f"cut {cut}", out, errors=(CheckpointError,),
                equal=lambda t: t.step == prev_good["step"] and all(
                    np.array_equal(t.model.params[k], prev_good["params"][k]) for k in t.model.params))
        if file_bytes(d / "checkpoint.prev.h5") != prev_bytes:
            COUNTS[fam]["data loss"] += 1
    _assert_clean(fam)


# ------------------------------------------------------------ processes
def test_concurrent_writers_and_sigterm(tmp_path):
    fam = "runs: two writers, SIGTERM mid-run"
    rng = np.random.default_rng(SEED + 4)
    # two trains started together on one --out: one trains, the other is refused clearly
    out = tmp_path / "two"
    a, b = start_train(out, epochs=3), start_train(out, epochs=3)
    ta, tb = (p.communicate(timeout=120)[0] for p in (a, b))
    rcs = sorted([(a.returncode, ta), (b.returncode, tb)], key=lambda x: x[0])
    for rc, text in rcs:
        COUNTS[fam]["tried"] += 1
        if "Traceback" in text:
            COUNTS[fam]["traceback"] += 1
            FAILURES[fam].append(text[-800:])
        elif rc == 0:
            COUNTS[fam]["exact"] += 1
        elif "in use by another bioplaus train" in text or "pass --resume" in text:
            COUNTS[fam]["clear error"] += 1
        else:
            COUNTS[fam]["silent"] += 1
            FAILURES[fam].append(text[-800:])
    assert [rc for rc, _ in rcs][0] == 0 and io.load_checkpoint(out / "checkpoint.h5")["epoch"] == 4
    # SIGTERM at a random moment: a clean exit with a checkpoint that loads, or a finished run
    for i in range(2):
        out = tmp_path / f"term{i}"
        p = start_train(out, "--checkpoint-every", "1000", epochs=400)
        wait_for(lambda: (out / ".lock").exists(), proc=p)
        time.sleep(float(rng.uniform(0.2, 1.5)))
        p.send_signal(signal.SIGTERM)
        text = p.communicate(timeout=60)[0]
        COUNTS[fam]["tried"] += 1
        ok = p.returncode in (0, 130) and "Traceback" not in text
        if ok and (out / "checkpoint.h5").exists():
            io.load_checkpoint(out / "checkpoint.h5")
        elif ok and "No checkpoint" not in text and p.returncode == 130 and "checkpoint written" in text:
            ok = False  # claimed a checkpoint that is not there
        COUNTS[fam]["clear error" if ok else "traceback"] += 1
        if not ok:
            FAILURES[fam].append(text[-800:])
    _assert_clean(fam)


# ------------------------------------------------------------------ data
def _mnist_dir(tmp_path, images: bytes, labels: bytes, name):
    folder = tmp_path / name / "mnist"
    a = write_gz(folder / "train-images-idx3-ubyte.gz", images)
    b = write_gz(folder / "train-labels-idx1-ubyte.gz", labels)
    return tmp_path / name, a, b


def test_data_files(tmp_path):
    fam = "data: IDX/gzip damage, bombs, labels"
    rng = np.random.default_rng(SEED + 5)
    x = asymmetric_images(20, 1, 28, 28)[:, 0]
    y = (np.arange(20) % 10).astype(np.uint8)
    img, lab = idx_bytes(x), idx_bytes(y)

    def equal(split):
        return np.array_equal(split.images[:, 0], x) and np.array_equal(split.labels, y)

    def load(root, a, b, sums=True, verify=True):
        s = {a.name: md5(a), b.name: md5(b)} if sums else None
        return lambda: load_dataset("mnist", "train", root, checksums=s, search_system=False,
                                    verify=verify)
    cases = 0
    for i in range(12):  # flips in the decompressed bytes (header and data), checksum updated
        d = bytearray(img)
        pos = int(rng.integers(0, 16)) if i % 2 else int(rng.integers(len(d)))
        d[pos] ^= int(rng.integers(1, 256))
        root, a, b = _mnist_dir(tmp_path, bytes(d), lab, f"flip{i}")
        # a flipped pixel is a valid file: exact means the parser returns those bytes
        want = np.frombuffer(bytes(d)[16:], np.uint8) if len(d) == len(img) else None
        _record(fam, f"content flip {pos}", _run(load(root, a, b)), errors=(DataError,),
                equal=lambda s: (pos >= 16 and want is not None and np.array_equal(
                    s.images.reshape(-1), want)) or equal(s))
        cases += 1
    for i in range(8):  # flips in the compressed bytes, the md5 no longer matching
        root, a, b = _mnist_dir(tmp_path, img, lab, f"gz{i}")
        raw = bytearray(a.read_bytes())
        raw[int(rng.integers(len(raw)))] ^= int(rng.integers(1, 256))
        a.write_bytes(bytes(raw))
        _record(fam, f"gz flip {i}", _run(load(root, a, b, sums=False)), errors=(DataError,),
                names=(a.name,))
        _record(fam, f"gz flip {i} (verify=False)", _run(load(root, a, b, verify=False)),
                errors=(DataError,), equal=equal)
    for i in range(6):  # truncated .gz
        root, a, b = _mnist_dir(tmp_path, img, lab, f"cut{i}")
        raw = a.read_bytes()
        a.write_bytes(raw[: int(rng.integers(len(raw)))])
        _record(fam, f"gz truncated {i}", _run(load(root, a, b)), errors=(DataError,),
                names=(a.name,))
    for i, dims in enumerate([(2**32 - 1,) * 3, (0, 28, 28), (20, 28, 29), (10**9, 28, 28),
                              (20, 2**31, 2**31), (21, 28, 28)]):  # headers that lie
        head = bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in dims)
        root, a, b = _mnist_dir(tmp_path, head + x.tobytes(), lab, f"hdr{i}")
        _record(fam, f"header {dims}", _run(load(root, a, b)), errors=(DataError,),
                names=(a.name,))
    for i, n in enumerate([50 * 2**20, 300 * 2**20]):  # gzip bombs behind a small header
        root, a, b = _mnist_dir(tmp_path, img[:16] + bytes(n), lab, f"bomb{i}")
        _record(fam, f"bomb {n}", _run(load(root, a, b)), errors=(DataError,), names=(a.name,))
    for i, bad in enumerate([10, 11, 255]):  # labels out of range
        yy = y.copy()
        yy[int(rng.integers(len(yy)))] = bad
        root, a, b = _mnist_dir(tmp_path, img, idx_bytes(yy), f"lab{i}")
        _record(fam, f"label {bad}", _run(load(root, a, b)), errors=(DataError,),
                names=(b.name,))
    root, a, b = _mnist_dir(tmp_path, img, lab, "good")
    _record(fam, "untouched", _run(load(root, a, b)), errors=(DataError,), equal=equal)
    _assert_clean(fam)


# --------------------------------------------------------------- recipes
BAD_VALUES = ['"fast"', "true", "1.5", "-1", "nan", "inf", "[1, 2]", '{a = 1}', "-0.5",
              "1e400", '"0.1"', "[1.5, 2.7]", "0"]
KEYS = ["lr", "dropout", "epochs", "batch_size", "max_steps", "test_subset", "train_subset",
        "lr_decay_milestones", "lr_decay_fact", "num_hidden", "seed", "cutout", "beta",
        "momentum", "weight_decay", "num_layers", "val_size", "feat_mult"]


def test_bad_recipes(tmp_path):
    fam = "recipes: bad values, bytes, nesting"
    rng = np.random.default_rng(SEED + 6)
    for i in range(40):
        key, val = KEYS[int(rng.integers(len(KEYS)))], BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
        p = tmp_path / f"r{i}.toml"
        p.write_text(f'[train]\nnet = "mlp"\n{key} = {val}\n')
        out = _run(lambda: load_recipe(p))
        if out[0] == "ok":  # a value that is valid for this key: it must be kept exactly
            import tomllib
            want = tomllib.loads(p.read_text())["train"][key]
            _record(fam, f"{key} = {val}", out, errors=(RecipeError,),
                    equal=lambda r: r.config[key] == want)
        else:
            _record(fam, f"{key} = {val}", out, errors=(RecipeError,), names=(p,),
                    any_of=(key, "--" + key.replace("_", "-")))
    good = b'[train]\nnet = "mlp"\nlr = 0.001\nepochs = 3\n'
    for i in range(15):  # random byte damage to a good recipe
        d = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            d[int(rng.integers(len(d)))] = int(rng.integers(0, 256))
        p = tmp_path / f"b{i}.toml"
        p.write_bytes(bytes(d))
        out = _run(lambda: load_recipe(p))
        _record(fam, f"bytes {bytes(d)!r}", out, errors=(RecipeError,), names=(p,),
                equal=lambda r: True)  # a still-valid recipe, itself checked by the loader
    for depth in (100, 10000, 100000):
        p = tmp_path / f"deep{depth}.toml"
        p.write_text("[train]\nx = " + "[" * depth + "]" * depth + "\n")
        _record(fam, f"nested {depth}", _run(lambda: load_recipe(p)), errors=(RecipeError,),
                names=(p,))
    _assert_clean(fam)

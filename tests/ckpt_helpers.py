"""Real checkpoints for the checkpoint tests: a tiny run trained on real data."""
import os
import shutil

import h5py
import numpy as np

from bioplaus import checks, io
from bioplaus.config import Config
from bioplaus.train import Trainer

TINY = dict(net="mlp", dataset="fashion-mnist", num_hidden=16, num_layers=1, train_subset=200,
            test_subset=100, batch_size=50, epochs=2, lr=2e-3, lr_decay_milestones=(100,),
            rule="predsim")


def quiet(*_):
    pass


def make_run(folder, **kw) -> Trainer:
    """Train a tiny run into ``folder``: checkpoint.h5 (step 8) and checkpoint.prev.h5 (step 4)."""
    tr = Trainer(Config(**{**TINY, **kw}), str(folder), progress=False, log=quiet)
    tr.run()
    return tr


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def validator(tr):
    """``load(path)`` with the checks ``train --resume`` makes, for ``tr``'s model."""
    want = checks.expected_layout(tr.model, tr.states)

    def load(path):
        return checks.load_checked(path, want=want, batches_per_epoch=tr.data.batches_per_epoch)

    return load


def rewrite(path, fn, fix_digests=True):
    """Apply ``fn(h5file)`` in place; with ``fix_digests`` every dataset's
    sha256 is recomputed, as a writer that meant it would have."""
    with h5py.File(path, "r+") as f:
        fn(f)
        if fix_digests:
            def fix(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.shape is not None and obj.size < 1e7:
                    obj.attrs["sha256"] = io.digest(obj[()])
            f.visititems(fix)
            if "log" in f and "history" in f["log"].attrs and "partial" in f["log"].attrs:
                root = {k: f.attrs[k] for k in io._ROOT_KEYS if k in f.attrs}
                f.attrs["attrs_sha256"] = io._attrs_digest(
                    {**root, "history": f["log"].attrs["history"],
                     "partial": f["log"].attrs["partial"]})


def data_offsets(path):
    """``[(dataset name, byte offset, size)]`` of every chunked dataset's first chunk."""
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.chunks:
                info = obj.id.get_chunk_info(0)
                out.append((obj.name, info.byte_offset, info.size))
        f.visititems(visit)
    return out


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def snapshot(folder):
    """Bytes of every checkpoint file in a run folder (to prove none changed)."""
    return {n: file_bytes(os.path.join(folder, n)) for n in sorted(os.listdir(folder))
            if n.startswith("checkpoint") and n.endswith(".h5")}


def arrays_equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a) and set(a) == set(b)

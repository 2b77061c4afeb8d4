"""Every HDF5 call of bioplaus: checkpoints, run logs and oracle files.

Writing. Files are written atomically: to a temporary file of a unique name
(``tempfile.mkstemp`` in the same directory, so two processes never share
one), flushed and fsync'ed, renamed over the old file, and the directory
fsync'ed, so a crash during a write leaves the previous file whole. A
process only ever deletes a temporary file it created itself. Checkpoints
keep the previous one as ``checkpoint.prev.h5`` (:func:`prev_path`).

Integrity (format version 2). Files are written with ``libver="latest"``, so
HDF5 checksums its metadata; every non-empty array is a chunked dataset with
HDF5's ``fletcher32`` filter, and every dataset of a checkpoint or run log
carries a ``sha256`` attribute (over dtype, shape and bytes) checked when it
is read; a checkpoint's root attributes carry ``attrs_sha256``. Oracle files
have ``fletcher32`` only, so a hand-edited oracle (to test ``oracle check``)
stays readable. A failed check names the file and the
dataset. Version 1 files (no checksums) are still read; other versions are
refused.

Reading. Only regular files are opened (a FIFO or a directory in place of a
checkpoint is an error, never a hang). :func:`read_checkpoint_header` gives
the position and the declared layout (names, shapes, dtypes) without
reading any array, so a caller can validate a checkpoint against the model
before any data is read (:mod:`bioplaus.checks`); no dataset declaring more
bytes than the file holds is read.

Layout of a checkpoint (``format = 'bioplaus-checkpoint'``)::

    attrs: format, version, config (JSON), epoch, step, batch, meta (JSON),
           attrs_sha256
    /params/<name>     every trained parameter, reference state_dict names
    /buffers/<name>    batch-norm running statistics
    /optim/<group>/... each optimizer's state (arrays as datasets, scalars as attrs)
    /log               attrs: history (JSON list of per-epoch records),
                       partial (JSON: the current epoch's running sums)

Modules: :mod:`bioplaus.io.h5` (atomic writes, checksums, checked reading),
:mod:`bioplaus.io.checkpoint` and :mod:`bioplaus.io.files` (run logs, oracle
files); everything is imported from ``bioplaus.io``.
"""
from bioplaus.io.checkpoint import (_ROOT_KEYS, load_checkpoint, load_run_checkpoint,
                                    read_checkpoint_header, save_checkpoint)
from bioplaus.io.files import load_log, load_oracle, save_log, save_oracle
from bioplaus.io.h5 import (CHECKPOINT_FORMAT, ORACLE_FORMAT, READABLE_VERSIONS, VERSION,
                            CheckpointError, _attrs_digest, atomic_h5, digest, prev_path)

__all__ = ["CHECKPOINT_FORMAT", "ORACLE_FORMAT", "READABLE_VERSIONS", "VERSION",
           "CheckpointError", "atomic_h5", "digest", "load_checkpoint", "load_log",
           "load_oracle", "load_run_checkpoint", "prev_path", "read_checkpoint_header",
           "save_checkpoint", "save_log", "save_oracle",
           "_ROOT_KEYS", "_attrs_digest"]  # the last two: tests forge checkpoints with them

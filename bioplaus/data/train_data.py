"""The data side of a training run: splits, subsets and loaders from a Config.

The evaluation split is the test set (what the papers report every epoch)
or, with ``val_size > 0``, a validation set held out of the training set.
``train_subset``/``test_subset`` take seeded random subsets for short runs;
``input_size``/``input_fit`` resize or pad the images (:mod:`bioplaus.data.fit`).
"""
from __future__ import annotations

import numpy as np

from bioplaus.backend import stream
from bioplaus.data.fit import fit_split
from bioplaus.data.loaders import Split, load_dataset
from bioplaus.data.pipeline import holdout, make_loader
from bioplaus.data.registry import get_info


def subset(split: Split, n: int, seed: int, purpose: str) -> Split:
    """A seeded random subset of ``n`` examples (file order kept)."""
    total = split.labels.shape[0]
    if n <= 0 or n >= total:
        return split
    idx = np.sort(stream(seed, purpose).permutation(total)[:n])
    return split._replace(images=split.images[idx], labels=split.labels[idx])


class TrainData:
    def __init__(self, cfg, xp, dtype=np.float32):
        self.info = get_info(cfg.dataset)
        self.dtype = dtype
        train = load_dataset(cfg.dataset, "train", cfg.data_dir)
        if cfg.val_size > 0:
            train, evals = holdout(train, cfg.val_size, seed=cfg.seed)
            self.eval_split = "val"
        else:
            evals = load_dataset(cfg.dataset, "test", cfg.data_dir)
            self.eval_split = "test"
        train = subset(train, cfg.train_subset, cfg.seed, "subset.train")
        evals = subset(evals, cfg.test_subset, cfg.seed, "subset.eval")
        train = fit_split(train, cfg.input_size, cfg.input_fit)
        evals = fit_split(evals, cfg.input_size, cfg.input_fit)
        self.train_split, self.eval_split_data = train, evals
        self.input_shape = tuple(int(s) for s in train.images.shape[1:])
        self.num_classes = int(self.info.num_classes)
        self.train_loader = make_loader(
            train, cfg.batch_size, train=True, seed=cfg.seed,
            cutout=cfg.length if cfg.cutout else 0, classes_per_batch=cfg.classes_per_batch,
            classes_per_batch_until_epoch=cfg.classes_per_batch_until_epoch, xp=xp)
        self.eval_loader = make_loader(evals, max(cfg.batch_size, 256), train=False, xp=xp)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.train_loader)

    def _cast(self, it):
        for x, y in it:
            yield (x if x.dtype == self.dtype else x.astype(self.dtype)), y

    def train_batches(self, epoch: int, start: int = 0):
        return self._cast(self.train_loader(epoch, start))

    def eval_batches(self):
        return self._cast(self.eval_loader(1, 0))

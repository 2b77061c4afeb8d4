"""Datasets of the papers: loaders, downloads with checksums, the input pipeline.

Public API
----------
``load_dataset(name, split, data_dir=None, ...) -> Split``
    one split as uint8 images (n, c, h, w) and int64 labels (n,), verified.
``fetch(name, data_dir=None, ...)``
    download (if needed), verify and unpack a dataset into the cache.
``DATASETS`` / ``get_info(name)``
    shapes, classes, normalisation constants, training augmentation, sources.
``holdout(split, val_size, seed, stratified)``
    a validation split held out of the training set.
``make_loader(split, batch_size, train, seed, ...) -> Loader`` and
``iterate_batches(loader, epoch, start)``
    normalised, augmented float32 batches, resumable mid-epoch (see
    :mod:`bioplaus.data.pipeline` for the contract).
``DataError``
    every problem with the data, with a message naming the file.
"""
from bioplaus.data.fetch import fetch
from bioplaus.data.loaders import Split, discover, load_dataset
from bioplaus.data.pipeline import Loader, class_batches, holdout, iterate_batches, make_loader
from bioplaus.data.registry import DATASETS, DataError, DatasetInfo, data_root, get_info

__all__ = [
    "DATASETS", "DataError", "DatasetInfo", "Loader", "Split", "class_batches", "data_root",
    "discover", "fetch", "get_info", "holdout", "iterate_batches", "load_dataset", "make_loader",
]

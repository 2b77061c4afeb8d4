"""`bioplaus data info NAME` and `bioplaus data fetch NAME`."""
from __future__ import annotations

import click
import numpy as np

from bioplaus.data import DataError, fetch, get_info, load_dataset
from bioplaus.data.fetch import candidate_dirs, dataset_dir

_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="data directory (default: $BIOPLAUS_DATA or ~/.cache/bioplaus)")


def pixel_stats(images: np.ndarray, block: int = 8192):
    """Per-channel mean and std of uint8 images (n, c, h, w) on the [0, 1] scale.

    Accumulated in float64 over blocks of examples, so large splits need no
    float copy of the whole array.
    """
    c = images.shape[1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    for i in range(0, images.shape[0], block):
        chunk = images[i:i + block].astype(np.float64) / 255.0  # (m, c, h, w)
        s += chunk.sum(axis=(0, 2, 3))
        s2 += (chunk * chunk).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / count
    return mean, np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


@click.group("data")
def data():
    """Datasets: where they are, what they hold, and downloading them."""


@data.command("info")
@click.argument("name")
@_DATA_DIR
@click.option("--no-system", is_flag=True, help="do not look in system folders (Debian's datasets)")
def info_cmd(name, data_dir, no_system):
    """Where NAME's data was found, split sizes, shape, class balance, pixel mean/std."""
    try:
        info = get_info(name)
        click.echo(f"{info.title} ({info.name}): {info.num_classes} classes, images "
                   f"{'x'.join(map(str, info.shape))} (c x h x w)")
        click.echo(f"  normalise: mean {info.mean} std {info.std}; train augmentation: {info.train_aug}")
        found, failures = 0, []
        for split in info.splits:
            if info.fmt == "svhn" and split == "train":
                continue  # train = train-only + extra, both listed
            try:
                s = load_dataset(info.name, split, data_dir, search_system=not no_system)
            except DataError as exc:
                failures.append(exc)
                click.echo(f"{split}: not available")
                continue
            found += 1
            counts = np.bincount(s.labels, minlength=info.num_classes)
            mean, std = pixel_stats(s.images)
            click.echo(f"{split}: {s.labels.shape[0]} examples from {s.source_path}")
            for fname, how in s.verification:
                click.echo(f"  {fname}: verified by {how}")
            if info.num_classes <= 20:
                click.echo("  class balance: " + " ".join(f"{k}:{v}" for k, v in enumerate(counts)))
            else:
                click.echo(f"  class balance: {counts.min()} to {counts.max()} examples per class")
            click.echo(f"  pixel mean {_fmt(mean)} std {_fmt(std)}")
        damaged = [e for e in failures if not str(e).startswith("missing file")]
        if damaged or not found:
            raise (damaged or failures)[0]
        for exc in failures:
            click.echo(str(exc), err=True)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None


@data.command("fetch")
@click.argument("name")
@_DATA_DIR
@click.option("--mirror", multiple=True, help="base URL to download from instead of the published "
              "ones (repeatable; file:// works)")
@click.option("--no-system", is_flag=True, help="do not look in system folders (Debian's datasets)")
def fetch_cmd(name, data_dir, mirror, no_system):
    """Download NAME (if not already present), verify its checksums, unpack it."""
    try:
        info = get_info(name)
        click.echo(f"{info.title}: looking in {', '.join(map(str, candidate_dirs(info, data_dir, not no_system)))}")
        where = fetch(info.name, data_dir, mirrors=list(mirror) or None, search_system=not no_system)
        for split, folder in where.items():
            click.echo(f"{split}: verified in {folder}")
        click.echo(f"cache: {dataset_dir(info, data_dir)}")
    except DataError as exc:
        raise click.ClickException(str(exc)) from None

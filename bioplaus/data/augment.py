"""Training augmentations and normalisation, vectorised over the batch.

The random numbers are drawn on the host from a NumPy ``Generator`` the
caller gives (:func:`draw_params`); the functions that apply them take a
batch on either array module and do exact operations only (indexing, one
multiply by a 0/1 mask, and the float32 arithmetic of the normalisation,
each step correctly rounded), so a batch augmented with CuPy equals, bit for
bit, the same batch augmented with NumPy.

Order, as in the reference pipeline (torchvision ``RandomCrop(size,
padding=p)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize``, then
the reference's ``Cutout``): crop and flip act on the uint8 pixels,
normalisation turns them into float32, cutout zeroes a square of the
*normalised* image (so the hole holds the value 0, i.e. the mean pixel).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from bioplaus.backend import TRAIN_DTYPE, array_module, to_device


class AugParams(NamedTuple):
    """The random choices for one batch of ``n`` images (host arrays).

    offsets : int64 (n, 2) or None, crop offsets ``(dy, dx)`` in
        ``0 .. 2 * pad`` into the zero-padded image.
    flips : bool (n,) or None, True where the image is mirrored left-right.
    centres : int64 (n, 2) or None, cutout centres ``(cy, cx)``, uniform
        over the image.
    """

    offsets: np.ndarray | None
    flips: np.ndarray | None
    centres: np.ndarray | None


def draw_params(rng: np.random.Generator, n: int, hw, crop_pad: int = 0, hflip: bool = False,
                cutout: int = 0) -> AugParams:
    """Draw one batch's augmentation choices from ``rng``.

    The draws are made in a fixed order (offsets, flips, centres; each only
    when enabled), so a Generator with a given key always gives the same
    choices.
    """
    h, w = hw
    offsets = rng.integers(0, 2 * crop_pad + 1, size=(n, 2)) if crop_pad else None
    flips = (rng.random(n) < 0.5) if hflip else None
    centres = np.stack([rng.integers(0, h, size=n), rng.integers(0, w, size=n)], axis=1) if cutout else None
    return AugParams(offsets, flips, centres)


def random_crop(x, offsets, pad: int):
    """Crop each image out of its zero-padded copy.

    Parameters
    ----------
    x : (n, c, h, w) array (any dtype, NumPy or CuPy).
    offsets : (n, 2) int, ``(dy, dx)`` in ``0 .. 2 * pad``.
    pad : zero padding on each side.

    Returns
    -------
    (n, c, h, w) array: ``out[i] = pad(x[i])[:, dy:dy + h, dx:dx + w]``.

    Notes
    -----
    torchvision's ``RandomCrop(h, padding=pad)``: pad with zeros, then take
    an ``h x w`` window at a uniform offset.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    off = to_device(np.asarray(offsets, dtype=np.int64), xp)
    x_pad = xp.ascontiguousarray(xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))))  # (n, c, h+2p, w+2p)
    s0, s1, s2, s3 = x_pad.strides
    # every h x w window of every padded image, as a read-only view: (n, c, 2p+1, 2p+1, h, w)
    windows = xp.lib.stride_tricks.as_strided(x_pad, shape=(n, c, 2 * pad + 1, 2 * pad + 1, h, w),
                                              strides=(s0, s1, s2, s3, s2, s3))
    return windows[xp.arange(n), :, off[:, 0], off[:, 1]]  # image i's window at (dy_i, dx_i): (n, c, h, w)


def hflip(x, flips):
    """Mirror left-right the images where ``flips`` (n,) is True; (n, c, h, w)."""
    xp = array_module(x)
    f = to_device(np.asarray(flips, dtype=bool), xp)
    return xp.where(f[:, None, None, None], x[..., ::-1], x)


def normalize(x, mean, std):
    """uint8 pixels (n, c, h, w) -> float32 ``(x / 255 - mean) / std`` per channel.

    Notes
    -----
    The same float32 operations as torchvision's ``ToTensor`` (divide by
    255) then ``Normalize`` (subtract the mean, divide by the std), so the
    values equal the reference's bit for bit.
    """
    xp = array_module(x)
    m = xp.asarray(np.asarray(mean, dtype=TRAIN_DTYPE).reshape(1, -1, 1, 1))
    s = xp.asarray(np.asarray(std, dtype=TRAIN_DTYPE).reshape(1, -1, 1, 1))
    xf = x.astype(TRAIN_DTYPE) / TRAIN_DTYPE(255)
    return (xf - m) / s


def cutout(x, centres, length: int):
    """Zero one square hole per image.

    Parameters
    ----------
    x : (n, c, h, w) float array (normalised).
    centres : (n, 2) int, ``(cy, cx)``.
    length : side of the hole in pixels.

    Returns
    -------
    (n, c, h, w) array, ``x`` times a 0/1 mask that is 0 on rows
    ``[cy - length // 2, cy + length // 2)`` and columns
    ``[cx - length // 2, cx + length // 2)``, clipped to the image.

    Notes
    -----
    DeVries & Taylor (2017), as in the reference's ``Cutout(n_holes=1,
    length)``: the centre is uniform over the image, so the hole may be
    clipped at the border; for odd ``length`` the hole is ``length - 1``
    wide, exactly as there.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    cen = to_device(np.asarray(centres, dtype=np.int64), xp)
    half = length // 2
    y1, y2 = xp.clip(cen[:, 0] - half, 0, h), xp.clip(cen[:, 0] + half, 0, h)  # (n,)
    x1, x2 = xp.clip(cen[:, 1] - half, 0, w), xp.clip(cen[:, 1] + half, 0, w)
    r, q = xp.arange(h), xp.arange(w)
    in_rows = (r >= y1[:, None]) & (r < y2[:, None])  # (n, h)
    in_cols = (q >= x1[:, None]) & (q < x2[:, None])  # (n, w)
    mask = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (n, h, w)
    return x * mask[:, None, :, :].astype(x.dtype)


def augment(x, params: AugParams, mean, std, crop_pad: int = 0, cutout_length: int = 0):
    """Crop, flip, normalise, cut out: uint8 (n, c, h, w) -> float32 (n, c, h, w).

    ``params`` from :func:`draw_params`; a ``None`` field skips that step.
    """
    if params.offsets is not None:
        x = random_crop(x, params.offsets, crop_pad)
    if params.flips is not None:
        x = hflip(x, params.flips)
    x = normalize(x, mean, std)
    if params.centres is not None:
        x = cutout(x, params.centres, cutout_length)
    return x

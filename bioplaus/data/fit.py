r"""Bring images to a square size: bilinear resize or zero padding (``--input-size``).

LeNet needs 32x32 inputs; biotorch (Sanfiz & Akrout 2021) resizes the
28x28 Fashion-MNIST images to 32x32 with ``torchvision.transforms.Resize``,
LeCun et al. (1998) padded MNIST instead. Both are here, applied once to a
whole uint8 split before batching, so batches, augmentation and resume are
unchanged:

* ``resize``: separable bilinear interpolation with half-pixel centres
  (``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``),
  :math:`X' = R_h X R_w^T` with the interpolation matrix :func:`resize_matrix`,
  rounded to the nearest uint8 (as a PIL image is);
* ``pad``: the image centred in a field of zeros (black background).
"""
from __future__ import annotations

import numpy as np


def resize_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``R`` (n_out, n_in): row i holds the bilinear weights of output pixel i.

    Output pixel i samples the input at ``s = (i + 1/2) n_in / n_out - 1/2``,
    clamped to ``[0, n_in - 1]``, between pixels ``floor(s)`` and ``floor(s) + 1``.
    """
    R = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        s = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
        i0 = int(np.floor(s))
        i1 = min(i0 + 1, n_in - 1)
        w = s - i0
        R[i, i0] += 1.0 - w
        R[i, i1] += w
    return R


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Float64 images (n, c, size, size) from (n, c, h, w): ``R_h X R_w^T``."""
    x = np.asarray(images, dtype=np.float64)
    Rh = resize_matrix(size, x.shape[2])
    Rw = resize_matrix(size, x.shape[3])
    return np.einsum("ih,nchw,jw->ncij", Rh, x, Rw, optimize=True)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """``images`` (n, c, h, w) centred in zeros of (n, c, size, size); the extra
    row/column of an odd difference goes to the bottom/right."""
    n, c, h, w = images.shape
    if h > size or w > size:
        raise ValueError(f"--input-fit pad cannot shrink {h}x{w} images to {size}x{size}; "
                         f"use --input-fit resize")
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, c, size, size), dtype=images.dtype)
    out[:, :, top:top + h, left:left + w] = images
    return out


def fit_images(images: np.ndarray, size: int, mode: str) -> np.ndarray:
    """uint8 ``images`` brought to ``size`` x ``size`` by ``mode`` ('resize' or 'pad');
    ``size`` 0 or already the images' size: unchanged."""
    if size <= 0 or images.shape[2:] == (size, size):
        return images
    if mode == "pad":
        return pad_to(images, size)
    if mode == "resize":
        return np.clip(np.rint(resize_bilinear(images, size)), 0, 255).astype(np.uint8)
    raise ValueError(f"--input-fit must be resize or pad, got {mode!r}")


def fit_split(split, size: int, mode: str):
    """A :class:`~bioplaus.data.loaders.Split` with its images fitted (:func:`fit_images`)."""
    return split._replace(images=fit_images(split.images, size, mode))

"""Fixed random matrices, regenerated from ``(seed, layer)``, never stored.

Every matrix here is drawn on the host from :func:`bioplaus.backend.stream`
keyed by ``(seed, purpose, layer)`` and then moved to ``xp``, so the same
run seed gives the same matrices on NumPy and CuPy, and a checkpoint need
not hold them: calling the function again gives them back bit for bit.
Each kind of matrix has its own purpose string, so two matrices of the same
shape and layer are independent.

Bounds follow PyTorch's default initialisation, ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))``, which the reference code uses for these matrices.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import TRAIN_DTYPE, array_module, stream, to_device, uniform

#: Purpose strings of the random streams (one per kind of fixed matrix).
PURPOSE_FA = "feedback.fa.B"
PURPOSE_LABEL_PROJECTION = "feedback.bio.P"
PURPOSE_BIO_DECODER = "feedback.bio.B"
PURPOSE_FRC_M = "feedback.frc.M"
PURPOSE_FRC_K_SIGN = "feedback.frc.K.sign"
PURPOSE_FRC_K_RANDOM = "feedback.frc.K.random"

#: The feedback matrices of Mostafa et al. (2018) that :func:`frc_feedback` knows.
FRC_KINDS = ("sym", "sign", "random", "trainable")


def fa_matrix(xp, seed, layer, shape, dtype=TRAIN_DTYPE, scheme="torch"):
    """Feedback-alignment matrix ``B`` with the shape of a layer's ``W``.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    seed : int
        The run's seed.
    layer : int
        Index of the layer whose error ``B`` carries down.
    shape : tuple
        ``W``'s shape: ``(out, in)`` (linear) or ``(out, in, kh, kw)`` (conv).
    dtype : dtype
    scheme : str
        ``--init``: 'torch' or 'xavier-uniform' (the bound of :func:`init_bound`).

    Returns
    -------
    B : array, shape ``shape``
        Fixed, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
        ``fan_in = prod(shape[1:])`` (under 'xavier-uniform':
        ``U(+-sqrt(6/(fan_in + fan_out)))``).

    Notes
    -----
    Feedback alignment (Lillicrap et al. 2016) sends the error down as
    :math:`\\delta_{l-1} = (\\delta_l B_l) \\odot f'(a_{l-1})` instead of
    :math:`\\delta_l W_l`; the ``fa`` baseline of Mostafa et al. (2018).
    """
    shape = tuple(int(s) for s in shape)
    return uniform(xp, seed, PURPOSE_FA, layer, shape, init_bound(shape, scheme), dtype)


def label_projection(xp, seed, layer, num_classes, size=128, dtype=TRAIN_DTYPE):
    """Fixed random label projection ``P`` of the ``-bio`` rules.

    Parameters
    ----------
    xp : module
    seed, layer : int
        Key of the stream (each block has its own ``P``, as in the reference).
    num_classes : int
        ``C``.
    size : int
        Projection size (the reference's ``--target-proj-size``, 128).
    dtype : dtype

    Returns
    -------
    P : array, shape (size, C)
        Laid out as ``nn.Linear(C, size, bias=False).weight``: the projected
        target of a batch is ``Y @ P.T`` (n x size). ``U(+-1/sqrt(C))``.

    Notes
    -----
    pred-bio's target is :math:`1[P y > 0]`; sim-bio compares
    :math:`S(H)` with :math:`S(P Y)` (Nøkland & Eidnes 2019, backprop-free
    version).
    """
    return uniform(
        xp, seed, PURPOSE_LABEL_PROJECTION, layer, (int(size), int(num_classes)),
        1 / math.sqrt(num_classes), dtype,
    )


def bio_decoder_feedback(xp, seed, layer, shape, dtype=TRAIN_DTYPE):
    """Fixed feedback ``B`` of the pred-bio decoder (the reference's ``LinearFA``).

    Parameters
    ----------
    xp : module
    seed, layer : int
    shape : tuple (size, dim_in)
        The decoder weight's shape, ``(128, dim_in)``.
    dtype : dtype

    Returns
    -------
    B : array, shape ``shape``
        ``U(+-1/sqrt(dim_in))``: the decoder's error reaches ``H`` as
        ``dH = dY_hat @ B`` instead of ``dY_hat @ W``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise ValueError(f"bio_decoder_feedback: shape must be (size, dim_in), got {shape}")
    return uniform(xp, seed, PURPOSE_BIO_DECODER, layer, shape, 1 / math.sqrt(shape[1]), dtype)


def frc_classifier(xp, seed, layer, num_classes, n_features, dtype=TRAIN_DTYPE):
    """Mostafa et al.'s fixed random local classifier ``M_l``.

    Parameters
    ----------
    xp : module
    seed, layer : int
    num_classes : int
        ``C``.
    n_features : int
        ``N_l``, the layer's (flattened, pooled) width.
    dtype : dtype

    Returns
    -------
    M : array, shape (C, N)
        ``U(+-1/sqrt(N))``; the local scores are ``y_l = h_l @ M.T``.

    Notes
    -----
    :math:`y_l = M_l h_l` (Mostafa, Ramesh & Cauwenberghs 2018). ``M`` is
    regenerated from a small per-layer seed, as the paper proposes for
    hardware; under ``frc-trainable`` this is its initial value.
    """
    return uniform(
        xp, seed, PURPOSE_FRC_M, layer, (int(num_classes), int(n_features)),
        1 / math.sqrt(n_features), dtype,
    )


def frc_feedback(kind, M, xp, seed, layer, dtype=TRAIN_DTYPE):
    """Feedback matrix ``K_l`` that sends the local error ``e_l`` into layer l.

    Parameters
    ----------
    kind : {'sym', 'sign', 'random', 'trainable'}
        Which feedback (see Notes).
    M : array, shape (C, N)
        The layer's classifier (for 'trainable', its current value).
    xp : module
    seed, layer : int
        Key of the random streams ('sign' and 'random').
    dtype : dtype

    Returns
    -------
    K : array, shape (N, C)
        For 'sym' and 'trainable' this is ``M.T`` (a view of ``M`` when
        the dtype already matches, so it follows ``M`` as ``M`` trains).

    Notes
    -----
    The error enters layer l as :math:`\\delta_l = (K_l e_l) \\odot f'(a_l)`
    (Mostafa, Ramesh & Cauwenberghs 2018), with

    * ``sym``: :math:`K = M^\\top` (the exact gradient of the local loss);
    * ``sign``: :math:`K = \\mathrm{sign}(M^\\top) \\odot A`,
      :math:`A_{ij} \\sim U(0, 1/\\sqrt{N})` independent of ``M``
      (sign-concordant feedback);
    * ``random``: :math:`K_{ij} \\sim U(-1/\\sqrt{N}, 1/\\sqrt{N})`,
      independent of ``M`` (the paper reports that it fails to learn);
    * ``trainable``: :math:`K = M^\\top` with ``M`` learned as well.
    """
    C, N = M.shape
    bound = 1 / math.sqrt(N)
    if kind in ("sym", "trainable"):
        return M.T.astype(dtype, copy=False)  # (N, C)
    if kind == "sign":
        A = stream(seed, PURPOSE_FRC_K_SIGN, layer).uniform(0.0, bound, size=(N, C))
        return xp.sign(M.T).astype(dtype, copy=False) * to_device(A.astype(dtype), xp)
    if kind == "random":
        return uniform(xp, seed, PURPOSE_FRC_K_RANDOM, layer, (N, C), bound, dtype)
    raise ValueError(f"unknown feedback kind {kind!r}; choose one of {', '.join(FRC_KINDS)}")


# ----------------------------------------------------------------------------
# Sign-concordant feedback (Liao, Leibo & Poggio 2016; Xiao et al. 2018) and
# direct feedback (Nøkland 2016; Frenkel, Lefebvre & Bol 2021)
# ----------------------------------------------------------------------------
PURPOSE_FRSF = "feedback.frsf.B"
PURPOSE_BRSF = "feedback.brsf.R"
PURPOSE_DFA = "feedback.dfa.B"
PURPOSE_DRTP = "feedback.drtp.B"


def init_bound(shape, scheme="torch"):
    """The uniform bound of a matrix of ``shape`` (out, in[, kh, kw]) under ``--init``:
    'torch' ``1/sqrt(fan_in)``, 'xavier-uniform' ``sqrt(6/(fan_in + fan_out))``."""
    shape = tuple(int(s) for s in shape)
    rf = math.prod(shape[2:])
    fan_in, fan_out = shape[1] * rf, shape[0] * rf
    if scheme == "xavier-uniform":
        return math.sqrt(6.0 / (fan_in + fan_out))
    if scheme != "torch":
        raise ValueError(f"unknown init {scheme!r}; choose torch or xavier-uniform")
    return 1.0 / math.sqrt(fan_in)


def usf_scale(shape, scheme="torch"):
    r"""uSF's magnitude ``s``: the standard deviation of the layer's initialisation,
    ``bound / sqrt(3)`` for U(-bound, bound) (:func:`init_bound`)."""
    return init_bound(shape, scheme) / math.sqrt(3.0)


def sign_concordant(W, magnitude):
    r"""Sign-concordant feedback :math:`B = |M| \odot \mathrm{sign}(W)`.

    ``magnitude``: a scalar (uSF's ``s``) or an array of ``W``'s shape (frSF's
    fixed ``|B|``, brSF's batch's ``|R_t|``); with ``|W|`` it is ``W`` itself.
    """
    xp = array_module(W)
    return xp.sign(W) * xp.abs(magnitude)


def frsf_magnitude(xp, seed, layer, shape, dtype=TRAIN_DTYPE, scheme="torch"):
    """frSF's fixed magnitudes ``|B|``, B ~ U(+-:func:`init_bound`), drawn from (seed, layer)."""
    shape = tuple(int(s) for s in shape)
    B = uniform(xp, seed, PURPOSE_FRSF, layer, shape, init_bound(shape, scheme), dtype)
    return xp.abs(B)


def brsf_magnitude(xp, seed, layer, step, shape, dtype=TRAIN_DTYPE, scheme="torch"):
    """brSF's magnitudes ``|R_t|`` of training step ``step``: R_t ~ U(+-:func:`init_bound`),
    redrawn every batch from the stream keyed by (seed, layer, step), so a resumed
    run redraws exactly what the uninterrupted one drew."""
    shape = tuple(int(s) for s in shape)
    R = stream(seed, f"{PURPOSE_BRSF}.{int(layer)}", int(step)).uniform(
        -init_bound(shape, scheme), init_bound(shape, scheme), size=shape)
    return xp.abs(to_device(R.astype(dtype), xp))


def direct_matrix(purpose, xp, seed, layer, num_classes, width, dtype=TRAIN_DTYPE,
                  scheme="torch"):
    r"""DFA's or DRTP's fixed ``B_l`` (C, N_l): it sends a C-vector (the output error,
    or the one-hot target) straight to layer l's N_l units, ``dh_l = e B_l``.

    U(+-:func:`init_bound` of (C, N_l)), i.e. laid out as a linear N_l -> C
    (torch: ``1/sqrt(N_l)``); ``purpose`` is :data:`PURPOSE_DFA` or :data:`PURPOSE_DRTP`.
    """
    shape = (int(num_classes), int(width))
    return uniform(xp, seed, purpose, layer, shape, init_bound(shape, scheme), dtype)

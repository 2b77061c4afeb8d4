"""Pointwise nonlinearities: ReLU, LeakyReLU and tanh, and a lookup by name.

ReLU and LeakyReLU keep only the sign pattern of their input in the cache
(a boolean array, a quarter of a float32 input's memory); tanh keeps its
output ``y``, since :math:`\\tanh'(a) = 1 - y^2` (:class:`TanhCache`). The same cache
gives the derivative :math:`f'(a)` as an array (:func:`derivative`), which
Mostafa et al.'s local rule needs on its own:
:math:`\\delta_l = (K_l e_l) \\odot f'(a_l)`.

Convention at zero, as in PyTorch: :math:`\\mathrm{relu}'(0) = 0` and
:math:`\\mathrm{leakyrelu}'(0) = \\text{slope}` (the input counts as
positive only when it is strictly greater than 0).

Non-finite values give what the papers' PyTorch code gives. The backward
*selects* (``where``) rather than multiplying by the 0/1 derivative, so a
NaN or inf upstream gradient at an inactive ReLU unit gives 0 (torch's
``threshold_backward``), not NaN; at an inactive LeakyReLU unit it gives
``slope * dy``, as torch does (NaN for a NaN). A NaN pre-activation counts as active for
ReLU (torch tests ``not y <= 0``) and as inactive for LeakyReLU (torch
tests ``a > 0``).

This is the reference (docs/paths.md: the two paths).
"""
from __future__ import annotations

from typing import NamedTuple

from bioplaus.backend import array_module


class ActCache(NamedTuple):
    """What an activation's backward needs.

    Attributes
    ----------
    positive : bool array, shape of the input
        ``a > 0`` elementwise (ReLU: ``not a <= 0``, which differs only at NaN).
    slope : float
        Derivative on the non-positive side: 0 for ReLU, the leak for
        LeakyReLU.
    dtype : numpy dtype
        The input's dtype (the derivative is returned in it).
    """

    positive: object
    slope: float
    dtype: object


class TanhCache(NamedTuple):
    """What tanh's backward needs: its output.

    Attributes
    ----------
    y : array, shape of the input
        :math:`\\tanh(a)`; the derivative is :math:`1 - y^2`.
    """

    y: object


def relu_forward(x):
    """Rectified linear unit, ``max(x, 0)``.

    Parameters
    ----------
    x : array, any shape
        Pre-activation ``a``.

    Returns
    -------
    y : array, shape of ``x``
    cache : ActCache

    Notes
    -----
    .. math:: f(a) = \\max(a, 0), \\qquad f'(a) = \\mathbb{1}[a > 0]

    (Nøkland & Eidnes 2019, Sec. 4: ReLU unless a recipe says LeakyReLU.)
    """
    xp = array_module(x)
    y = xp.maximum(x, x.dtype.type(0))
    positive = ~(x <= 0)  # a > 0; a NaN input passes the gradient, as torch's
    return y, ActCache(positive=positive, slope=0.0, dtype=x.dtype)


def relu_backward(dy, cache):
    """Gradient of :func:`relu_forward`: ``dy`` where the input was positive, else 0.

    Parameters
    ----------
    dy : array, shape of the forward input
    cache : ActCache

    Returns
    -------
    dx : array, shape of ``dy``

    Notes
    -----
    .. math:: \\frac{\\partial L}{\\partial a} = \\frac{\\partial L}{\\partial y} \\odot \\mathbb{1}[a > 0]
    """
    xp = array_module(dy)
    # a selection, not dy * 1[a > 0]: 0 at an inactive unit even where dy is NaN or inf
    return xp.where(cache.positive, dy, dy.dtype.type(0))


def leaky_relu_forward(x, slope=0.01):
    """Leaky rectified linear unit, ``x`` if ``x > 0`` else ``slope * x``.

    Parameters
    ----------
    x : array, any shape
        Pre-activation ``a``.
    slope : float
        Slope on the negative side (PyTorch's ``negative_slope``, default 0.01).

    Returns
    -------
    y : array, shape of ``x``
    cache : ActCache

    Notes
    -----
    .. math::

        f(a) = \\begin{cases} a & a > 0 \\\\ s\\,a & a \\le 0 \\end{cases},
        \\qquad f'(a) = \\begin{cases} 1 & a > 0 \\\\ s & a \\le 0 \\end{cases}

    with :math:`s = 0.01` in the reference code (``--nonlin leakyrelu``,
    used by the Fashion-MNIST sim and predsim recipes of Nøkland & Eidnes 2019).
    """
    xp = array_module(x)
    slope = float(slope)
    positive = x > 0
    y = xp.where(positive, x, x.dtype.type(slope) * x)
    return y, ActCache(positive=positive, slope=slope, dtype=x.dtype)


def leaky_relu_backward(dy, cache):
    """Gradient of :func:`leaky_relu_forward`: ``dy`` where the input was positive, else ``slope * dy``.

    Parameters
    ----------
    dy : array, shape of the forward input
    cache : ActCache

    Returns
    -------
    dx : array, shape of ``dy``
    """
    xp = array_module(dy)
    return xp.where(cache.positive, dy, dy.dtype.type(cache.slope) * dy)


def tanh_forward(x):
    """Hyperbolic tangent, ``tanh(x)``.

    Parameters
    ----------
    x : array, any shape
        Pre-activation ``a``.

    Returns
    -------
    y : array, shape of ``x``
    cache : TanhCache

    Notes
    -----
    .. math:: f(a) = \\tanh(a), \\qquad f'(a) = 1 - \\tanh^2(a)

    The hidden nonlinearity of direct random target projection's own code
    (Frenkel, Lefebvre & Bol 2021: ``--conv-act tanh --hidden-act tanh`` by
    default): a unit saturates, so a fixed target's push stops as
    :math:`f'(a) \\to 0`.
    """
    xp = array_module(x)
    y = xp.tanh(x)
    return y, TanhCache(y=y)


def tanh_backward(dy, cache):
    """Gradient of :func:`tanh_forward`: ``dy * (1 - y^2)``.

    Parameters
    ----------
    dy : array, shape of the forward input
    cache : TanhCache

    Returns
    -------
    dx : array, shape of ``dy``

    Notes
    -----
    .. math:: \\frac{\\partial L}{\\partial a} = \\frac{\\partial L}{\\partial y} \\odot (1 - y^2)

    A product, as torch's ``tanh_backward``: NaN upstream stays NaN.
    """
    y = cache.y
    return dy * (y.dtype.type(1) - y * y)


def derivative(cache):
    """The activation's derivative :math:`f'(a)` as an array.

    Parameters
    ----------
    cache : ActCache or TanhCache
        From :func:`relu_forward`, :func:`leaky_relu_forward` or :func:`tanh_forward`.

    Returns
    -------
    fprime : array, shape of the forward input, the input's dtype
        ReLU and LeakyReLU: 1 where :math:`a > 0`, else the slope (0 for
        ReLU; at exactly :math:`a = 0` the non-positive branch, as in
        PyTorch). tanh: :math:`1 - y^2`.

    Notes
    -----
    Used where the derivative multiplies an error that is not the
    gradient arriving from above, as in the local rule of Mostafa et al.
    (2018): :math:`\\delta_l = (K_l e_l) \\odot f'(a_l)`. For any activation here,
    ``backward(dy, cache) == dy * derivative(cache)`` wherever ``dy`` is finite.
    """
    if isinstance(cache, TanhCache):
        return cache.y.dtype.type(1) - cache.y * cache.y
    xp = array_module(cache.positive)
    one = xp.asarray(1, dtype=cache.dtype)
    return xp.where(cache.positive, one, xp.asarray(cache.slope, dtype=cache.dtype))


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "leakyrelu": (leaky_relu_forward, leaky_relu_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def activation(name):
    """Look up ``(forward, backward)`` by name (``--nonlin`` in the reference code).

    Parameters
    ----------
    name : str
        One of the keys of :data:`ACTIVATIONS` (case-insensitive).

    Returns
    -------
    (forward, backward) : pair of callables

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; known activations: {', '.join(sorted(ACTIVATIONS))}"
        )
    return ACTIVATIONS[key]

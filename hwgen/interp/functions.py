"""Float definitions of the functions that several ops share, written once.

``Softmax``, ``hwgen.Attention``, ONNX ``Attention`` and ``hwgen.MoE`` use
:func:`softmax`; ``Sigmoid``, ``Gelu``, ``Erf`` and the activations of ``hwgen.MoE`` use
:func:`sigmoid`, :func:`gelu`, :func:`erf`, :func:`activation`. Each returns its
input's dtype; the transcendental ones evaluate in float64 first.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["softmax", "sigmoid", "erf", "gelu", "silu", "activation", "ACTIVATIONS"]

try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    _erf = np.vectorize(math.erf, otypes=[np.float64])

#: Activation names of :func:`activation` (``hwgen.MoE``'s ``activation`` attribute).
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "identity")


def softmax(x: np.ndarray, axis: int = -1, masked_rows_zero: bool = False) -> np.ndarray:
    """``exp(x - max) / sum exp(x - max)`` along ``axis``, in ``x``'s dtype.

    ``masked_rows_zero``: a row whose entries are all ``-inf`` (fully masked) gives
    probabilities 0 instead of ONNX Softmax's NaN.
    """
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    if masked_rows_zero:
        m = np.where(np.isfinite(m), m, x.dtype.type(0))
    e = np.exp(x - m)
    den = np.sum(e, axis=axis, keepdims=True)
    if masked_rows_zero:
        return np.where(den > 0, e / np.where(den > 0, den, 1), x.dtype.type(0)).astype(x.dtype, copy=False)
    return (e / den).astype(x.dtype, copy=False)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, evaluated in float64, in ``x``'s dtype."""
    x = np.asarray(x)
    return _erf(x.astype(np.float64)).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow, evaluated in float64, in ``x``'s dtype."""
    x = np.asarray(x)
    xd = x.astype(np.float64)
    e = np.exp(-np.abs(xd))
    return np.where(xd >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU: ``x * Phi(x)`` (``"none"``, erf form) or its ``"tanh"`` approximation."""
    x = np.asarray(x)
    xd = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3)))
    else:
        y = 0.5 * xd * (1 + _erf(xd / math.sqrt(2)))
    return y.astype(x.dtype, copy=False)


def silu(x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(x)`` (swish), evaluated in float64, in ``x``'s dtype."""
    x = np.asarray(x)
    xd = x.astype(np.float64)
    return (xd * sigmoid(xd)).astype(x.dtype, copy=False)


def activation(name: str, h: np.ndarray) -> np.ndarray:
    """One of :data:`ACTIVATIONS` applied to ``h``."""
    if name == "identity":
        return h
    if name == "relu":
        return np.maximum(h, 0).astype(h.dtype, copy=False)
    if name == "gelu":
        return gelu(h)
    if name == "gelu_tanh":
        return gelu(h, "tanh")
    if name == "silu":
        return silu(h)
    raise ValueError(f"activation {name!r} is not one of {ACTIVATIONS}")

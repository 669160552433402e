"""Errors that reach users as one clear line (the CLI prints them and exits 2)."""

from __future__ import annotations

__all__ = ["HwgenError", "ModelError", "UnsupportedOpError", "TargetError", "FixedFallbackWarning", "FusionRejectedWarning"]


class HwgenError(Exception):
    """Base of every error hwgen reports to users without a traceback."""


class ModelError(HwgenError):
    """The model file is unreadable, invalid, or outside what hwgen accepts."""


class UnsupportedOpError(ModelError):
    """A node uses an op (or an attribute/dtype of one) that hwgen does not support."""


class TargetError(HwgenError):
    """A target cannot compile the graph or its configuration is invalid."""


class FixedFallbackWarning(UserWarning):
    """Under ``numerics="fixed"`` a node ran its float kernel and had its result
    quantised: not the hardware's bit-level arithmetic (warned once per node)."""


class FusionRejectedWarning(UserWarning):
    """A region looked like a fusion's pattern but failed its numeric check (or a
    structural one); it stays unfused. ``hwgen inspect`` lists these."""

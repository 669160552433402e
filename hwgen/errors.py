"""Errors that reach users as one clear line (the CLI prints them and exits 2)."""

from __future__ import annotations

__all__ = ["HwgenError", "ModelError", "UnsupportedOpError", "TargetError"]


class HwgenError(Exception):
    """Base of every error hwgen reports to users without a traceback."""


class ModelError(HwgenError):
    """The model file is unreadable, invalid, or outside what hwgen accepts."""


class UnsupportedOpError(ModelError):
    """A node uses an op (or an attribute/dtype of one) that hwgen does not support."""


class TargetError(HwgenError):
    """A target cannot compile the graph or its configuration is invalid."""

"""The error classes of rnnlab.nn: rnnlab's messages, torch.nn's exception classes.

torch.nn raises ``RuntimeError`` for most bad inputs (a wrong feature size or state
shape, an empty time dimension, tensors on different devices) and ``ValueError`` or
``RuntimeError`` for a dtype mismatch, depending on which tensor. rnnlab raises these
classes, which derive from every class torch.nn raises for the same mistake, so both
``except ValueError`` and ``except RuntimeError`` (or ``TypeError`` for dtypes) catch them.
"""

from __future__ import annotations

__all__ = ["ArgumentError", "DtypeError"]


class ArgumentError(ValueError, RuntimeError):
    """A size, shape, device or option torch.nn rejects with ``RuntimeError`` or
    ``ValueError``: a ``ValueError`` and a ``RuntimeError`` both."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """An input or state whose dtype is not the parameters' floating-point dtype
    (torch.nn: ``ValueError`` for the input, ``RuntimeError`` for a state)."""

"""Exceptions and warnings raised by droplab.

Every error a user can cause derives from :class:`DroplabError`; the CLI turns them into one
line on stderr and exit code 2. Argument errors are also ``ValueError``/``TypeError`` so that
code written against torch's conventions keeps working.
"""

from __future__ import annotations

__all__ = ["DroplabError", "ConfigError", "DataError", "StoreError", "DroplabWarning"]


class DroplabError(Exception):
    """Base class of every error droplab raises on purpose."""


class ConfigError(DroplabError, ValueError):
    """An argument, a configuration key or a value is invalid."""


class DataError(DroplabError, ValueError):
    """A data file or array is missing, malformed or unusable (shape, NaN, labels)."""


class StoreError(DroplabError, RuntimeError):
    """A study store cannot be opened or written (missing, in use, incompatible)."""


class DroplabWarning(UserWarning):
    """Warnings droplab emits (for behaviour that is legal but probably unintended)."""

"""Packages only some features need: a clear one-line error when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(RuntimeError):
    """A package a feature needs is not installed."""


def require(module: str, feature: str, package: str | None = None) -> ModuleType:
    """Import `module` for `feature`, or raise MissingDependency saying how to install it.

    `package` is the name pip knows it by, when it differs from the module's.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = package or module
        raise MissingDependency(
            f"{feature} needs the package {package}, which is not installed ({error}); "
            f"install the project's pinned set with `pip install -r requirements.txt`, "
            f"or just `pip install {package}`") from error

"""Exceptions with a stable mapping to CLI exit codes.

``InputError`` and its subclasses are the caller's fault (exit code 2);
``CotembedError`` that is not an ``InputError`` is a runtime failure (exit 1).
"""

from __future__ import annotations


class CotembedError(Exception):
    """Base class of every error cotembed raises on purpose."""

    exit_code = 1


class InputError(CotembedError, ValueError):
    """Bad input: a usage mistake, an invalid file, an unknown label or model scheme."""

    exit_code = 2


class SystemValidationError(InputError):
    """A system file or dict that is not valid; lists every problem with its path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid system {source}: {len(self.problems)} problem(s)\n{lines}")


class UnknownModelError(InputError):
    """A model spec whose scheme no backend handles."""


class UnknownLabelError(InputError):
    """A dataset label that is not a class (or alias) of the system."""


class MissingDependencyError(CotembedError):
    """An optional backend whose extra is not installed."""

    def __init__(self, package: str, extra: str):
        self.package = package
        self.extra = extra
        super().__init__(f"this backend needs the '{package}' package: pip install 'cotembed[{extra}]'")


class ModelLoadError(CotembedError):
    """A model that could not be loaded (unreachable hub id, broken checkpoint)."""


class ModelFileError(ModelLoadError, InputError):
    """A model file given by the caller that is missing, corrupt or does not fit its
    tokenizer or declared output: the caller's input, so exit code 2."""

"""Shared loading helpers for the torch backends: torch import, device, local-or-hub ids, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotembed.errors import MissingDependencyError, ModelLoadError


def require_torch(extra: str) -> Any:
    """Import torch, or explain which extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", extra) from exc
    return torch


def resolve_device(device: str | None) -> str:
    """``None`` means CUDA when available, else CPU."""
    if device:
        return device
    torch = require_torch("hf")
    return "cuda" if torch.cuda.is_available() else "cpu"


def looks_like_path(argument: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else is meant as a filesystem path."""
    return (
        argument.startswith(("/", ".", "~"))
        or "\\" in argument
        or argument.count("/") > 1
        or (len(argument) > 1 and argument[1] == ":")
    )


def resolve_local_or_hub(argument: str, scheme: str) -> tuple[str, str]:
    """Return (what to pass to ``from_pretrained``, stable model key).

    Local directories are keyed by their resolved absolute path so ``./m`` and ``/abs/m``
    share cache entries; a path that does not exist fails here, without touching the hub.
    """
    path = Path(argument).expanduser()
    if path.is_dir():
        resolved = str(path.resolve())
        return resolved, f"{scheme}:{resolved}"
    if looks_like_path(argument):
        raise ModelLoadError(
            f"model directory {argument!r} does not exist; pass an existing local directory "
            f"({scheme}:/path/to/model) or a hub id"
        )
    return argument, f"{scheme}:{argument}"


def load_error(scheme: str, argument: str, source: str, exc: BaseException) -> ModelLoadError:
    """A load failure; for hub ids, say how to work offline."""
    reason = f"{type(exc).__name__}: {exc}"
    if Path(source).is_dir():
        return ModelLoadError(f"could not load {scheme}:{argument} from local directory {source} ({reason})")
    return ModelLoadError(
        f"could not load {scheme}:{argument}: the hub id could not be reached or is not a model ({reason}). "
        f"Without network access, download the model once and pass a local directory instead: "
        f"{scheme}:/path/to/model"
    )

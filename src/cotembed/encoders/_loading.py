"""Shared loading helpers for the torch backends: torch import, device, local-or-hub ids, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from cotembed.errors import InputError, MissingDependencyError, ModelLoadError, ModelNotFoundError


def quiet_model_libraries() -> Callable[[], None]:
    """Silence the model libraries' own progress bars ("Loading weights", downloads) for ``-q``.

    Through their APIs, not ``HF_HUB_DISABLE_PROGRESS_BARS``: huggingface_hub and transformers
    read that variable once, at import, so setting it would silence every later run in the
    process too. huggingface_hub is imported now when installed (transformers takes its state
    from it at import). Returns a function that undoes exactly what was switched off.
    """
    import importlib
    import importlib.util

    undo: list[Callable[[], None]] = []
    if "huggingface_hub" in sys.modules or importlib.util.find_spec("huggingface_hub") is not None:
        hub_utils = importlib.import_module("huggingface_hub.utils.tqdm")  # where the switches live

        if not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()
            undo.append(hub_utils.enable_progress_bars)
    transformers_before = "transformers" in sys.modules
    if transformers_before:
        from transformers.utils import logging as transformers_logging

        if transformers_logging.is_progress_bar_enabled():
            transformers_logging.disable_progress_bar()
            undo.append(transformers_logging.enable_progress_bar)

    def restore() -> None:
        for step in undo:
            step()
        if not transformers_before and "transformers" in sys.modules and undo:
            from transformers.utils import logging as transformers_logging  # imported while quiet: it took the hub's state

            transformers_logging.enable_progress_bar()

    return restore


def require_torch(extra: str) -> Any:
    """Import torch, or explain which extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", extra) from exc
    return torch


def resolve_device(device: str | None, extra: str = "hf") -> str:
    """``None`` or ``"auto"``: CUDA, else Apple MPS, else CPU. An explicit device must
    exist here: asking for ``cuda`` on a machine without it is an input error now, not
    a confusing failure halfway through loading."""
    torch = require_torch(extra)
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"device={device!r} is not a torch device; use cpu, cuda, cuda:N, mps or auto") from exc
    available = {"cuda": torch.cuda.is_available, "mps": lambda: bool(getattr(torch.backends, "mps", None))
                 and torch.backends.mps.is_available()}
    if kind in available and not available[kind]():
        raise InputError(f"device={device!r} is not available on this machine; use device='cpu' or 'auto'")
    return device


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
        raise ModelNotFoundError(
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

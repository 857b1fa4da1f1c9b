"""Cache key of the bundled critters model, read from its weights record: a cached run
learns which weights it stands for without importing torch or reading the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from cotembed.errors import ModelLoadError


def model_key(argument: str, options: Mapping[str, Any]) -> str:
    """``critters:<first 12 hex digits of the weights' sha256>``, as the loaded encoder reports."""
    from cotembed_critters.model import CONFIG_FILE, WEIGHTS_DIR

    record_path = (Path(argument).expanduser() if argument else WEIGHTS_DIR) / CONFIG_FILE
    try:
        sha256 = json.loads(record_path.read_text(encoding="utf-8"))["sha256"]
    except FileNotFoundError as exc:
        raise ModelLoadError(f"critters weights not found: {record_path} does not exist; "
                             "train them with `cotembed critters train`") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{record_path}: no readable 'sha256' field ({type(exc).__name__}: {exc})") from exc
    if not isinstance(sha256, str) or len(sha256) < 12:
        raise ModelLoadError(f"{record_path}: field 'sha256' is not a checksum ({sha256!r})")
    return f"critters:{sha256[:12]}"


__all__ = ["model_key"]

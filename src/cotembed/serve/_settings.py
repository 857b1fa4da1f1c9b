"""What ``cotembed serve`` is started with: models, systems, limits, batching, access.

Plain data (no FastAPI import), so the command line can check everything before a
model loads, and tests can build a server with a few fields changed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cotembed.errors import InputError
from cotembed.system import System

if TYPE_CHECKING:
    from cotembed.serve._urlguard import AddressPolicy

API_KEY_ENV = "COTEMBED_API_KEY"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class Limits:
    """Per-request bounds; each answers 413 (sizes) or 422 (counts) with a clear error."""

    max_inputs: int = 256
    """Inputs per classify/embeddings request."""
    max_labels: int = 512
    max_body_bytes: int = 32 * 2**20
    max_pixels: int = 25_000_000
    """Per image, read from its header before any pixel is decoded (decompression bombs)."""
    max_systems: int = 64
    """Systems the service holds (each keeps its prompt embeddings per model)."""
    max_top_k: int = 1000
    max_prompts: int = 50_000
    """Q, the text prompts of one system registered over HTTP (each is embedded once per model)."""
    max_classes: int = 20_000
    """N, the classes of one system registered over HTTP."""

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_labels", "max_body_bytes", "max_pixels", "max_systems", "max_top_k",
                     "max_prompts", "max_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive whole number, got {value!r}")


@dataclass(frozen=True)
class Batching:
    """Dynamic batching: a model call takes up to ``max_batch`` inputs, waiting at most
    ``max_wait_ms`` after the first for more; ``max_queue`` inputs may wait (more: 429)."""

    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    always_wait: bool = False
    """Wait ``max_wait_ms`` for more even when no other request is on its way (default: run at once then)."""

    def __post_init__(self) -> None:
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or not 1 <= self.max_batch <= 4096:
            raise InputError(f"max_batch must be a whole number from 1 to 4096, got {self.max_batch!r}")
        if not (isinstance(self.max_wait_ms, (int, float)) and 0 <= self.max_wait_ms <= 10_000):
            raise InputError(f"max_wait_ms must be a number of milliseconds from 0 to 10000, got {self.max_wait_ms!r}")
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < self.max_batch:
            raise InputError(f"max_queue must be a whole number >= max_batch ({self.max_batch}), got {self.max_queue!r}")


@dataclass(frozen=True)
class UrlFetching:
    """Image URLs are fetched only when ``enabled`` (``--allow-urls``), from public addresses
    only unless ``allow_hosts`` names them (host names, addresses, CIDR networks), within
    ``timeout_s`` in all (a wall-clock total, redirects included) and ``max_bytes``.
    ``resolver`` replaces the system's (tests)."""

    enabled: bool = False
    timeout_s: float = 10.0
    max_bytes: int = 10 * 2**20
    max_redirects: int = 3
    allow_hosts: tuple[str, ...] = ()
    resolver: Callable[[str, int], Awaitable[Sequence[str]]] | None = field(default=None, repr=False, compare=False)

    @property
    def policy(self) -> "AddressPolicy":
        from cotembed.serve._urlguard import AddressPolicy

        return AddressPolicy(self.allow_hosts)

    def __post_init__(self) -> None:
        self.policy  # noqa: B018 - a bad --allow-url-host is an error at start


@dataclass(frozen=True)
class ServeSettings:
    models: tuple[str, ...] = ("critters",)
    """Model specs, loaded once at start; the first is the default of requests that name none."""
    systems: tuple[System, ...] = ()
    system_names: tuple[str, ...] = ()
    """Names the systems are registered under (default: the system's own name, else its file's stem)."""
    api_key: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    cache: str | None = None
    """Embedding cache file (None: the CLI's default file)."""
    cache_enabled: bool = True
    cache_recover: bool = False
    device: str | None = None
    encoder_batch_size: int | None = None
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    urls: UrlFetching = field(default_factory=UrlFetching)
    graceful_timeout_s: float = 30.0
    allow_no_auth_off_loopback: bool = False
    register_wait_s: float = 5.0
    """How long ``POST /v1/systems`` waits for a new system to be ready before answering 202
    (it keeps being prepared; requests for it get 503 with ``Retry-After`` until then)."""
    examples: tuple[tuple[str, str], ...] = ()
    """(registered system name, labelled DATA) given at start: the system's few-shot examples for every model."""
    conformal_data: tuple[tuple[str, str], ...] = ()
    """(registered system name, labelled DATA) the system's conformal sets are calibrated on at start."""
    conformal_alpha: float | None = None
    """The miscoverage of those sets: each holds the true class with probability >= 1 - alpha."""
    conformal_score: str = "lac"
    workers: int = 1
    """Worker processes on the one socket (:mod:`cotembed.serve._workers`). Each keeps its own memory, so
    with more than one, systems and examples are given at start only: registering them over HTTP is a 409."""

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError("serve needs at least one --model")
        if bool(self.conformal_data) != (self.conformal_alpha is not None):
            raise InputError("conformal calibration needs both --conformal ALPHA and --conformal-data NAME=DATA")
        if self.conformal_alpha is not None and not 0 < self.conformal_alpha < 1:
            raise InputError(f"--conformal: alpha must be strictly between 0 and 1, got {self.conformal_alpha!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 64:
            raise InputError(f"workers must be a whole number from 1 to 64, got {self.workers!r}")
        if len(self.system_names) not in (0, len(self.systems)):
            raise InputError("system_names must name every system or none")
        if self.api_key is not None and not self.api_key.strip():
            raise InputError(f"the API key is empty; give a non-empty --api-key or ${API_KEY_ENV}, or neither")
        if not self.api_key and not is_loopback(self.host) and not self.allow_no_auth_off_loopback:
            raise InputError(
                f"--host {self.host} is reachable from other machines, so the service needs an API key: "
                f"set ${API_KEY_ENV} (or --api-key); --insecure-no-auth serves without one"
            )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

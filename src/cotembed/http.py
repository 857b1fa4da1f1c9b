"""One retry policy for every HTTP service cotembed talks to (the Jina embeddings API,
OpenAI-compatible chat completions).

Transient failures are retried: HTTP 408, 429 and 5xx, timeouts and broken or refused
connections. The delay doubles each time from ``backoff_s``, is capped at ``max_delay_s``
and shortened at random by up to ``jitter`` of itself, so many clients that failed
together do not come back together. A server's ``Retry-After`` (seconds or an HTTP date)
replaces our own delay, within the same cap. Both the number of attempts and the total
time are bounded, so a dead endpoint ends in a clear :class:`RetryError`, never in a hang.

Any other response (success, 401, 404, 400, ...) is handed back to the caller, which knows
what it means for its service.

httpx's timeouts bound each network operation, so a server that sends a byte every
half second never trips them. :func:`total_timeout_transport` with :func:`deadline`
makes a timeout a wall-clock total: every connect, read and write gets only the time
left before the deadline, and none starts after it.
"""

from __future__ import annotations

import contextvars
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from cotembed.errors import InputError, MissingDependencyError, RetryError

RETRY_STATUSES = frozenset({408, 429})
"""Retried besides every 5xx: request timeout and rate limit."""


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status <= 599


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    ``max_attempts`` counts every request (1 = no retry); ``max_total_s`` (None: no limit)
    bounds the time from the first request to the start of the last, so no retry is
    started whose wait would pass it.
    """

    max_attempts: int = 5
    backoff_s: float = 1.0
    max_delay_s: float = 60.0
    max_total_s: float | None = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            problems.append(f"max_attempts must be a whole number from 1 to 100, got {self.max_attempts!r}")
        for name in ("backoff_s", "max_delay_s"):
            if not _finite_at_least(getattr(self, name), 0.0):
                problems.append(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.max_total_s is not None and not _finite_at_least(self.max_total_s, 0.0):
            problems.append(f"max_total_s must be a finite number >= 0 or None, got {self.max_total_s!r}")
        if not _finite_at_least(self.jitter, 0.0) or self.jitter > 1:
            problems.append(f"jitter must be a number from 0 to 1, got {self.jitter!r}")
        if problems:
            raise InputError("invalid retry policy: " + "; ".join(problems))

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Our own delay after failed attempt number ``attempt`` (0 = the first request)."""
        delay = min(self.backoff_s * 2.0 ** min(attempt, 64), self.max_delay_s)
        return delay * (1.0 - self.jitter * rng())


def _finite_at_least(value: Any, low: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= low



def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header in seconds: a number of seconds or an HTTP date; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def response_detail(response: Any, limit: int = 300) -> str:
    """The server's error message, short: ``detail``, ``message`` or ``error.message`` of a JSON body, else the text."""
    try:
        payload = response.json()
    except ValueError:
        return str(response.text)[:limit].strip() or "(empty body)"
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error
        text = payload.get("detail") or payload.get("message") or error or payload
    else:
        text = payload
    return str(text)[:limit]


def send_with_retries(
    send: Callable[[], Any],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[int, float, str], None] | None = None,
) -> Any:
    """Call ``send()`` (one HTTP request returning an ``httpx.Response``) until it gives a
    response that is not a transient failure, and return that response.

    ``what`` names the service in the error (``"Jina API at https://..."``). ``on_retry(
    attempt, delay_s, problem)`` is called before each wait, e.g. to tell the user.
    Raises :class:`RetryError` when the attempts or the time budget run out.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - callers check first
        raise MissingDependencyError("httpx", "api") from exc
    start = clock()
    problem, status = "", None
    attempt = 0
    for attempt in range(1, policy.max_attempts + 1):
        server_delay: float | None = None
        try:
            response = send()
        except httpx.TransportError as exc:
            problem, status = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, None
        else:
            if not is_retryable_status(response.status_code):
                return response
            status = response.status_code
            problem = f"HTTP {status}: {response_detail(response)}"
            server_delay = retry_after_s(response.headers.get("Retry-After"))
        if attempt == policy.max_attempts:
            break
        delay = policy.backoff(attempt - 1, rng) if server_delay is None else min(server_delay, policy.max_delay_s)
        elapsed = clock() - start
        if policy.max_total_s is not None and elapsed + delay > policy.max_total_s:
            raise RetryError(
                f"{what} failed after {_attempts(attempt)} in {elapsed:.1f} s, giving up: waiting {delay:.1f} s more "
                f"would pass the {policy.max_total_s:g} s limit; last error: {problem}",
                attempts=attempt, problem=problem, status=status)
        if on_retry is not None:
            on_retry(attempt, delay, problem)
        sleep(delay)
    elapsed = clock() - start
    raise RetryError(f"{what} failed after {_attempts(attempt)} in {elapsed:.1f} s; last error: {problem}",
                     attempts=attempt, problem=problem, status=status)


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("cotembed_http_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Requests made inside (on a :func:`total_timeout_transport`) end within ``seconds`` from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _time_left(timeout: float | None, what: str) -> float | None:
    import httpcore

    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise (httpcore.ConnectTimeout if what == "connect" else httpcore.ReadTimeout)("the total time allowed ran out")
    return left if timeout is None else min(timeout, left)


def total_timeout_transport(**options: Any) -> Any:
    """An ``httpx.HTTPTransport`` whose network operations respect :func:`deadline`."""
    import httpcore
    import httpx

    class Stream(httpcore.NetworkStream):
        def __init__(self, inner: Any):
            self.inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return bytes(self.inner.read(max_bytes, _time_left(timeout, "read")))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.inner.write(buffer, _time_left(timeout, "write"))

        def close(self) -> None:
            self.inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> "Stream":
            return Stream(self.inner.start_tls(ssl_context, server_hostname, _time_left(timeout, "connect")))

        def get_extra_info(self, info: str) -> Any:
            return self.inner.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self, inner: Any):
            self.inner = inner

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> Stream:
            return Stream(self.inner.connect_tcp(host, port, _time_left(timeout, "connect"), local_address, socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Stream:
            return Stream(self.inner.connect_unix_socket(path, _time_left(timeout, "connect"), socket_options))

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    transport = httpx.HTTPTransport(**options)
    pool = transport._pool  # httpx builds the pool; only its network backend is swapped
    pool._network_backend = Backend(pool._network_backend)
    return transport


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


__all__ = ["RETRY_STATUSES", "RetryError", "RetryPolicy", "deadline", "is_retryable_status", "response_detail", "retry_after_s",
           "send_with_retries", "total_timeout_transport"]

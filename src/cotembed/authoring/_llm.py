"""A small client for OpenAI-compatible chat completions (OpenAI, Azure-style gateways,
vLLM, llama.cpp, Ollama, LM Studio, ...): ``POST {base_url}/chat/completions``.

Settings come from arguments, else the environment: ``COTEMBED_LLM_BASE_URL`` (else
``OPENAI_BASE_URL``, else OpenAI's), ``COTEMBED_LLM_MODEL``, and the key from
``COTEMBED_LLM_API_KEY`` or ``OPENAI_API_KEY`` (none is sent when none is set: local
servers need none). Transient failures are retried by :mod:`cotembed.http`.

Errors, so callers can tell whose fault a failure is::

    InputError (exit 2)          the settings are wrong: no model, a bad URL,
      LLMSettingsError             a rejected key (401/403), an unknown endpoint or model (404)
    CotembedError (exit 1)
      LLMError                   the service failed us
        LLMUnavailable             network errors, timeouts, 429/5xx after every retry
        LLMBadResponse             an answer that is not a chat completion, or a refused request (4xx)
        LLMRefusal                 the model declined (``refusal`` field, content filter)
        LLMEmptyAnswer             no text in the answer
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

from cotembed import __version__
from cotembed.errors import CotembedError, LLMBadResponse, LLMEmptyAnswer, LLMError, LLMRefusal, LLMSettingsError, LLMUnavailable, MissingDependencyError, RetryError
from cotembed.http import RetryPolicy, deadline, response_detail, send_with_retries, total_timeout_transport

ENV_BASE_URL = "COTEMBED_LLM_BASE_URL"
ENV_MODEL = "COTEMBED_LLM_MODEL"
ENV_API_KEYS = ("COTEMBED_LLM_API_KEY", "OPENAI_API_KEY")
FALLBACK_BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"

DEFAULT_TIMEOUT_S = 300.0
"""Waiting for the answer: a system for many classes is a long answer, minutes on a slow model."""
DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_RETRY = RetryPolicy(max_attempts=5, backoff_s=2.0, max_delay_s=60.0, max_total_s=900.0, jitter=0.5)

Message = Mapping[str, str]


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to ask. ``timeout_s`` bounds waiting for one answer (each attempt) as a
    wall-clock total: a server trickling bytes cannot stretch it; ``connect_timeout_s``
    reaching the server; ``temperature`` and ``max_tokens`` are sent only when set (some
    models refuse a temperature)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    temperature: float | None = None
    max_tokens: int | None = None
    retry: RetryPolicy = DEFAULT_RETRY

    def __post_init__(self) -> None:
        problems = []
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"base URL {self.base_url!r} must be an http:// or https:// URL with a host "
                            f"(e.g. {DEFAULT_BASE_URL} or http://localhost:11434/v1)")
        if not self.model or not self.model.strip():
            problems.append("the model name is empty")
        for name in ("timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a finite number of seconds > 0, got {value!r}")
        if self.temperature is not None and (not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2):
            problems.append(f"temperature must be from 0 to 2, got {self.temperature!r}")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            problems.append(f"max_tokens must be a positive whole number, got {self.max_tokens!r}")
        if problems:
            raise LLMSettingsError("invalid LLM settings: " + "; ".join(problems))

    @classmethod
    def resolve(cls, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                env: Mapping[str, str] | None = None, **options: Any) -> "LLMSettings":
        """Arguments first, then the environment; a missing model is an error naming both ways to give it."""
        env = os.environ if env is None else env
        model = model or env.get(ENV_MODEL, "").strip()
        if not model:
            raise LLMSettingsError(f"no LLM model given: pass --llm-model NAME or set {ENV_MODEL} (e.g. gpt-4o-mini, or a model your server serves)")
        base_url = base_url or env.get(ENV_BASE_URL, "").strip() or env.get(FALLBACK_BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL
        api_key = api_key or next((env[k].strip() for k in ENV_API_KEYS if env.get(k, "").strip()), None)
        return cls(base_url=base_url.strip(), model=model.strip(), api_key=api_key, **options)

    @property
    def endpoint(self) -> str:
        """The chat-completions URL; a base URL that already names it is used as it is."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    @property
    def host(self) -> str:
        """Host (and port) of the service, without credentials or path: safe to record."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host

    def with_options(self, **changes: Any) -> "LLMSettings":
        return replace(self, **changes)


@dataclass(frozen=True)
class ChatReply:
    """One answer: its text, why it stopped (``stop``, ``length``, ...), the model that
    answered (as the server names it), token usage and the time the request took."""

    content: str
    finish_reason: str | None
    model: str
    usage: Mapping[str, Any]
    elapsed_s: float

    @property
    def truncated(self) -> bool:
        """The answer hit the token limit and is probably incomplete."""
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return {"content": self.content, "finish_reason": self.finish_reason, "model": self.model,
                "usage": dict(self.usage), "elapsed_s": round(self.elapsed_s, 3)}


class ChatModel(Protocol):
    """What drafting needs from an LLM: messages in, one reply out."""

    settings: LLMSettings

    def complete(self, messages: Sequence[Message]) -> ChatReply: ...


class ChatClient:
    """Chat completions over httpx. ``transport`` (an ``httpx`` transport, e.g. ``MockTransport``),
    ``sleep`` and ``on_retry(attempt, delay_s, problem)`` are for tests and progress messages."""

    def __init__(self, settings: LLMSettings, *, transport: Any = None, sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[int, float, str], None] | None = None) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "llm") from exc
        self.settings = settings
        self._sleep = sleep
        self._on_retry = on_retry
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": f"cotembed/{__version__}"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.connect_timeout_s, settings.timeout_s))
        if transport is None and not _proxies_in_environment():  # a transport given to httpx turns env proxies off
            transport = total_timeout_transport()
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request_body(self, messages: Sequence[Message]) -> dict[str, Any]:
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": [dict(m) for m in messages]}
        if s.temperature is not None:
            body["temperature"] = s.temperature
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        return body

    def complete(self, messages: Sequence[Message]) -> ChatReply:
        """Send the conversation, return the assistant's answer; every failure is one of the errors above."""
        s = self.settings
        body = self.request_body(messages)
        started = time.monotonic()

        def attempt() -> Any:
            with deadline(s.timeout_s):  # each attempt's connect, send and every read end by then
                return self._client.post(s.endpoint, json=body)

        try:
            response = send_with_retries(attempt, s.retry, what=f"the LLM at {s.endpoint}", sleep=self._sleep, on_retry=self._on_retry)
        except RetryError as exc:
            hint = _UNAVAILABLE_HINTS.get(exc.status or 0, "check the network and the base URL, or raise --timeout")
            raise LLMUnavailable(f"{exc}; {hint}", attempts=exc.attempts, status=exc.status) from exc
        elapsed = time.monotonic() - started
        status = response.status_code
        if status >= 400:
            raise self._rejected(response)
        return _parse_reply(response, s.endpoint, elapsed)

    def _rejected(self, response: Any) -> CotembedError:
        s, status, detail = self.settings, response.status_code, response_detail(response)
        if status in (401, 403):
            if not s.api_key:
                how = f"no API key was sent: set {' or '.join(ENV_API_KEYS)}, or pass --llm-api-key"
            else:
                how = f"check the key ({' or '.join(ENV_API_KEYS)} / --llm-api-key), its permissions and its balance"
            return LLMSettingsError(f"the LLM at {s.host} refused the request (HTTP {status}: {detail}); {how}")
        if status == 404 or _names_unknown_model(detail):
            return LLMSettingsError(f"the LLM at {s.endpoint} answered HTTP {status} ({detail}): check the base URL "
                                    f"(OpenAI-compatible servers usually end in /v1) and that it serves the model {s.model!r}")
        hint = "; the prompt may be too long for this model: try fewer classes or a model with a longer context" if _too_long(detail) else ""
        return LLMBadResponse(f"the LLM at {s.host} rejected the request for model {s.model!r} (HTTP {status}: {detail}){hint}")


_UNAVAILABLE_HINTS = {
    429: "the service is rate-limiting this key: wait a while and run again, or raise --max-attempts",
    408: "the service timed out: try again later",
}


def _proxies_in_environment() -> bool:
    import urllib.request

    return any(k in ("http", "https", "all") for k in urllib.request.getproxies())


def _names_unknown_model(detail: str) -> bool:
    text = detail.lower()
    return "model" in text and any(p in text for p in ("not found", "does not exist", "model_not_found", "unknown model", "no such model"))


def _too_long(detail: str) -> bool:
    text = detail.lower()
    return any(p in text for p in ("context length", "context_length", "maximum context", "too many tokens", "too long"))


def _parse_reply(response: Any, endpoint: str, elapsed: float) -> ChatReply:
    """The first choice's text; refusals, content filters and empty answers are errors."""
    try:
        payload = response.json()
        choice = payload["choices"][0]
        message = choice.get("message") or {}
        if not isinstance(message, dict):
            raise TypeError("message is not an object")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise LLMBadResponse(f"the answer from {endpoint} is not a chat completion (expected JSON with choices[0].message): "
                             f"{str(response.text)[:200]!r}") from None
    finish = choice.get("finish_reason")
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal.strip():
        raise LLMRefusal(f"the model refused: {refusal.strip()[:300]}")
    if finish == "content_filter":
        raise LLMRefusal("the model's answer was withheld by the service's content filter (finish_reason=content_filter)")
    content = _text(message.get("content"))
    if not content.strip():
        why = (" the answer hit the token limit before any text (reasoning models spend tokens thinking): raise --max-tokens"
               if finish == "length" else f" (finish_reason={finish!r})")
        raise LLMEmptyAnswer(f"the model answered with no text;{why}")
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    model = payload.get("model") if isinstance(payload.get("model"), str) else ""
    return ChatReply(content=content, finish_reason=finish if isinstance(finish, str) else None, model=model,
                     usage=usage, elapsed_s=elapsed)


def _text(content: Any) -> str:
    """Message content as text: a string, or a list of parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) and isinstance(p.get("text"), str) else "" for p in content)
    return ""


__all__ = [
    "ChatClient",
    "ChatModel",
    "ChatReply",
    "DEFAULT_BASE_URL",
    "ENV_API_KEYS",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "LLMBadResponse",
    "LLMEmptyAnswer",
    "LLMError",
    "LLMRefusal",
    "LLMSettings",
    "LLMSettingsError",
    "LLMUnavailable",
]

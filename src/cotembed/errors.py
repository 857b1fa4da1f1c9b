"""Every exception cotembed raises on purpose, with what the CLI and the service answer for it.

Each class carries an ``exit_code`` (read by ``cotembed``'s ``main``) and an
``http_status`` (read by the service's error handlers), so the two can never disagree
about whose fault a failure is. ``error_type`` is the stable ``type`` field of the
service's error body, a word a program can branch on.

The hierarchy::

    CotembedError                  exit 1, HTTP 500 server_error
    ├── InputError (ValueError)    exit 2, HTTP 422 invalid_request_error: the caller's fault
    │   ├── SystemValidationError  a system file or dict that is not valid; every problem with its path
    │   ├── UnknownModelError      a model spec whose scheme no backend handles
    │   ├── UnknownLabelError      a label that is not a class (or alias) of the system
    │   ├── NotFittedError         (AttributeError) an inducer used before ``fit``
    │   ├── LLMSettingsError       wrong LLM settings: model, URL, key
    │   ├── ConflictError          HTTP 409: another studio tab holds the system, or a save needs confirmation
    │   │   └── BusyError          a studio proposer (an optimise run, an LLM revision) already at work
    │   └── SpeciesFileError       an invalid critters species file
    ├── MissingDependencyError     an optional extra that is not installed
    │   └── HarnessDependencyError the Pokémon harness's extra
    ├── ModelLoadError             a model that could not be loaded
    │   ├── ModelFileError         (InputError) exit 2: a given model file missing, corrupt, or not fitting its tokenizer
    │   └── ModelNotFoundError     (InputError) exit 2: a model path that does not exist
    ├── CacheCorruptError          a damaged embedding cache (rerun with --cache-recover)
    ├── RetryError                 an HTTP request that kept failing until attempts or time ran out
    ├── LLMError                   the chat-completions service gave no usable answer
    │   ├── LLMUnavailable         network failures, rate limits, server errors outlasted the retries
    │   ├── LLMBadResponse         an answer that is not a chat completion, or a rejected request
    │   ├── LLMRefusal             the model declined
    │   ├── LLMEmptyAnswer         the answer held no text
    │   └── DraftParseError        an answer with no readable system in it
    ├── BuildFailed                no valid drafted system after every repair round
    ├── ServiceError               failures of the service itself, not of one request
    │   ├── QueueFull              HTTP 429 queue_full: the batching queue is at its limit
    │   ├── BatcherClosed          HTTP 503 service_unavailable: shutting down
    │   └── InputFailed            the model failed on one input of a request, even run alone
    ├── FetchRefused               exit 2, HTTP 422: a URL the address guard refused, or a failed fetch
    ├── ApiError                   the service's answer with a status of its own (exit 2 below 500)
    └── ConformanceError           (AssertionError) a backend or method failed its contract suite
        ├── EncoderCheckError      ``check_encoder``
        └── MethodCheckError       ``check_method``

``KeyboardInterrupt`` exits 130; any other exception is a defect: exit 1, HTTP 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

INVALID = "invalid_request_error"
AUTH = "authentication_error"
TOO_LARGE = "payload_too_large"
QUEUE_FULL = "queue_full"
NOT_FOUND = "not_found"
CONFLICT = "conflict"
UNAVAILABLE = "service_unavailable"
SERVER = "server_error"

TYPE_OF_STATUS = {401: AUTH, 404: NOT_FOUND, 405: "method_not_allowed", 409: CONFLICT, 413: TOO_LARGE,
                  415: "unsupported_media_type", 422: INVALID, 429: QUEUE_FULL, 503: UNAVAILABLE}
"""The service's error ``type`` for an HTTP status it answers."""


def type_of_status(status: int) -> str:
    return TYPE_OF_STATUS.get(status, SERVER if status >= 500 else INVALID)


class CotembedError(Exception):
    """Base class of every error cotembed raises on purpose: a runtime failure unless a subclass says otherwise."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = SERVER


class InputError(CotembedError, ValueError):
    """Bad input: a usage mistake, an invalid file, an unknown label or model scheme."""

    exit_code = 2
    http_status = 422
    error_type = INVALID


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


class NotFittedError(InputError, AttributeError):
    """The inducer was used before :meth:`RuleInducer.fit` (as scikit-learn's NotFittedError)."""


class LLMSettingsError(InputError):
    """The LLM settings are wrong (model, URL, key): fix the flags or the environment."""


class SpeciesFileError(InputError):
    """An invalid species file; every problem is one line starting with the file name."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class MissingDependencyError(CotembedError):
    """An optional backend whose extra is not installed."""

    def __init__(self, package: str, extra: str):
        self.package = package
        self.extra = extra
        super().__init__(f"this backend needs the '{package}' package: pip install 'cotembed[{extra}]'")


class HarnessDependencyError(MissingDependencyError):
    """The Pokémon harness needs a package of the ``pokemon`` extra."""

    def __init__(self, package: str, extra: str = "pokemon") -> None:
        CotembedError.__init__(self, f"the Pokémon harness needs the '{package}' package: pip install 'cotembed[{extra}]'")
        self.package = package
        self.extra = extra


class ModelLoadError(CotembedError):
    """A model that could not be loaded (unreachable hub id, broken checkpoint)."""


class ModelFileError(ModelLoadError, InputError):
    """A model file given by the caller that is missing, corrupt or does not fit its
    tokenizer or declared output: the caller's input, so exit code 2."""


class ModelNotFoundError(ModelLoadError, InputError):
    """A model path that does not exist: bad input (exit 2), caught like any load failure."""

    exit_code = 2


class ConflictError(InputError):
    """Another studio tab holds the system, or a save needs confirmation (HTTP 409)."""

    http_status = 409
    error_type = CONFLICT


class BusyError(ConflictError):
    """A long studio proposer (an optimise run, an LLM revision) is already at work: one at a time (HTTP 409 busy)."""

    error_type = "busy"


class CacheCorruptError(CotembedError):
    """The cache file is damaged. Nothing in it is needed: move it aside and start afresh."""

    def __init__(self, path: Path, detail: str):
        self.path = path
        self.detail = detail
        super().__init__(
            f"embedding cache {path} is corrupt ({detail}); rerun with --cache-recover "
            f"(open_cache(..., recover=True)) to move it aside and start a fresh cache, "
            f"or use --no-cache or --cache OTHER_PATH"
        )


class RetryError(CotembedError):
    """A request that kept failing: attempts or time ran out (exit code 1).

    ``attempts`` made, ``problem`` (the last failure, in words) and ``status`` (the last
    HTTP status, or None when the last failure was a network error or timeout).
    """

    def __init__(self, message: str, *, attempts: int, problem: str, status: int | None):
        super().__init__(message)
        self.attempts = attempts
        self.problem = problem
        self.status = status


class LLMError(CotembedError):
    """The chat-completions service did not give a usable answer."""


class LLMUnavailable(LLMError):
    """Network failures, timeouts, rate limits or server errors outlasted the retries."""

    def __init__(self, message: str, *, attempts: int, status: int | None):
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class LLMBadResponse(LLMError):
    """The service answered, but not with a chat completion, or rejected the request."""


class LLMRefusal(LLMError):
    """The model declined to answer."""


class LLMEmptyAnswer(LLMError):
    """The answer held no text."""


class DraftParseError(LLMError):
    """An answer with no readable system in it; ``reason`` says what was wrong, for the LLM and the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BuildFailed(CotembedError):
    """No valid system after every repair round (exit code 1); ``problems`` are the last draft's."""

    def __init__(self, message: str, problems: Sequence[str], source: str, rejected: str | None = None):
        super().__init__(message)
        self.problems = list(problems)
        self.source = source
        self.rejected = rejected


class ServiceError(CotembedError):
    """The service could not take or finish the work, whatever the request held."""


class QueueFull(ServiceError):
    """The batching queue would pass its limit: the client retries shortly (``Retry-After``)."""

    http_status = 429
    error_type = QUEUE_FULL

    def __init__(self, waiting: int, asked: int, limit: int):
        self.waiting, self.asked, self.limit = waiting, asked, limit
        super().__init__(f"the queue holds {waiting} input(s); {asked} more would pass its limit of {limit}")


class BatcherClosed(ServiceError):
    """The service is shutting down and takes no new work."""

    http_status = 503
    error_type = UNAVAILABLE


class InputFailed(ServiceError):
    """The model failed on input number ``position`` of a request, even run alone."""

    def __init__(self, position: int, error: BaseException):
        self.position, self.error = position, error
        super().__init__(f"input {position}: {type(error).__name__}: {error}")


class FetchRefused(CotembedError):
    """A URL the guard refused, or a fetch that failed; ``reason`` is for the server's log only."""

    exit_code = 2
    http_status = 422
    error_type = INVALID

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ApiError(CotembedError):
    """A failure the service answers with ``status`` (its ``http_status``); ``param`` says where in the
    request (``input[3].image``), ``extra`` adds fields (a system's validation ``problems``) and
    ``headers`` response headers. A status below 500 is the client's fault (exit code 2)."""

    def __init__(self, status: int, message: str, param: str | None = None, *, type: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.http_status = status
        self.exit_code = 2 if status < 500 else 1
        self.error_type = type or type_of_status(status)
        self.message = message
        self.param = param
        self.headers = headers
        self.extra = extra

    @property
    def status(self) -> int:
        return self.http_status

    @property
    def type(self) -> str:
        return self.error_type


class ConformanceError(CotembedError, AssertionError):
    """A backend or method broke the contract its conformance suite checks; ``check`` names which part."""

    check: str


class EncoderCheckError(ConformanceError):
    """An encoder failed a conformance check; ``check`` names which one."""

    def __init__(self, check: str, model_key: str, problem: str) -> None:
        self.check = check
        self.model_key = model_key
        super().__init__(f"check_encoder: {check} failed for {model_key}: {problem}")


class MethodCheckError(ConformanceError):
    """A scoring method failed a conformance check; ``check`` names which one."""

    def __init__(self, check: str, method: str, problem: str) -> None:
        self.check = check
        self.method = method
        super().__init__(f"check_method: {check} failed for {method}: {problem}")


def exit_code_of(exc: BaseException) -> int:
    """The CLI's exit status for any exception: the class's own, 130 for an interrupt, else 1."""
    if isinstance(exc, CotembedError):
        return exc.exit_code
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def http_status_of(exc: BaseException) -> int:
    """The service's status for any exception: the class's own, else 500."""
    return exc.http_status if isinstance(exc, CotembedError) else 500


__all__ = [
    "ApiError", "BuildFailed", "CacheCorruptError", "ConformanceError", "CotembedError", "DraftParseError", "EncoderCheckError",
    "FetchRefused", "HarnessDependencyError", "InputError", "InputFailed", "LLMBadResponse", "LLMEmptyAnswer", "LLMError",
    "LLMRefusal", "LLMSettingsError", "LLMUnavailable", "MethodCheckError", "MissingDependencyError", "ModelLoadError", "ModelFileError", "ModelNotFoundError", "ConflictError",
    "BusyError",
    "NotFittedError", "QueueFull", "RetryError", "BatcherClosed", "ServiceError", "SpeciesFileError", "SystemValidationError",
    "TYPE_OF_STATUS", "UnknownLabelError", "UnknownModelError", "exit_code_of", "http_status_of", "type_of_status",
]

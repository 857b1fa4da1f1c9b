"""The shared retry policy (cotembed.http): backoff, jitter, Retry-After, attempt and time bounds."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable

import httpx
import pytest

from cotembed.errors import InputError, RetryError
from cotembed.http import RetryPolicy, is_retryable_status, response_detail, retry_after_s, send_with_retries


class Clock:
    """Fake time: sleeping advances it, so time budgets are checked without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _client(*responses: Any) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose transport answers with ``responses`` in order (an exception instance is raised)."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def _send(client: httpx.Client) -> Callable[[], httpx.Response]:
    return lambda: client.post("http://service.test/x", json={})


def test_backoff_doubles_is_capped_and_jitter_only_shortens() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_delay_s=5.0, jitter=0.0)
    assert [policy.backoff(a) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittery = RetryPolicy(backoff_s=2.0, max_delay_s=60.0, jitter=0.5)
    assert jittery.backoff(1, rng=lambda: 0.0) == 4.0
    assert jittery.backoff(1, rng=lambda: 0.999) == pytest.approx(4.0 * (1 - 0.5 * 0.999))
    assert RetryPolicy(jitter=0.0).backoff(10_000) == 60.0  # no overflow on a huge attempt number


@pytest.mark.parametrize("changes", [{"max_attempts": 0}, {"max_attempts": True}, {"backoff_s": float("nan")},
                                     {"max_delay_s": -1.0}, {"max_total_s": float("inf")}, {"jitter": 1.5}])
def test_bad_policy_is_an_input_error(changes: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=next(iter(changes))):
        RetryPolicy(**changes)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("-3") == 0.0
    assert retry_after_s(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == pytest.approx(30.0)
    assert retry_after_s(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("nan") is None


def test_retryable_statuses() -> None:
    assert [s for s in (200, 400, 401, 404, 408, 422, 429, 500, 502, 503, 504) if is_retryable_status(s)] == [408, 429, 500, 502, 503, 504]


def test_transient_failures_are_retried_honouring_retry_after() -> None:
    client, seen = _client(
        httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"message": "slow down"}}),
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"detail": "busy"}),
        httpx.Response(200, json={"ok": True}),
    )
    clock, notes = Clock(), []
    policy = RetryPolicy(max_attempts=4, backoff_s=1.0, jitter=0.0)
    response = send_with_retries(_send(client), policy, what="svc", sleep=clock.sleep, clock=clock,
                                 on_retry=lambda a, d, p: notes.append((a, d, p)))
    assert response.json() == {"ok": True} and len(seen) == 4
    assert clock.sleeps == [3.0, 2.0, 4.0]  # the server's 3 s, then our own 1*2**1 and 1*2**2
    assert [n[0] for n in notes] == [1, 2, 3]
    assert notes[0][2] == "HTTP 429: slow down" and notes[1][2].startswith("ConnectError") and notes[2][2] == "HTTP 503: busy"


def test_other_client_errors_are_returned_at_once() -> None:
    client, seen = _client(httpx.Response(401, json={"error": {"message": "bad key"}}))
    response = send_with_retries(_send(client), RetryPolicy(), what="svc", sleep=Clock().sleep)
    assert response.status_code == 401 and len(seen) == 1


def test_gives_up_after_the_last_attempt_naming_the_last_error() -> None:
    client, seen = _client(*[httpx.Response(500, text="<html>oops</html>")] * 3)
    clock = Clock()
    with pytest.raises(RetryError, match=r"svc failed after 3 attempts.*HTTP 500: <html>oops</html>") as info:
        send_with_retries(_send(client), RetryPolicy(max_attempts=3, backoff_s=0.5, jitter=0.0), what="svc",
                          sleep=clock.sleep, clock=clock)
    assert info.value.attempts == 3 and info.value.status == 500 and info.value.exit_code == 1
    assert clock.sleeps == [0.5, 1.0] and len(seen) == 3


def test_time_budget_stops_before_a_wait_that_would_pass_it() -> None:
    client, seen = _client(*[httpx.ReadTimeout("slow")] * 10)
    clock = Clock()
    policy = RetryPolicy(max_attempts=10, backoff_s=4.0, max_delay_s=100.0, max_total_s=20.0, jitter=0.0)
    with pytest.raises(RetryError, match=r"after 3 attempts.*waiting 16.0 s more would pass the 20 s limit.*ReadTimeout") as info:
        send_with_retries(_send(client), policy, what="svc", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [4.0, 8.0] and len(seen) == 3 and info.value.status is None


def test_retry_after_is_capped_by_max_delay() -> None:
    client, _ = _client(httpx.Response(429, headers={"Retry-After": "86400"}), httpx.Response(204))
    clock = Clock()
    send_with_retries(_send(client), RetryPolicy(max_delay_s=30.0, max_total_s=None), what="svc", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [30.0]


def test_response_detail_shapes() -> None:
    assert response_detail(httpx.Response(400, json={"error": {"message": "m1"}})) == "m1"
    assert response_detail(httpx.Response(400, json={"detail": "d"})) == "d"
    assert response_detail(httpx.Response(400, text="x" * 1000)) == "x" * 300
    assert response_detail(httpx.Response(502, text="")) == "(empty body)"


# ------------------------------------------------------------------ wall-clock total timeouts
@pytest.mark.parametrize("trickle_headers", [False, True])
def test_a_deadline_bounds_a_server_that_trickles_a_byte_at_a_time(trickle_headers: bool) -> None:
    """Every read succeeds within its 5 s timeout; only the 1.5 s total ends the request."""
    from tests.trickle_server import TrickleServer

    from cotembed.http import deadline, total_timeout_transport

    with TrickleServer(interval_s=0.3, trickle_headers=trickle_headers) as server, \
            httpx.Client(transport=total_timeout_transport(), timeout=5.0) as client:
        start = time.monotonic()
        with pytest.raises(httpx.TimeoutException), deadline(1.5):
            client.get(server.url)
        assert 1.4 < time.monotonic() - start < 2.5


def test_the_llm_timeout_is_a_total_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.llm_server import PROXY_VARS
    from tests.trickle_server import TrickleServer

    from cotembed.authoring._llm import ChatClient, LLMSettings
    from cotembed.errors import LLMUnavailable

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    with TrickleServer(interval_s=0.3) as server:
        settings = LLMSettings(base_url=f"{server.url}/v1", model="m", timeout_s=2.0,
                               retry=RetryPolicy(max_attempts=2, backoff_s=0.1, jitter=0.0, max_total_s=60.0))
        with ChatClient(settings) as client:
            start = time.monotonic()
            with pytest.raises(LLMUnavailable):
                client.complete([{"role": "user", "content": "hi"}])
            took = time.monotonic() - start
    assert 3.9 < took < 5.5, took  # two attempts of 2 s each (per-read timeouts alone: 1000 bytes x 0.3 s each)
    assert server.requests == 2

"""The image-URL guard of ``cotembed serve --allow-urls``: which addresses are refused, that
the connection goes to the address that was checked, redirects, and the caps. Traffic
goes only to loopback servers; other hosts exist only in a stub resolver."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from cotembed.errors import FetchRefused, InputError  # noqa: E402
from cotembed.serve._urlguard import AddressPolicy, address_class, fetch  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("127.1.2.3", "loopback"), ("::1", "loopback"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "private"), ("100.64.0.1", "shared"), ("192.0.2.1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a00:1", "private"),
    ("2002:7f00:1::", "loopback"),
])
def test_addresses_that_are_not_public_are_classified(address: str, why: str) -> None:
    assert address_class(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None


def test_the_allowlist_takes_hosts_addresses_and_networks() -> None:
    policy = AddressPolicy(["127.0.0.1", "10.0.0.0/8", "Images.Internal."])
    assert policy.check("x", ["127.0.0.1"]) == "127.0.0.1"
    assert policy.check("x", ["10.9.8.7"]) == "10.9.8.7"
    assert policy.check("images.internal", ["192.168.0.5"]) == "192.168.0.5"
    with pytest.raises(FetchRefused):
        policy.check("x", ["127.0.0.2"])
    with pytest.raises(FetchRefused):  # one refused address of several refuses the host
        AddressPolicy().check("x", ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(InputError):
        AddressPolicy(["bad host/33"])


class Loopback:
    """A loopback HTTP server: /img.png an image, /big a large body, /to?u=URL a redirect, /hop/N a redirect chain."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hosts.append(self.headers.get("Host", ""))
                if self.path == "/img.png":
                    self._send(200, PNG)
                elif self.path == "/big":
                    self._send(200, b"\x00" * 300_000)
                elif self.path.startswith("/to?u="):
                    self._redirect(self.path[len("/to?u="):])
                elif self.path.startswith("/hop/"):
                    n = int(self.path.rsplit("/", 1)[1])
                    self._redirect(f"/hop/{n + 1}")
                else:
                    self._send(404, b"no")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _redirect(self, to: str) -> None:
                self.send_response(302)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    server = Loopback()
    yield server
    server.close()


def stub(table: dict[str, Sequence[str]], asked: list[str] | None = None) -> Any:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if asked is not None:
            asked.append(host)
        return table[host]

    return resolve


def run(url: str, allow: Sequence[str] = (), resolver: Any = None, timeout_s: float = 5.0, max_bytes: int = 100_000,
        max_redirects: int = 3) -> bytes:
    return asyncio.run(fetch(url, AddressPolicy(allow), timeout_s, max_bytes, max_redirects, resolver))


def test_a_public_name_connects_to_the_address_it_was_checked_at(loopback: Loopback) -> None:
    """The stub says images.example is 127.0.0.1, allowed by address; the request keeps its Host header,
    and the resolver is asked once: a second answer (rebinding) is never used."""
    asked: list[str] = []
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return next(answers)

    data = run(f"http://images.example:{loopback.port}/img.png", allow=["127.0.0.1"], resolver=rebinding)
    assert data == PNG
    assert asked == ["images.example"]
    assert loopback.hosts == [f"images.example:{loopback.port}"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "2130706433", "0x7f.1", "0177.0.0.1", "[::1]",
                                  "[::ffff:127.0.0.1]"])
def test_loopback_in_every_spelling_is_refused_without_the_allowlist(loopback: Loopback, host: str) -> None:
    with pytest.raises(FetchRefused):
        run(f"http://{host}:{loopback.port}/img.png")
    assert loopback.hosts == []


def test_names_resolving_to_internal_addresses_are_refused(loopback: Loopback) -> None:
    resolver = stub({"metadata.example": ["169.254.169.254"], "mixed.example": ["8.8.8.8", "127.0.0.1"]})
    for name in ("metadata.example", "mixed.example"):
        with pytest.raises(FetchRefused, match="address"):
            run(f"http://{name}:{loopback.port}/img.png", resolver=resolver)
    assert loopback.hosts == []


def test_every_redirect_is_checked_and_their_number_bounded(loopback: Loopback) -> None:
    resolver = stub({"public.example": ["127.0.0.1"], "internal.example": ["10.0.0.7"]})
    base = f"http://public.example:{loopback.port}"
    assert run(f"{base}/to?u=/img.png", allow=["127.0.0.1"], resolver=resolver) == PNG
    with pytest.raises(FetchRefused, match="10.0.0.7"):  # the redirect's target is checked, and refused
        run(f"{base}/to?u=http://internal.example:{loopback.port}/img.png", allow=["127.0.0.1"], resolver=resolver)
    with pytest.raises(FetchRefused, match="TooManyRedirects"):
        run(f"{base}/hop/0", allow=["127.0.0.1"], resolver=resolver, max_redirects=3)
    with pytest.raises(FetchRefused):
        run(f"{base}/to?u=file:///etc/passwd", allow=["127.0.0.1"], resolver=resolver)


def test_size_and_total_time_are_capped(loopback: Loopback) -> None:
    from tests.trickle_server import TrickleServer

    with pytest.raises(FetchRefused, match="bytes"):
        run(f"http://127.0.0.1:{loopback.port}/big", allow=["127.0.0.1"])
    with TrickleServer(interval_s=0.5) as slow:
        start = time.monotonic()
        with pytest.raises(FetchRefused, match="more than 2 s"):
            run(slow.url, allow=["127.0.0.1"], timeout_s=2.0)
        assert time.monotonic() - start < 3.0

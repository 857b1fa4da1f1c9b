"""Fetching image URLs without letting a client reach what only the server can reach.

Only with ``--allow-urls``. The host of every connection (the first and each redirect)
is resolved once, and every address it resolves to must be public: loopback, private,
link-local, multicast, reserved, unspecified, shared (CGNAT) and documentation addresses
are refused, in IPv4 and IPv6, with IPv4 carried inside IPv6 (mapped, 6to4, Teredo,
NAT64) checked as the IPv4 it is. Numeric spellings (``2130706433``, ``0x7f.1``) are
whatever the resolver makes of them, so they are checked as the address they become.
``--allow-url-host`` names hosts or networks (``127.0.0.1``, ``10.0.0.0/8``,
``images.internal``) that are let through anyway.

The connection goes to the address that was checked (the resolver is asked once: a
name that resolves differently a moment later changes nothing), while the URL's host
stays in the ``Host`` header and TLS's SNI and certificate check. Redirects are followed
up to a count, each one checked the same way; size and wall-clock time are capped in
total. A client is told one thing for every refused or failed fetch, so the service
cannot be used to map which internal hosts and ports answer; the server's log says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cotembed.errors import FetchRefused, InputError

log = logging.getLogger("cotembed.serve.urls")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) -> the addresses the host resolves to, as strings."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")



def _embedded_ipv4(ip: Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    out = [a for a in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None) if a is not None]
    if ip in _NAT64:
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def address_class(ip: Address) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``, ...), or None if it is."""
    for candidate in (*_embedded_ipv4(ip), ip):  # the IPv4 inside first: it is where the packets go
        for name in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved", "site_local"):
            if getattr(candidate, f"is_{name}", False):
                return name.replace("_", "-")
        if isinstance(candidate, ipaddress.IPv4Address) and candidate in _SHARED:
            return "shared"
        if not candidate.is_global:
            return "not global"
    return None


class AddressPolicy:
    """Which resolved addresses a fetch may connect to."""

    def __init__(self, allow: Sequence[str] = ()):
        self.hosts: set[str] = set()
        self.networks: list[Network] = []
        for entry in allow:
            text = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                if not text or "/" in text or any(c.isspace() for c in text):
                    raise InputError(f"--allow-url-host {entry!r} is neither a host name, an address nor a network (CIDR)") from None
                self.hosts.add(text.lower().rstrip("."))

    def check(self, host: str, addresses: Sequence[str]) -> str:
        """The address to connect to: the first one, once every one of them is allowed."""
        if not addresses:
            raise FetchRefused(f"{host} resolves to no address")
        named = host.lower().rstrip(".") in self.hosts
        for text in addresses:
            ip = ipaddress.ip_address(text.split("%")[0])
            why = address_class(ip)
            if why is not None and not named and not any(ip in net for net in self.networks if net.version == ip.version):
                raise FetchRefused(f"{host} resolves to {ip}, a {why} address (allow it with --allow-url-host)")
        return addresses[0]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def guarded_transport(policy: AddressPolicy, resolver: Resolver | None = None) -> Any:
    """An ``httpx.AsyncHTTPTransport`` that connects only to addresses ``policy`` allows,
    the very addresses it checked."""
    import httpcore
    import httpx

    resolve = resolver or system_resolver

    class Backend(httpcore.AsyncNetworkBackend):
        def __init__(self, inner: Any):
            self.inner = inner

        async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                              socket_options: Any = None) -> Any:
            try:
                addresses = await resolve(host, port)
            except OSError as exc:
                raise FetchRefused(f"cannot resolve {host}: {exc}") from None
            address = policy.check(host, addresses)
            return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

        async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            raise FetchRefused("unix sockets are not fetched")

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    transport = httpx.AsyncHTTPTransport(trust_env=False)  # a proxy from the environment would bypass the check
    pool = transport._pool  # httpx builds the pool; only its network backend is swapped
    pool._network_backend = Backend(pool._network_backend)
    return transport


async def fetch(url: str, policy: AddressPolicy, timeout_s: float, max_bytes: int, max_redirects: int,
                resolver: Resolver | None = None) -> bytes:
    """The body of ``url`` (status 200, at most ``max_bytes``, within ``timeout_s`` in all,
    redirects included); anything else raises :class:`FetchRefused`."""
    import httpx

    try:
        async with asyncio.timeout(timeout_s):
            async with httpx.AsyncClient(transport=guarded_transport(policy, resolver), timeout=timeout_s, trust_env=False,
                                         follow_redirects=True, max_redirects=max_redirects) as client:
                async with client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise FetchRefused(f"HTTP {response.status_code}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchRefused(f"{int(declared):,} bytes declared, above {max_bytes:,}")
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchRefused(f"more than {max_bytes:,} bytes")
                        chunks.append(chunk)
    except TimeoutError:
        raise FetchRefused(f"took more than {timeout_s:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise FetchRefused(f"{type(exc).__name__}: {exc}") from None
    return b"".join(chunks)

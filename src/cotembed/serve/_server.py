"""Running the app under uvicorn: the listening socket, the config, and a server in a thread.

The command line binds the socket itself so ``--port 0`` can report the port it got
before serving. The socket is created with ``IPPROTO_TCP`` explicitly: asyncio turns
Nagle's algorithm off only for sockets whose protocol says TCP, and a response written
as headers then body would otherwise wait for the client's delayed ACK (about 40 ms
per request on a kept-alive connection). uvicorn's defaults ("auto") run on ``httptools`` and
``uvloop`` when they are installed, as the ``serve`` extra does: at one image per request the
HTTP parsing and the event loop are a large part of a request's server CPU.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from typing import Any

from cotembed.errors import CotembedError


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise CotembedError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def log_config() -> dict[str, Any]:
    """uvicorn's logging with the access log on stderr too: stdout carries only results."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


def uvicorn_server(app: Any, graceful_timeout_s: float, log_level: str = "info", access_log: bool = True) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, log_config=log_config(), lifespan="on",
                            timeout_graceful_shutdown=graceful_timeout_s)  # type: ignore[arg-type]
    return uvicorn.Server(config)


class ServerThread:
    """The service on a loopback port in a background thread (tests, notebooks).

    ``start()`` returns once the app has started (models are already loaded in the
    registry); ``stop()`` shuts down as SIGTERM would: requests in flight finish first.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, graceful_timeout_s: float = 30.0,
                 log_level: str = "warning"):
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn_server(app, graceful_timeout_s, log_level=log_level, access_log=False)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="cotembed-serve", daemon=True)

    def start(self, timeout_s: float = 60.0) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive():
                raise CotembedError("the server stopped while starting; see its log")
            if time.monotonic() > deadline:
                raise CotembedError(f"the server did not start within {timeout_s:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self.sock.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A loopback HTTP server that answers very slowly on purpose: after the request it sends
its response one byte every ``interval_s`` (the status line and headers too when
``trickle_headers``), so every single read succeeds long before a per-read timeout. For
tests of wall-clock total timeouts. Bounded: at most ``max_s`` per connection."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class TrickleServer:
    def __init__(self, interval_s: float = 0.5, trickle_headers: bool = False, body: bytes = b"x" * 1000,
                 content_type: str = "application/json", max_s: float = 30.0):
        self.interval_s, self.trickle_headers, self.body, self.max_s = interval_s, trickle_headers, body, max_s
        self.content_type = content_type
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "TrickleServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed.set()
        self.sock.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        start = time.monotonic()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n\r\n").encode()
            if not self.trickle_headers:
                conn.sendall(head)
                head = b""
            for i in range(len(head) + len(self.body)):
                if self._closed.is_set() or time.monotonic() - start > self.max_s:
                    return
                byte = head[i:i + 1] if i < len(head) else self.body[i - len(head):i - len(head) + 1]
                try:
                    conn.sendall(byte)
                except OSError:
                    return
                self._closed.wait(self.interval_s)

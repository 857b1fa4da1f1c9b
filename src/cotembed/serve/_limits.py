"""Request-size enforcement that must act before a body is parsed.

:class:`BodyLimit` refuses a body above ``max_body_bytes`` from its ``Content-Length``
before reading it, and stops a body without one (chunked) as soon as it grows past the
limit: either way a 413 with the service's error body, and memory never holds more
than the limit. Counts (inputs, labels) and image pixels are checked by the routes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cotembed.serve._errors import TOO_LARGE, error_body


def _too_large_message(limit: int) -> str:
    return f"request body above the limit of {limit:,} bytes (the server's --max-body-mb)"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, _too_large_message(limit)) if declared.isdigit() else await _answer(send, 400, "bad Content-Length")
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # routes answer HTTPException through the service's handler
                    raise HTTPException(413, _too_large_message(limit))
            return message

        await self.app(scope, limited, send)


async def _answer(send: Send, status: int, message: str) -> None:
    import json

    body = json.dumps(error_body(message, TOO_LARGE if status == 413 else "invalid_request_error")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

"""Bearer API key on every route but ``/health`` (and the API docs pages).

The key comes from ``--api-key`` or ``$COTEMBED_API_KEY``; without one the service
answers anyone who can connect, which the settings allow only on a loopback address.
Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cotembed.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="the service's API key (--api-key or $COTEMBED_API_KEY)")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_api_key(expected: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency that lets a request through only with ``Authorization: Bearer <expected>``."""
    key = expected.encode("utf-8") if expected else None

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if key is None:
            return
        if credentials is None:
            raise ApiError(401, "missing API key: send the header 'Authorization: Bearer <key>'", headers=CHALLENGE)
        if not hmac.compare_digest(credentials.credentials.encode("utf-8"), key):
            raise ApiError(401, "invalid API key", headers=CHALLENGE)

    return check

"""``cotembed serve``: an ASGI service (FastAPI + uvicorn, extra ``serve``) that loads models
once and classifies with any registered system.

:mod:`._settings` holds what the command line sets, :mod:`._registry` the loaded models and
registered systems, :mod:`._batching` the dynamic batcher that encodes concurrent requests
together, :mod:`._app` the FastAPI application (routes, errors, lifespan), and
:mod:`._auth`, :mod:`._limits`, :mod:`._metrics` and :mod:`._inputs` one concern each. Bodies
reuse the core's payloads (``Explanation.to_dict()``, ``System.summary()``).
"""

from __future__ import annotations

from cotembed.serve._settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":  # FastAPI is imported only when the service is built
        from cotembed.serve._app import create_app

        return create_app
    raise AttributeError(name)

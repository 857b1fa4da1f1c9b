"""``cotembed serve``: the classification service (FastAPI + uvicorn, extra ``serve``).

Everything is checked before a model loads (specs, system files, limits, that a host
other than loopback has an API key); then the models load once, the port is bound,
one ready line goes to stdout (``--format json``: a JSON object with the URL) and
uvicorn serves until SIGINT/SIGTERM, letting requests in flight finish.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from cotembed.cli._common import (
    EXIT_OK,
    MAX_PIXELS,
    add_cache_options,
    add_format,
    bounded_float,
    bounded_int,
    load_system,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _settings(args: argparse.Namespace) -> Any:
    from cotembed.encoders import DEFAULT_MODEL, parse_spec
    from cotembed.serve._settings import API_KEY_ENV, Batching, Limits, ServeSettings, UrlFetching
    from cotembed.serve._startup import parse_assignments

    specs = tuple(dict.fromkeys(args.model or [DEFAULT_MODEL]))
    for spec in specs:
        parse_spec(spec)
    systems = tuple(load_system(path) for path in args.system or ())
    names = tuple(s.name or Path(path).stem for s, path in zip(systems, args.system or ()))
    limits = Limits(max_inputs=args.max_inputs, max_labels=args.max_labels, max_body_bytes=int(args.max_body_mb * 2**20),
                    max_pixels=args.max_pixels, max_systems=args.max_systems, max_prompts=args.max_prompts,
                    max_classes=args.max_classes)
    batching = Batching(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=max(args.max_queue, args.max_batch),
                        always_wait=args.always_wait)
    if batching.max_queue < limits.max_inputs:
        from cotembed.errors import InputError

        raise InputError(f"--max-queue {batching.max_queue} is below --max-inputs {limits.max_inputs}: "
                         "a request that large could never be admitted")
    urls = UrlFetching(enabled=args.allow_urls, timeout_s=args.url_timeout_s, max_bytes=int(args.url_max_mb * 2**20),
                       allow_hosts=tuple(args.allow_url_host or ()))
    return ServeSettings(
        models=specs, systems=systems, system_names=names, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        host=args.host, port=args.port, cache=args.cache, cache_enabled=not args.no_cache, cache_recover=args.cache_recover,
        device=args.device, encoder_batch_size=args.batch_size, limits=limits, batching=batching, urls=urls,
        graceful_timeout_s=args.graceful_timeout_s, allow_no_auth_off_loopback=args.insecure_no_auth,
        workers=args.workers, examples=parse_assignments(args.examples, "--examples"),
        conformal_data=parse_assignments(args.conformal_data, "--conformal-data"), conformal_alpha=args.conformal,
        conformal_score=args.conformal_score,
    )


def _ready_info(registry: Any, url: str, settings: Any) -> dict[str, Any]:
    return {"url": url, "docs": f"{url}/docs", "models": [m.describe() for m in registry.models.values()],
            "systems": [{"name": e.name, "fingerprint": e.system.fingerprint} for e in registry.entries()],
            "auth": bool(settings.api_key), "workers": settings.workers}


def _say_ready(args: argparse.Namespace, settings: Any, ready: dict[str, Any]) -> None:
    """The one ready line on stdout (``--format json``: a JSON object with the URL)."""
    url = ready["url"]
    if args.format == "json":
        sys.stdout.write(json.dumps(ready, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        systems = ", ".join(s["name"] for s in ready["systems"]) or "none yet (POST /v1/systems)"
        workers = f"; {settings.workers} worker processes" if settings.workers > 1 else ""
        sys.stdout.write(f"cotembed serve: {url} (docs: {url}/docs); models: {', '.join(m['id'] for m in ready['models'])}; "
                         f"systems: {systems}; API key: {'required' if settings.api_key else 'not required (loopback only)'}"
                         f"{workers}\n")
    sys.stdout.flush()


def _serve_workers(args: argparse.Namespace, settings: Any) -> int:
    """``--workers N``: bind, fork N workers that each load the models and serve the one socket."""
    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import bind, url_of, uvicorn_server
    from cotembed.serve._workers import run_workers

    sock = bind(settings.host, settings.port)
    url = url_of(sock)

    def serve_one(ready: Any) -> None:
        with Registry.open(settings, log=args.log_level in ("info", "debug")) as registry:
            ready(_ready_info(registry, url, settings))
            server = uvicorn_server(create_app(registry), settings.graceful_timeout_s, args.log_level, not args.no_access_log)
            for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn re-raises the signal that stopped it
                signal.signal(sig, lambda signum, frame: None)
            server.run(sockets=[sock])

    return run_workers(settings.workers, sock, serve_one, lambda info: _say_ready(args, settings, info))


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401

        from cotembed.serve._app import create_app
    except ImportError as exc:
        from cotembed.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "fastapi", "serve") from exc
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import bind, url_of, uvicorn_server

    settings = _settings(args)
    if args.studio:
        from cotembed.studio._mount import check_service_studio, mount_for_service

        check_service_studio(args.studio, settings)
    if settings.workers > 1:
        return _serve_workers(args, settings)
    with Registry.open(settings, log=args.log_level in ("info", "debug")) as registry:
        app = create_app(registry)
        studio = mount_for_service(app, registry, args.studio, settings) if args.studio else None
        sock = bind(settings.host, settings.port)
        url = url_of(sock)
        ready = _ready_info(registry, url, settings)
        if studio:
            ready["studio"] = f"{url}{studio}/"
        _say_ready(args, settings, ready)
        server = uvicorn_server(app, settings.graceful_timeout_s, args.log_level, not args.no_access_log)
        # uvicorn re-raises the signal that stopped it once it has shut down; SIGTERM then
        # lands here instead of killing the process before the models and cache are closed.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            server.run(sockets=[sock])
        finally:
            signal.signal(signal.SIGTERM, previous)
            sock.close()
    return EXIT_OK


def register(sub: Any) -> None:
    from cotembed.cli._decisions import alpha as conformal_alpha
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE
    from cotembed.scoring._conformal import SCORES
    from cotembed.serve._settings import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT, Batching, Limits, UrlFetching

    limits, batching, urls = Limits(), Batching(), UrlFetching()
    p = sub.add_parser("serve", help="serve classification over HTTP (FastAPI; pip install 'cotembed[serve]')",
                       description="Load models once and serve /v1/classify, /v1/explain, /v1/embeddings, /v1/systems, "
                                   "/health, /metrics and /docs.")
    p.add_argument("--model", action="append", default=None, metavar="SPEC",
                   help=f"model to serve; repeat for several, the first is the default (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE})")
    p.add_argument("--system", action="append", default=None, metavar="FILE",
                   help="system file to register at start, under its name (else the file's stem); repeatable")
    p.add_argument("--examples", action="append", default=None, metavar="NAME=DATA",
                   help="labelled examples for the system registered as NAME (a folder with a sub-folder per class, a "
                        "manifest with labels, or an .npz embedding set), for every model: prototype, gda and fused "
                        "answer from the start; embedded through the cache; repeatable")
    p.add_argument("--conformal", type=conformal_alpha, default=None, metavar="ALPHA",
                   help="calibrate split-conformal sets (each holds the true class with probability >= 1 - ALPHA) on "
                        "--conformal-data, for the cot method: requests ask for them with \"conformal\": true")
    p.add_argument("--conformal-data", action="append", default=None, metavar="NAME=DATA",
                   help="labelled calibration data (>= 20 inputs, exchangeable with the requests) for the system "
                        "registered as NAME; repeatable")
    p.add_argument("--conformal-score", choices=SCORES, default="lac", help="the conformal score (default: lac)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    p.add_argument("--port", type=bounded_int(0, 65535), default=DEFAULT_PORT, help=f"port; 0 picks a free one (default: {DEFAULT_PORT})")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV}; "
                        "prefer the variable: arguments are visible to other users of the machine)")
    p.add_argument("--insecure-no-auth", action="store_true", help="allow a non-loopback --host without an API key")
    g = p.add_argument_group("limits")
    g.add_argument("--max-inputs", type=bounded_int(1, 100_000), default=limits.max_inputs, metavar="N",
                   help=f"inputs per request (default: {limits.max_inputs})")
    g.add_argument("--max-labels", type=bounded_int(1, 100_000), default=limits.max_labels, metavar="N",
                   help=f"labels per request (default: {limits.max_labels})")
    g.add_argument("--max-body-mb", type=bounded_float(0.0, 4096.0), default=limits.max_body_bytes / 2**20, metavar="MB",
                   help=f"request body size (default: {limits.max_body_bytes / 2**20:g})")
    g.add_argument("--max-pixels", type=bounded_int(1, MAX_PIXELS), default=limits.max_pixels, metavar="N",
                   help=f"pixels per image, read from its header before decoding (default: {limits.max_pixels})")
    g.add_argument("--max-systems", type=bounded_int(1, 100_000), default=limits.max_systems, metavar="N",
                   help=f"systems the service holds (default: {limits.max_systems})")
    g.add_argument("--max-prompts", type=bounded_int(1, 10_000_000), default=limits.max_prompts, metavar="Q",
                   help=f"prompts of a system registered over HTTP (default: {limits.max_prompts})")
    g.add_argument("--max-classes", type=bounded_int(1, 10_000_000), default=limits.max_classes, metavar="N",
                   help=f"classes of a system registered over HTTP (default: {limits.max_classes})")
    g = p.add_argument_group("dynamic batching")
    g.add_argument("--max-batch", type=bounded_int(1, 4096), default=batching.max_batch, metavar="N",
                   help=f"inputs per model call (default: {batching.max_batch})")
    g.add_argument("--max-wait-ms", type=bounded_float(0.0, 10_000.0, low_inclusive=True), default=batching.max_wait_ms, metavar="MS",
                   help=f"how long a batch waits for more inputs after its first (default: {batching.max_wait_ms:g})")
    g.add_argument("--always-wait", action="store_true",
                   help="wait --max-wait-ms for more inputs even when no other request is on its way (default: run at once then)")
    g.add_argument("--max-queue", type=bounded_int(1, 10_000_000), default=batching.max_queue, metavar="N",
                   help=f"inputs waiting per model before requests get 429 (default: {batching.max_queue})")
    g = p.add_argument_group("image URLs")
    g.add_argument("--allow-urls", action="store_true",
                   help="fetch images given as http(s) URLs, from public addresses only (off: base64 only)")
    g.add_argument("--allow-url-host", action="append", default=None, metavar="HOST|CIDR",
                   help="also fetch from this host name, address or network (e.g. 10.0.0.0/8), though not public; repeatable")
    g.add_argument("--url-timeout-s", type=bounded_float(0.0, 600.0), default=urls.timeout_s, metavar="S",
                   help=f"wall-clock total of one fetch, redirects included (default: {urls.timeout_s:g})")
    g.add_argument("--url-max-mb", type=bounded_float(0.0, 4096.0), default=urls.max_bytes / 2**20, metavar="MB",
                   help=f"largest image fetched (default: {urls.max_bytes / 2**20:g})")
    g = p.add_argument_group("model and cache")
    g.add_argument("--batch-size", type=bounded_int(1, 4096), default=None, help="the encoder's own batch size (default: the encoder's)")
    g.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:1, mps (default: the backend's)")
    add_cache_options(p)
    p.add_argument("--studio", nargs="+", default=None, metavar="PATH",
                   help="also serve the studio for SYSTEM on labelled DATA at /studio (give SYSTEM DATA [DATA ...]; the first --model "
                        "embeds; off loopback it needs the API key)")
    g = p.add_argument_group("server")
    g.add_argument("--graceful-timeout-s", type=bounded_float(0.0, 3600.0), default=30.0, metavar="S",
                   help="on shutdown, how long requests in flight may take to finish (default: 30)")
    g.add_argument("--workers", type=bounded_int(1, 64), default=1, metavar="N",
                   help="worker processes sharing the port and the embedding cache, each with its own model (default: 1); "
                        "with more than one, systems and examples are given at start only (registering them over HTTP is a 409)")
    g.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="uvicorn's log level (default: info)")
    g.add_argument("--no-access-log", action="store_true", help="no line per request on stderr")
    add_format(p)
    p.set_defaults(func=cmd_serve)

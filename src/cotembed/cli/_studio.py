"""``cotembed studio``: a local web page to see, edit, and re-score one system on one data set.

The verb embeds the data once through the cache, checks the address it will listen on
(a port in use is bad input, exit 2), and hands everything to :mod:`cotembed.studio`.
With an LLM endpoint (``--llm-model``, as ``build`` and ``optimize`` take it) the page can ask
it for a revision. ``--format json`` prints one JSON object (the URL and the first figures)
on stdout once the page can be opened.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from cotembed.cli._common import (
    EXIT_OK,
    Resources,
    add_cache_options,
    add_format,
    add_max_pixels,
    bounded_int,
    load_system,
    non_negative_weight,
    positive_temperature,
)
from cotembed.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _state_dir(args: argparse.Namespace) -> Path | None:
    if args.no_cache:
        return None
    from cotembed.cache import default_cache_path

    return Path(args.cache or default_cache_path()).parent / "studio"


def _wants_llm(args: argparse.Namespace) -> bool:
    from cotembed.authoring._llm import ENV_MODEL

    return bool(args.llm_model or args.llm_base_url or os.environ.get(ENV_MODEL, "").strip())


def _ready(args: argparse.Namespace, studio: Any, url: str, api_key: str | None) -> None:
    """The line (or JSON object, --format json) saying where the page is, once it can be opened."""
    mode = "" if studio.labelled else " (explain-only: the data has no labels)"
    if args.format == "json":
        ready = {"url": url, "system": str(studio.path), "fingerprint": studio.system.fingerprint, "inputs": len(studio.data),
                 "labelled": studio.labelled, "methods": list(studio.methods), "model": studio.data.model_key,
                 "llm": None if studio.llm is None else studio.llm.settings.model, "auth": bool(api_key),
                 "accuracy": _accuracy(studio)}
        sys.stdout.write(json.dumps(ready, ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
    print(f"cotembed studio: {args.system} on {len(studio.data)} inputs{mode}\n  open {url}\n  Ctrl+C stops it",
          file=sys.stderr, flush=True)


def _accuracy(studio: Any) -> dict[str, float | None] | None:
    report = studio.figures().report
    return None if report is None else {m: r.acc1 for m, r in report.methods.items()}


def cmd_studio(args: argparse.Namespace) -> int:
    from cotembed.encoders import parse_spec
    from cotembed.scoring import method_names

    try:
        from cotembed.studio._app import bind, create_app, is_loopback, run
        from cotembed.studio._mount import open_studio
    except ImportError as exc:
        raise InputError(f"the studio needs the serve extra: pip install 'cotembed[serve]' ({exc})") from exc
    from cotembed.serve._settings import API_KEY_ENV

    parse_spec(args.model)
    methods = tuple(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    unknown = [m for m in methods if m not in method_names()]
    if not methods or unknown:
        raise InputError(f"--methods {args.methods}: choose from {', '.join(method_names())}")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    loopback = is_loopback(args.host)
    if not loopback and not api_key:
        raise InputError(f"--host {args.host}: a studio reachable from other machines can rewrite files; "
                         f"give --api-key KEY (or ${API_KEY_ENV}) or stay on {DEFAULT_HOST}")
    load_system(args.system)
    settings = None
    if _wants_llm(args):
        from cotembed.cli._authoring import llm_settings

        settings = llm_settings(args)  # before the slow part: wrong LLM settings fail at once
    sock = bind(args.host, args.port)  # before the slow part: a port in use fails at once
    try:
        with Resources(args) as res, contextlib.ExitStack() as stack:
            llm = None
            if settings is not None:
                from cotembed.authoring._llm import ChatClient

                llm = stack.enter_context(ChatClient(settings))
            studio = open_studio(args.system, args.data, res.encoder(args.model), res.cache, examples=args.examples, methods=methods,
                                 temperature=args.temperature, hybrid_weight=args.hybrid_weight, batch_size=args.batch_size,
                                 progress=not args.quiet, max_pixels=args.max_pixels, ignore_unknown=args.ignore_unknown,
                                 allow_outside=args.allow_outside_paths, state_dir=_state_dir(args), llm=llm)
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}:{port}/" + (f"?key={api_key}" if api_key else "")
            _ready(args, studio, url, api_key)
            run(create_app(studio, api_key=api_key, loopback_only=loopback), sock)
    finally:
        sock.close()
    return EXIT_OK


def register(sub: Any) -> None:
    from cotembed.cli._authoring import add_llm_options
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE

    p = sub.add_parser("studio", help="a local web page: see why a system fails, edit it, and watch accuracy move")
    p.add_argument("system", help="system file (.yaml or .json) to open; saving replaces it only after you confirm")
    p.add_argument("data", nargs="+", help="labelled ImageFolder directories or CSV/JSONL manifests (unlabelled: explain-only)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="SPEC", help=f"model spec (default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE}; see `cotembed models`)")
    p.add_argument("--examples", nargs="+", default=None, metavar="PATH",
                   help="labelled examples for induce (default: a few per class drawn from DATA, the effect measured on the rest)")
    p.add_argument("--methods", default="cot,hybrid", help="methods whose accuracy is shown, comma-separated; the first is analysed (default: cot,hybrid)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}; any other needs --api-key)")
    p.add_argument("--port", type=bounded_int(0, 65535), default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: a free one)")
    p.add_argument("--api-key", default=None, metavar="KEY", help="key required on every request (default: $COTEMBED_API_KEY)")
    p.add_argument("--temperature", type=positive_temperature, default=None, help="softmax temperature (default: the system's, else the model's)")
    p.add_argument("--hybrid-weight", type=non_negative_weight, default=1.0, help="weight of the class-name term of hybrid (default: 1)")
    p.add_argument("--batch-size", type=bounded_int(1, 4096), default=None, help="inputs per model call (default: the encoder's)")
    p.add_argument("--device", default=None, help="torch device for the model (default: cuda when available)")
    p.add_argument("--ignore-unknown", action="store_true", help="skip inputs whose label is not a class of the system")
    p.add_argument("--allow-outside-paths", action="store_true", help="let manifests name files outside their own folder")
    add_max_pixels(p)
    add_cache_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_format(p)
    add_llm_options(p)
    p.set_defaults(func=cmd_studio)

"""Opening a studio from files, and mounting it inside another app (``cotembed serve --studio``).

:func:`open_studio` is what both ``cotembed studio`` and ``cotembed serve --studio`` do before
they listen: read the system, collect and label the data, embed it once through the cache.
:func:`mount_studio` puts the studio's app under a path of a host app. The page speaks to its
API by relative URLs, so it works under any prefix; the studio's own guard stays in front of
it: loopback only when the host app listens on loopback, and the host's API key (bearer
header, or the ``?key=`` link that leaves a cookie) whenever it has one. A studio reachable
from other machines without a key is refused: it can rewrite files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from cotembed.errors import InputError
from cotembed.studio._app import create_app, is_loopback
from cotembed.studio._state import DEFAULT_METHODS, Studio

DEFAULT_MOUNT = "/studio"


def labelled_samples(system: Any, paths: Sequence[str], flag: str, *, ignore_unknown: bool = False,
                     allow_outside: bool = False) -> tuple[list[Any], list[Any]]:
    """The inputs under ``paths`` whose label (if any) is one of the system's classes; none at all is bad input naming ``flag``."""
    from cotembed.data import collect_samples, resolve_labels

    samples = collect_samples(list(paths), allow_outside=allow_outside)
    kept, skipped = resolve_labels(samples, system.resolve_label, ignore_unknown)
    if not kept:
        raise InputError(f"{flag} {', '.join(paths)}: no inputs of this system's classes")
    return kept, skipped


def open_studio(system_path: str | Path, data_paths: Sequence[str], encoder: Any, cache: Any = None, *,
                examples: Sequence[str] | None = None, methods: Sequence[str] = DEFAULT_METHODS, temperature: float | None = None,
                hybrid_weight: float = 1.0, batch_size: int | None = None, progress: bool = False, max_pixels: int | None = None,
                ignore_unknown: bool = False, allow_outside: bool = False, state_dir: str | Path | None = None, llm: Any = None,
                run_encoder: Callable[[Callable[[], Any]], Any] | None = None, data_flag: str = "DATA") -> Studio:
    """A :class:`Studio` for a system file and data folders or manifests, the data embedded once through ``cache``.

    ``run_encoder(fn)`` runs a prompt-embedding call where the encoder may run (a service's model thread); default: here.
    """
    from cotembed._embeddings import EmbeddingSet, PromptBank
    from cotembed.system import System

    system = System.load(system_path)
    samples, skipped = labelled_samples(system, data_paths, data_flag, ignore_unknown=ignore_unknown, allow_outside=allow_outside)
    data = EmbeddingSet.from_samples(samples, encoder, cache, batch_size, progress, skipped, desc="studio: data", max_pixels=max_pixels)
    if not len(data):
        raise InputError(f"{data_flag} {', '.join(data_paths)}: no input could be used: "
                         + "; ".join(f"{e.source}: {e.error}" for e in data.errors[:5]))
    example_set = None
    if examples:
        example_samples, example_skipped = labelled_samples(system, examples, "--examples", ignore_unknown=ignore_unknown,
                                                            allow_outside=allow_outside)
        if any(s.label is None for s in example_samples):
            raise InputError(f"--examples {', '.join(examples)}: every example needs a label")
        example_set = EmbeddingSet.from_samples(example_samples, encoder, cache, batch_size, progress, example_skipped,
                                                desc="studio: examples", max_pixels=max_pixels)
    bank = PromptBank(encoder, cache, progress=False)
    embed = bank.embed if run_encoder is None else (lambda texts: run_encoder(lambda: bank.embed(texts)))
    studio = Studio(system_path, data, embed, logit_scale=getattr(encoder, "logit_scale", None), temperature=temperature,
                    hybrid_weight=hybrid_weight, methods=methods, examples=example_set, state_dir=state_dir, llm=llm)
    studio.figures()  # the first scoring before the first visitor
    return studio


def mount_studio(host: FastAPI, studio: Studio, *, path: str = DEFAULT_MOUNT, api_key: str | None = None,
                 listen_host: str = "127.0.0.1") -> FastAPI:
    """Mount ``studio`` under ``path`` of ``host`` (an app listening on ``listen_host``) and return the studio's app.

    Off loopback ``api_key`` is required; with a key every request to the studio needs it.
    """
    loopback = is_loopback(listen_host)
    if not loopback and not api_key:
        raise InputError(f"--host {listen_host}: a studio reachable from other machines can rewrite files; "
                         "give the service an API key (--api-key or $COTEMBED_API_KEY)")
    prefix = "/" + path.strip("/")
    app = create_app(studio, api_key=api_key, loopback_only=loopback)
    host.mount(prefix, app)

    @host.get(prefix, include_in_schema=False)
    def to_the_page() -> RedirectResponse:  # the page's relative URLs need the trailing slash
        return RedirectResponse(prefix + "/", status_code=307)

    return app


def check_service_studio(paths: Sequence[str], settings: Any) -> None:
    """``serve --studio SYSTEM DATA [DATA ...]`` checked before any model loads."""
    from cotembed.system import System

    if len(paths) < 2:
        raise InputError(f"--studio {' '.join(paths)}: give the system file, then its labelled data (--studio SYSTEM DATA [DATA ...])")
    System.load(paths[0])
    if settings.workers > 1:
        raise InputError(f"--studio with --workers {settings.workers}: the studio keeps its edits in one process; "
                         "serve it with one worker (or run `cotembed studio` beside the service)")
    if not is_loopback(settings.host) and not settings.api_key:
        raise InputError(f"--studio with --host {settings.host}: a studio reachable from other machines can rewrite files; "
                         "give the service an API key (--api-key or $COTEMBED_API_KEY)")


def mount_for_service(app: FastAPI, registry: Any, paths: Sequence[str], settings: Any, path: str = DEFAULT_MOUNT,
                      progress: bool = False) -> str:
    """Open the studio for ``serve --studio SYSTEM DATA...`` on the service's first model and mount it; returns its path.

    The data is embedded now, through the service's cache; the prompts of edits later run on the model's own thread,
    in turn with the service's batches.
    """
    check_service_studio(paths, settings)
    served = next(iter(registry.models.values()))
    state_dir = None
    if settings.cache_enabled:
        from cotembed.cache import default_cache_path

        state_dir = Path(settings.cache or default_cache_path()).parent / "studio"
    studio = open_studio(paths[0], list(paths[1:]), served.encoder, served.cache, batch_size=settings.encoder_batch_size,
                         progress=progress, max_pixels=settings.limits.max_pixels, state_dir=state_dir,
                         run_encoder=lambda fn: served.executor.submit(fn).result(), data_flag="--studio DATA")
    mount_studio(app, studio, path=path, api_key=settings.api_key, listen_host=settings.host)
    return "/" + path.strip("/")


__all__ = ["DEFAULT_MOUNT", "check_service_studio", "labelled_samples", "mount_for_service", "mount_studio", "open_studio"]

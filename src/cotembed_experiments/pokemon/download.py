"""Card images downloaded once into a folder, resumably, with bounded retries.

Each image goes to ``<folder>/<card id>-<hash of its URL>.<ext>``; bytes arrive in a
``.part`` file that is renamed only when complete, so a finished file is always whole
and an interrupted run resumes where it stopped (with an HTTP ``Range`` request when the
server supports it, from the start otherwise). A second run finds every finished file
and downloads nothing. Transient failures (timeouts, broken connections, 429, 5xx) are
retried by the shared policy of :mod:`cotembed.http`; a URL that keeps failing or
answers 404 is reported with its card and skipped, and the run goes on.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cotembed.errors import HarnessDependencyError, InputError, RetryError
from cotembed.http import RetryPolicy, send_with_retries
from cotembed_experiments.pokemon.cards import Card

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_WORKERS = 8
CHUNK_BYTES = 1 << 16
MAX_IMAGE_BYTES = 64 << 20
"""A card scan is a few MB; a larger answer is not a card image."""
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


@dataclass(frozen=True)
class Downloaded:
    """Outcome for one card: ``path`` when the file is complete, else ``error``."""

    card: Card
    path: Path | None
    fetched: bool = False
    """True when bytes were transferred in this run (False: the file was already there)."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.card.id, "url": self.card.image_url}
        if self.error is not None:
            out["error"] = self.error
        return out


def image_filename(card: Card) -> str:
    """Stable per (id, URL): a changed URL is a different file; the id keeps names readable."""
    suffix = Path(card.image_url.split("?", 1)[0]).suffix.lower()
    digest = hashlib.sha256(card.image_url.encode("utf-8")).hexdigest()[:12]
    return f"{_SAFE.sub('_', card.id)[:80]}-{digest}{suffix if suffix in _SUFFIXES else '.img'}"


class ImageDownloader:
    """Downloads card images into ``folder`` with ``workers`` threads and one HTTP client.

    ``policy`` bounds retries (default: 4 attempts, 0.5 s first delay, 60 s per image);
    ``timeout_s`` applies to connecting and to each read. ``transport`` replaces httpx's
    network transport (e.g. ``httpx.MockTransport``) for tests.
    """

    def __init__(self, folder: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = DEFAULT_WORKERS,
                 policy: RetryPolicy | None = None, transport: Any = None, sleep: Callable[[float], None] | None = None) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise HarnessDependencyError("httpx") from exc
        problems = []
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= 3600):
            problems.append(f"timeout must be a number of seconds in (0, 3600], got {timeout_s!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
            problems.append(f"workers must be a whole number from 1 to 64, got {workers!r}")
        if problems:
            raise InputError("image download: " + "; ".join(problems))
        self.folder = Path(folder)
        self.workers = workers
        self.policy = policy or RetryPolicy(max_attempts=4, backoff_s=0.5, max_delay_s=10.0, max_total_s=60.0)
        self._httpx = httpx
        self._sleep = sleep
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=True, transport=transport,
                                    headers={"User-Agent": "cotembed-pokemon-harness"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ImageDownloader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch_all(self, cards: Sequence[Card], progress: bool = False) -> list[Downloaded]:
        """One outcome per card, in order; failures are outcomes, not exceptions."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"image folder {self.folder}: cannot create ({exc.strerror or exc})") from exc
        bar = _progress(len(cards), progress)
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cotembed-download") as pool:
                results = []
                for outcome in pool.map(self.fetch, cards):
                    results.append(outcome)
                    if bar is not None:
                        bar.update(1)
                return results
        finally:
            if bar is not None:
                bar.close()

    def fetch(self, card: Card) -> Downloaded:
        target = self.folder / image_filename(card)
        if target.is_file():
            return Downloaded(card, target)
        part = target.with_name(target.name + ".part")
        try:
            self._download(card.image_url, part)
            os.replace(part, target)
        except RetryError as exc:
            return Downloaded(card, None, error=str(exc))
        except _Rejected as exc:
            part.unlink(missing_ok=True)
            return Downloaded(card, None, error=str(exc))
        except OSError as exc:
            return Downloaded(card, None, error=f"cannot write {part}: {exc.strerror or exc}")
        return Downloaded(card, target, fetched=True)

    def _download(self, url: str, part: Path) -> None:
        """Into ``part``, resuming from its size; a transfer broken midway is retried from
        where it stopped, within the same retry budget as failed requests."""
        httpx = self._httpx
        attempts_left = self.policy.max_attempts
        while True:
            offset = part.stat().st_size if part.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}

            def send(headers: dict[str, str] = headers) -> Any:
                response = self._client.send(self._client.build_request("GET", url, headers=headers), stream=True)
                if response.status_code >= 300:
                    response.read()  # the retry policy reads error bodies; the stream must be consumed
                return response

            kwargs: dict[str, Any] = {"what": f"image {url}"}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            policy = RetryPolicy(max_attempts=attempts_left, backoff_s=self.policy.backoff_s, max_delay_s=self.policy.max_delay_s,
                                 max_total_s=self.policy.max_total_s, jitter=self.policy.jitter)
            response = send_with_retries(send, policy, **kwargs)
            try:
                if response.status_code == 416 and offset:  # nothing left past our offset: start afresh
                    part.unlink()
                    continue
                if response.status_code >= 400:
                    raise _Rejected(f"HTTP {response.status_code} for {url}")
                append = response.status_code == 206 and offset > 0
                try:
                    self._write(response, part, append)
                    return
                except httpx.TransportError as exc:  # broken midway: keep what arrived, go on from there
                    attempts_left -= 1
                    if attempts_left < 1:
                        raise RetryError(f"image {url}: transfer kept breaking off; last error: {type(exc).__name__}: {exc}",
                                         attempts=self.policy.max_attempts, problem=str(exc), status=None) from exc
                    (self._sleep or time.sleep)(self.policy.backoff(self.policy.max_attempts - attempts_left - 1))
            finally:
                response.close()

    @staticmethod
    def _write(response: Any, part: Path, append: bool) -> None:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
            raise _Rejected(f"{response.url} is {int(declared) / 2**20:.0f} MB, above the {MAX_IMAGE_BYTES >> 20} MB an image may have")
        written = part.stat().st_size if append else 0
        with part.open("ab" if append else "wb") as fh:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                written += len(chunk)
                if written > MAX_IMAGE_BYTES:
                    raise _Rejected(f"{response.url} is above the {MAX_IMAGE_BYTES >> 20} MB an image may have")
                fh.write(chunk)


class _Rejected(Exception):
    """A final answer that is not an image to keep (404, too large): reported, not retried."""


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="downloading cards", unit="img", file=sys.stderr, dynamic_ncols=True, leave=False)


__all__ = ["DEFAULT_TIMEOUT_S", "DEFAULT_WORKERS", "Downloaded", "ImageDownloader", "image_filename"]

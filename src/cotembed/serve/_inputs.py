"""Request inputs -> (kind, data) items for the batcher, with their checks.

An input is a text (``"..."`` or ``{"text": ...}``) or an image (``{"image": ...}``:
base64, a ``data:`` URI, or an http(s) URL when the service allows URLs). Images are
checked from their header before anything is queued: a format PIL cannot read is a
422, more pixels than the cap a 413 (a decompression bomb never reaches a decoder).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import warnings
from collections.abc import Sequence
from typing import Any

from PIL import Image

from cotembed.serve._errors import invalid, too_large
from cotembed.serve._settings import UrlFetching

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.ASCII)
log = logging.getLogger("cotembed.serve.urls")
_URL = re.compile(r"^https?://", re.IGNORECASE)


def item_kind(item: Any, param: str) -> tuple[str, str]:
    """("text", text) or ("image", reference) of one input; a 422 names what is wrong."""
    if isinstance(item, str):
        return "text", item
    if not isinstance(item, dict):
        raise invalid(f"{param}: expected a string or an object with 'text' or 'image'", param)
    given = [k for k in ("text", "image") if item.get(k) is not None]
    unknown = sorted(set(item) - {"text", "image"})
    if unknown:
        raise invalid(f"{param}: unknown field(s) {', '.join(map(repr, unknown))}; an input has 'text' or 'image'", f"{param}.{unknown[0]}")
    if len(given) != 1:
        raise invalid(f"{param}: give exactly one of 'text' or 'image'", param)
    kind = given[0]
    value = item[kind]
    if not isinstance(value, str):
        raise invalid(f"{param}.{kind}: expected a string, got {type(value).__name__}", f"{param}.{kind}")
    return kind, value


def check_text(value: str, param: str) -> None:
    """A text must be encodable as UTF-8: JSON lets a client send a lone surrogate
    (``"\\ud800"``, e.g. a string cut inside an emoji), which no encoder can take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(f"{param}: the text is not valid Unicode (a lone surrogate {value[exc.start]!r} at character {exc.start}); "
                      "send whole characters", param) from None


def decode_base64(value: str, param: str) -> bytes:
    """Bytes of a base64 string or ``data:`` URI (whitespace allowed, as ``base64`` wraps lines)."""
    match = _DATA_URI.match(value)
    if match:
        if not match.group("b64"):
            raise invalid(f"{param}: a data: URI must be base64 (data:image/png;base64,...)", param)
        value = value[match.end():]
    try:  # most clients send one unbroken line: decoded as is, without copying the string first
        data = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError, TypeError):  # TypeError: Python 3.10 has no strict_mode
        data = b""
    try:
        data = data or base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        hint = " (URLs are refused: the service was started without --allow-urls)" if _URL.match(value) else ""
        raise invalid(f"{param}: not valid base64 image data{hint}", param) from None
    if not data:
        raise invalid(f"{param}: the image is empty", param)
    return data


_PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (the first, at a fixed place), or None if it is not one."""
    if len(data) < 33 or not data.startswith(_PNG) or data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return (width, height) if width > 0 and height > 0 else None


def check_image(data: bytes, param: str, max_pixels: int) -> None:
    """Read the header only: the format must be one PIL reads, the size within the cap. A PNG's size is read
    from its IHDR chunk directly (the common case, a tenth of PIL's time); a PNG damaged past its header fails
    when decoded, as that input's own error."""
    size = _png_size(data)
    if size is not None:
        _check_pixels(size[0], size[1], param, max_pixels)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise too_large(f"{param}: image above the cap of {max_pixels:,} pixels ({exc})".replace("\n", " "), param) from None
    except Exception:
        raise invalid(f"{param}: not an image PIL can read (PNG, JPEG, WebP, ...), or damaged", param) from None
    _check_pixels(width, height, param, max_pixels)


def _check_pixels(width: int, height: int, param: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise too_large(f"{param}: image is {width}x{height} = {width * height:,} pixels, above the cap of "
                        f"{max_pixels:,} (the server's --max-pixels)", param)


URL_FAILED = ("the image URL could not be fetched (refused, unreachable, not answered 200, too large or too slow); "
              "send the image as base64")
"""The one answer to every refused or failed fetch: a client learns nothing of what the server can reach."""


async def fetch_url(url: str, param: str, urls: UrlFetching) -> bytes:
    """GET an image URL through the address guard, within the time and size caps."""
    from cotembed.errors import FetchRefused
    from cotembed.serve._urlguard import fetch

    try:
        return await fetch(url, urls.policy, urls.timeout_s, urls.max_bytes, urls.max_redirects, urls.resolver)
    except FetchRefused as exc:
        log.info("%s: fetching %s refused or failed: %s", param, url[:200], exc.reason)
        raise invalid(f"{param}: {URL_FAILED}", param) from None


async def load_items(items: Sequence[Any], modalities: frozenset[str], model: str, max_pixels: int,
                     urls: UrlFetching, field: str = "input") -> list[tuple[str, Any]]:
    """Every input checked and decoded to ``(kind, data)``; the first problem raises."""
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        param = f"{field}[{i}]"
        kind, value = item_kind(item, param)
        if kind not in modalities:
            raise invalid(f"{param}: model {model} cannot encode {kind} inputs (it takes: {', '.join(sorted(modalities))})", param)
        if kind == "text":
            if not value.strip():
                raise invalid(f"{param}: empty text", param)
            check_text(value, param)
            out.append(("text", value))
            continue
        param = f"{param}.image"
        if _URL.match(value):
            if not urls.enabled:
                raise invalid(f"{param}: image URLs are off; send the image as base64, or start the server with --allow-urls", param)
            data = await fetch_url(value, param, urls)
        else:
            data = decode_base64(value, param)
        check_image(data, param, max_pixels)
        out.append(("image", data))
    return out



"""Streaming, cached, batched encoding of samples.

Reading, hashing, decoding and preprocessing run in a worker thread one batch
ahead of the model, so the encoder never waits on disk or PIL. Finished batches
are written to the cache before they are yielded: a run killed half way keeps
them, and the next run encodes only what is missing. A sample that cannot be
read or decoded becomes a :class:`SampleError` and the run goes on.

An image is a file or bytes held in memory (:attr:`Sample.data`: an upload, a PIL
image); both take the same path from here on, and both are keyed by the hash of their
bytes. Decoding applies the EXIF orientation the image's header declares (a phone photo
stored sideways is seen upright), and the key carries :data:`DECODE_VERSION`, so an
embedding stored before orientation was applied is never read back for a rotated image.

Memory is bounded by the batch size, not by the images: each file is hashed in
chunks (its bytes are never held whole), looked up in the cache, and only if it is
missing decoded in full and at once shrunk if it is much larger than the encoder needs
(short side above :data:`KEEP_FACTOR` times its ``input_size``; the model's own resize
then starts from three times its resolution, which keeps the predictions of its
reference pipeline, measured). A batch therefore holds small images whatever the camera.
``fast_decode=True`` (or ``$COTEMBED_FAST_DECODE=1``) trades exactness for speed: JPEGs
are decoded at a reduced DCT scale (PIL's ``draft``), which changes their pixels more
(``benchmarks/bench_speed.py`` measures agreement and speed of both).

Images above a pixel cap (:data:`DEFAULT_MAX_PIXELS`, ``$COTEMBED_MAX_PIXELS`` or
``max_pixels=``) are refused per file before their pixels are decoded; PIL's own bomb
limit is set to the same cap.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

if TYPE_CHECKING:
    from tqdm import tqdm

from cotembed.cache import EmbeddingStore, NoCache, text_key
from cotembed.data import Sample, text_samples
from cotembed.encoders._base import Encoder
from cotembed.errors import CotembedError, InputError

PREFETCH_BATCHES = 2
MAX_BATCH_SIZE = 4096
"""Larger batches only cost memory: the model sees no more of the data at once that matters."""
DEFAULT_MAX_PIXELS = 100_000_000
"""Per image, before decoding (a 100 MP RGB image alone needs 300 MB to decode)."""
MAX_PIXELS_ENV = "COTEMBED_MAX_PIXELS"
KEEP_FACTOR = 3
"""Decoded images with a short side above ``KEEP_FACTOR * input_size`` are shrunk to it
(memory stays bounded for camera-sized images); smaller ones are left untouched. At 2 the
double resize flipped 2 of 256 near-tied top-1 predictions against transformers' pipeline
(100 labels); at 3 none, for 1.2x the memory of small images on 12-MP photos."""
FAST_DECODE_ENV = "COTEMBED_FAST_DECODE"
FAST_KEY_SUFFIX = ":fast-decode"
"""Appended to an image's content hash in the cache under ``fast_decode``: the two modes
give slightly different embeddings, and neither may be read back as the other."""
DECODE_VERSION = 2
"""Part of every image's cache key, bumped whenever the same bytes start to decode to other
pixels, so an embedding of the old decoding is never read as one of the new. 2: the EXIF
orientation is applied. Keys of version 1 carry no version; they are still read for images
whose orientation is 1 (their pixels did not change), and stored again under the new key."""
DEFAULT_MAX_SIDE = 2048
"""Long-side bound for encoders that declare neither ``input_size`` nor ``max_image_side``."""
HASH_CHUNK = 1 << 20
_SHRINK_MODES = frozenset({"RGB", "L"})  # shrinking first gives the same result as converting first


@dataclass(frozen=True)
class SampleError:
    """An input that could not be used, and why."""

    source: str
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.source, "error": self.error}


@dataclass
class EmbeddedBatch:
    """Embeddings of the samples of one batch that succeeded, in input order."""

    samples: list[Sample]
    embeddings: np.ndarray
    errors: list[SampleError] = field(default_factory=list)
    n_encoded: int = 0
    """How many of these embeddings were computed now (the rest came from the cache)."""


@dataclass
class _Prepared:
    samples: list[Sample]
    keys: list[str]
    cached: dict[str, np.ndarray]
    to_encode: list[str]
    model_input: Any
    errors: list[SampleError]
    migrated: dict[str, np.ndarray] = field(default_factory=dict)
    """Vectors found under a key of an older decoding that still holds, to store under the current key."""


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The pixel cap: the argument, else ``$COTEMBED_MAX_PIXELS``, else the default."""
    source, value = "max_pixels", max_pixels
    if value is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        source = MAX_PIXELS_ENV
        try:
            number = float(env.replace("_", ""))
        except ValueError:
            raise InputError(f"{MAX_PIXELS_ENV}={env!r} is not a number of pixels (e.g. 200000000)") from None
        if not number.is_integer():
            raise InputError(f"{MAX_PIXELS_ENV}={env!r} is not a whole number of pixels (e.g. 200000000)")
        value = int(number)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{source} must be a positive whole number of pixels, got {value!r}")
    return value


_BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False, "": False}


def resolve_fast_decode(fast_decode: bool | None = None) -> bool:
    """The decode mode: the argument, else ``$COTEMBED_FAST_DECODE``, else the reference (full) decode."""
    if fast_decode is not None:
        return bool(fast_decode)
    env = os.environ.get(FAST_DECODE_ENV, "").strip().lower()
    if env not in _BOOLEAN_WORDS:
        raise InputError(f"{FAST_DECODE_ENV}={env!r} is not a yes/no value (use 1 or 0)")
    return _BOOLEAN_WORDS[env]


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _too_large(name: str, size: str, max_pixels: int) -> str:
    return (f"image too large: {name} is {size}, above the cap of {_megapixels(max_pixels)}; "
            f"raise it with {MAX_PIXELS_ENV}=<pixels> (or max_pixels=) if this image is expected")


_STREAM_REPR = re.compile(r"<_io\.\w+ (?:name=[^>]*|object at 0x[0-9a-fA-F]+)>")


def _reason(exc: BaseException, name: str) -> str:
    """PIL's message without the stream's repr (``<_io.BytesIO object at 0x...>``)."""
    if isinstance(exc, UnidentifiedImageError):
        return f"cannot decode image: {name} is not in an image format PIL can read, or is damaged"
    text = _STREAM_REPR.sub(repr(name), str(exc)).strip()
    return f"cannot decode image: {name}: {type(exc).__name__}{': ' + text if text else ''}"


def _is_empty(fp: Any) -> bool:
    """Whether a stream holds no bytes at all: an empty file deserves that message, not "not an image"."""
    try:
        return int(fp.seek(0, io.SEEK_END)) == 0
    except (AttributeError, OSError, ValueError):
        return False


def _shrink(img: Image.Image, short_side: int | None, long_side: int | None) -> Image.Image:
    """Downscale (never up) so the short side is ``short_side`` or the long side ``long_side``.
    ``reducing_gap`` lets PIL box-reduce by an integer factor first, then resample finely."""
    w, h = img.size
    scale = 1.0
    if short_side:
        scale = min(scale, short_side / min(w, h))
    if long_side:
        scale = min(scale, long_side / max(w, h))
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def image_key(digest: str, fast_decode: bool = False) -> str:
    """The cache key of an image whose bytes have SHA-256 ``digest`` (hex), decoded by this
    version of the pipeline (:data:`DECODE_VERSION`) in the given mode."""
    return f"{digest}:d{DECODE_VERSION}" + (FAST_KEY_SUFFIX if fast_decode else "")


def _unversioned_key(digest: str, fast_decode: bool) -> str:
    """The key decoding version 1 stored the image under (no EXIF orientation applied)."""
    return digest + (FAST_KEY_SUFFIX if fast_decode else "")


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transposition that shows the image upright (as ``ImageOps.exif_transpose``)."""


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) an opened image's header declares (EXIF, or XMP's
    ``tiff:Orientation``); 1 when it declares none, or one that cannot be read.

    Read from the header alone, before any pixel is decoded: PNG's own ``getexif`` would
    decode the whole image to look for an ``eXIf`` chunk after the pixel data, which is
    therefore not honoured. Cache lookups and decoding both ask this function, so an
    image's key and its pixels always agree.
    """
    try:
        value = Image.Image.getexif(img).get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block does not make the image unusable
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def open_image(fp: IO[bytes], *, name: str = "image", max_pixels: int | None = None) -> Image.Image:
    """Open one image from its header only (no pixel is decoded yet); raises ``ValueError``
    naming ``name`` when it is not an image, or when it is above ``max_pixels``."""
    cap = max_pixels or DEFAULT_MAX_PIXELS
    try:
        with warnings.catch_warnings():  # the cap is checked below with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:  # far above the cap: PIL stops at its header
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = _megapixels(int(found.group(1))) if found else f"more than {_megapixels(2 * (Image.MAX_IMAGE_PIXELS or cap))}"
        raise ValueError(_too_large(name, size, cap)) from exc
    except Exception as exc:
        if _is_empty(fp):
            raise ValueError(f"cannot decode image: {name} is empty (0 bytes)") from exc
        raise ValueError(_reason(exc, name)) from exc
    width, height = img.size
    if width * height > cap:
        img.close()
        raise ValueError(_too_large(name, f"{width}x{height} = {_megapixels(width * height)}", cap))
    return img


def decode_opened(img: Image.Image, *, name: str = "image", min_side: int | None = None,
                  keep_side: int | None = None, max_side: int | None = None) -> Image.Image:
    """Decode an image :func:`open_image` returned (and close it) to a small, upright RGB copy;
    see :func:`decode_image`."""
    with img:
        try:
            transpose = _ORIENTATION_TRANSPOSE.get(exif_orientation(img))
            if min_side and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            img.load()
            small = img if img.mode in _SHRINK_MODES else img.convert("RGB")
            if transpose is not None:  # before shrinking: a photo stored sideways then gives exactly
                small = small.transpose(transpose)  # the pixels of the same photo stored upright
            small = _shrink(small, keep_side, max_side)
            return small.convert("RGB") if small.mode != "RGB" or small is img else small
        except Exception as exc:  # any decoder failure is this file's problem, not the run's
            raise ValueError(_reason(exc, name)) from exc


def decode_image(fp: IO[bytes], *, name: str = "image", min_side: int | None = None,
                 keep_side: int | None = None, max_side: int | None = None,
                 max_pixels: int | None = None) -> Image.Image:
    """Decode one image to a small, upright RGB copy; raises ``ValueError`` with a message
    naming ``name`` (the file's name: the message may be shown without its path).

    ``min_side``: JPEGs are decoded at the smallest DCT scale that keeps both sides
    >= it. The decoded image is turned upright by its EXIF orientation
    (:func:`exif_orientation`), then shrunk to ``keep_side`` (short side) or ``max_side``
    (long side) before any other full-size copy (mode conversion) is made. Images above
    ``max_pixels`` are refused from their header, before their pixels are read.
    """
    img = open_image(fp, name=name, max_pixels=max_pixels)
    return decode_opened(img, name=name, min_side=min_side, keep_side=keep_side, max_side=max_side)


def configure_pil(max_pixels: int) -> None:
    """PIL's own decompression-bomb limit follows cotembed's cap, so neither refuses
    what the other allows (PIL errors at twice its limit; cotembed at the cap)."""
    Image.MAX_IMAGE_PIXELS = max_pixels


class _Preparer:
    """Worker-thread half of the pipeline: I/O, hashing, cache lookup, decode, preprocess."""

    def __init__(self, encoder: Encoder, store: EmbeddingStore, max_pixels: int, fast_decode: bool = False):
        self.encoder = encoder
        self.store = store
        self.max_pixels = max_pixels
        self.fast_decode = fast_decode
        self._sizes: tuple[int | None, int | None, int | None] | None = None

    def sizes(self) -> tuple[int | None, int | None, int | None]:
        """(JPEG draft side, short side kept, long side kept), read from the encoder only
        when something must be decoded (a lazy encoder need not load for a cached run)."""
        if self._sizes is None:
            input_size = getattr(self.encoder, "input_size", None)
            max_image_side = getattr(self.encoder, "max_image_side", None)
            if isinstance(input_size, int) and input_size > 0:
                self._sizes = (input_size if self.fast_decode else None, KEEP_FACTOR * input_size, None)
            elif isinstance(max_image_side, int) and max_image_side > 0:
                self._sizes = (None, None, max_image_side)
            else:
                self._sizes = (None, None, DEFAULT_MAX_SIDE)
        return self._sizes

    def __call__(self, batch: list[Sample]) -> _Prepared:
        if batch[0].kind == "text":
            return self._texts(batch)
        return self._images(batch)

    def _texts(self, batch: list[Sample]) -> _Prepared:
        keys = [text_key(s.text or "") for s in batch]
        cached = self.store.get_many(self.encoder.model_key, "text", keys)
        todo = list(dict.fromkeys(k for k in keys if k not in cached))
        text_of = {k: s.text or "" for k, s in zip(keys, batch)}
        return _Prepared(batch, keys, cached, todo, [text_of[k] for k in todo], [])

    def _images(self, batch: list[Sample]) -> _Prepared:
        """One image at a time (a file or bytes): hash it in chunks, look it up, and decode
        it small only if the cache lacks it. At most one image is held at full size at any
        moment (as two copies while one stored sideways is turned upright)."""
        errors: list[SampleError] = []
        ok: list[tuple[Sample, str]] = []
        cached: dict[str, np.ndarray] = {}
        migrated: dict[str, np.ndarray] = {}
        images: dict[str, Image.Image] = {}
        buffer = bytearray(HASH_CHUNK)
        for s in batch:
            if s.path is None and s.data is None:
                errors.append(SampleError(s.source, "cannot read: an image sample with neither a path nor bytes"))
                continue
            name = (s.path.name if s.path is not None else "") or s.source
            try:
                with _open_sample(s) as fh:
                    before = _stamp(fh)
                    digest = _hash_file(fh, buffer)
                    key = image_key(digest, self.fast_decode)
                    if key not in cached and key not in images:
                        cached.update(self.store.get_many(self.encoder.model_key, "image", [key]))
                    if key not in cached and key not in images:
                        fh.seek(0)
                        img = open_image(fh, name=name, max_pixels=self.max_pixels)
                        try:
                            old = self._version1_vector(digest) if exif_orientation(img) == 1 else None
                        except BaseException:
                            img.close()
                            raise
                        if old is not None:  # stored before orientation was applied, and no rotation applies
                            img.close()
                            cached[key] = migrated[key] = old
                        else:
                            draft, keep, longest = self.sizes()
                            images[key] = decode_opened(img, name=name, min_side=draft, keep_side=keep, max_side=longest)
                            if _stamp(fh) != before:
                                del images[key]
                                raise ValueError(f"cannot decode image: {name} changed while it was read")
            except OSError as exc:
                errors.append(SampleError(s.source, f"cannot read: {exc.strerror or exc}"))
                continue
            except ValueError as exc:
                errors.append(SampleError(s.source, str(exc)))
                continue
            ok.append((s, key))
        model_input, encoded, failed = self._preprocess(images)
        images.clear()
        for key, reason in failed.items():
            errors.extend(SampleError(s.source, f"cannot preprocess image: {reason}") for s, k in ok if k == key)
        kept = [(s, k) for s, k in ok if k not in failed]
        return _Prepared([s for s, _ in kept], [k for _, k in kept], cached, encoded, model_input, errors, migrated)

    def _version1_vector(self, digest: str) -> np.ndarray | None:
        """The vector decoding version 1 stored for these bytes, if any: valid for an image whose
        EXIF orientation is 1, whose pixels the version 2 decoding left as they were."""
        old = _unversioned_key(digest, self.fast_decode)
        return self.store.get_many(self.encoder.model_key, "image", [old]).get(old)

    def _preprocess(self, images: dict[str, Image.Image]) -> tuple[Any, list[str], dict[str, str]]:
        """Preprocess the batch at once; if that fails, image by image to isolate the culprit.

        Returns the model input, the keys it holds (in order) and the keys that failed.
        """
        if not images:
            return None, [], {}
        try:
            return self.encoder.preprocess(list(images.values())), list(images), {}
        except Exception:  # any backend error: find the culprit image by image
            good: list[str] = []
            failed: dict[str, str] = {}
            for key, img in images.items():
                try:
                    self.encoder.preprocess([img])
                    good.append(key)
                except Exception as exc:
                    failed[key] = str(exc) or type(exc).__name__
        model_input = self.encoder.preprocess([images[k] for k in good]) if good else None
        return model_input, good, failed


def _open_sample(sample: Sample) -> io.BufferedReader | io.BytesIO:
    """An image sample's bytes as a stream: the bytes it carries, else its file (the caller
    closes it). Everything after this reads both alike."""
    if sample.data is not None:
        return io.BytesIO(sample.data)
    assert sample.path is not None
    return open(sample.path, "rb")


def _stamp(fh: io.BufferedIOBase) -> tuple[int, int] | None:
    """(size, mtime) of an open file, to notice a file rewritten while it is read."""
    try:
        st = os.fstat(fh.fileno())
    except (OSError, io.UnsupportedOperation):
        return None
    return st.st_size, st.st_mtime_ns


def _hash_file(fh: io.BufferedIOBase, buffer: bytearray) -> str:
    """SHA-256 of the file's bytes (the cache key), read through one reused buffer."""
    digest = hashlib.sha256()
    view = memoryview(buffer)
    while n := fh.readinto(buffer):
        digest.update(view[:n])
    return digest.hexdigest()


def check_batch_size(batch_size: int | None, encoder: Encoder) -> int:
    """The batch size to use: the caller's, else the encoder's; 1..MAX_BATCH_SIZE."""
    size, source = (batch_size, "batch size") if batch_size is not None else (encoder.batch_size, f"model {encoder.model_key}'s batch size")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or not 1 <= int(size) <= MAX_BATCH_SIZE:
        raise InputError(f"{source} must be a whole number from 1 to {MAX_BATCH_SIZE}, got {size!r}")
    return int(size)


def check_modality(encoder: Encoder, samples: Sequence[Sample]) -> None:
    kinds = {s.kind for s in samples}
    unsupported = kinds - set(encoder.modalities)
    if unsupported:
        raise InputError(
            f"model {encoder.model_key} cannot encode {', '.join(sorted(unsupported))} inputs "
            f"(it takes: {', '.join(sorted(encoder.modalities))})"
        )


def stream_embeddings(
    samples: Sequence[Sample],
    encoder: Encoder,
    store: EmbeddingStore | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "encoding",
    *,
    max_pixels: int | None = None,
    fast_decode: bool | None = None,
) -> Iterator[EmbeddedBatch]:
    """Yield embeddings batch by batch, in input order; memory stays bounded by the batch size.

    ``max_pixels``: images above it are reported as errors (default ``$COTEMBED_MAX_PIXELS``
    or :data:`DEFAULT_MAX_PIXELS`). ``fast_decode``: decode JPEGs at a reduced DCT scale
    (default ``$COTEMBED_FAST_DECODE``, else off: images are decoded in full, as in the
    model's reference preprocessing).
    """
    check_modality(encoder, samples)
    store = store if store is not None else NoCache()
    size = check_batch_size(batch_size, encoder)
    cap = resolve_max_pixels(max_pixels)
    configure_pil(cap)
    batches = [list(samples[i : i + size]) for i in range(0, len(samples), size)]
    prepare = _Preparer(encoder, store, cap, resolve_fast_decode(fast_decode))
    unit = "img" if samples and samples[0].kind == "image" else "text"
    bar = _progress_bar(len(samples), desc, unit, progress)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cotembed-prep") as pool:
        pending: deque[Future[_Prepared]] = deque()
        queue = iter(batches)
        for batch in queue:
            pending.append(pool.submit(prepare, batch))
            if len(pending) >= PREFETCH_BATCHES:
                break
        try:
            while pending:
                prepared = pending.popleft().result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(pool.submit(prepare, nxt))
                yield _finish(prepared, encoder, store)
                if bar is not None:
                    bar.update(len(prepared.samples) + len(prepared.errors))
        finally:
            for fut in pending:
                fut.cancel()
            if bar is not None:
                bar.close()


def embed_texts(texts: Sequence[str], encoder: Encoder, store: EmbeddingStore | None = None) -> np.ndarray:
    """(len(texts), D) embeddings through the same cached path as inputs: prompts are
    encoded once per (model, text) and read from the cache afterwards."""
    chunks = [batch.embeddings for batch in stream_embeddings(text_samples(list(texts)), encoder, store)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def _finish(prepared: _Prepared, encoder: Encoder, store: EmbeddingStore) -> EmbeddedBatch:
    """Main-thread half: run the model on what the cache lacked, store it, assemble the batch."""
    kind = prepared.samples[0].kind if prepared.samples else "image"
    vectors = dict(prepared.cached)
    if prepared.migrated:
        store.put_many(encoder.model_key, kind, prepared.migrated)
    if prepared.to_encode:
        if kind == "text":
            encoded = encoder.encode_texts(prepared.model_input)
        else:
            encoded = encoder.encode_preprocessed(prepared.model_input)
        encoded = np.asarray(encoded, dtype=np.float32)
        if encoded.shape[0] != len(prepared.to_encode):
            raise CotembedError(f"model {encoder.model_key} returned {encoded.shape[0]} embeddings for {len(prepared.to_encode)} inputs")
        new = dict(zip(prepared.to_encode, encoded))
        store.put_many(encoder.model_key, kind, new)
        vectors.update(new)
    if prepared.samples:
        embeddings = np.stack([vectors[k] for k in prepared.keys]).astype(np.float32, copy=False)
    else:
        embeddings = np.zeros((0, 0), dtype=np.float32)
    return EmbeddedBatch(prepared.samples, embeddings, prepared.errors, len(prepared.to_encode))


def _progress_bar(total: int, desc: str, unit: str, enabled: bool) -> tqdm[Any] | None:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False)

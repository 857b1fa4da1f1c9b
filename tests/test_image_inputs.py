"""Images as files or as bytes, through the one decode path: same key, same pixels, same
embedding; EXIF orientation applied there (and versioned in the cache key), checked
against images stored upright, in the library, the CLI and a real service on loopback."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytest
from PIL import Image, ImageOps

from cotembed._pipeline import DECODE_VERSION, decode_image, exif_orientation, image_key, stream_embeddings
from cotembed.cache import EmbeddingCache, content_key
from cotembed.data import Sample
from support import COLOUR_SYSTEM, ColourEncoder, run_cli

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"
ORIENTATION = 0x0112

STORED_FOR = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # tag 6: "rotate 90° clockwise to view", so a camera stores it turned counter-clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
"""EXIF orientation -> how a camera stores an upright scene under that tag (the EXIF specification's meaning)."""


def blocky(cols: int, rows: int, block: int = 16, seed: int = 0) -> Image.Image:
    """Flat, aligned blocks of random colours: JPEG keeps such an image exactly the same whichever way
    it is turned, so a file stored sideways and one stored upright decode to identical pixels."""
    colours = np.random.default_rng(seed).integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(colours, np.ones((block, block, 1), dtype=np.uint8)))


def jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, subsampling=0, exif=exif)
    return buf.getvalue()


def sideways(upright: Image.Image, orientation: int) -> bytes:
    """The JPEG a camera writes for ``upright`` under ``orientation``: pixels stored turned, the tag saying how."""
    return jpeg(upright.transpose(STORED_FOR[orientation]), orientation)


def pixels(data: bytes, **sizes: Any) -> np.ndarray:
    return np.asarray(decode_image(io.BytesIO(data), **sizes))


class PixelEncoder(ColourEncoder):
    """ColourEncoder, but an image embeds to its 4x4 thumbnail, so turning it changes its embedding."""

    dim = 48

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        vectors = super().encode_texts(texts)
        return np.tile(vectors, (1, self.dim // vectors.shape[1]))

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([np.asarray(img.convert("RGB").resize((4, 4), Image.Resampling.BOX), dtype=np.float32).reshape(-1) / 255.0
                         for img in images])

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images_encoded += len(batch)
        return np.asarray(batch, dtype=np.float32) + 0.01


def embed(samples: list[Sample], encoder: Any, store: Any = None) -> tuple[np.ndarray, int, list[str]]:
    vectors, encoded, errors = [], 0, []
    for batch in stream_embeddings(samples, encoder, store):
        vectors.extend(batch.embeddings)
        encoded += batch.n_encoded
        errors.extend(f"{e.source}: {e.error}" for e in batch.errors)
    return np.asarray(vectors), encoded, errors


# ------------------------------------------------------------------------- EXIF orientation
@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_jpeg_turned_by_its_exif_tag_decodes_to_the_pixels_of_one_stored_upright(orientation: int) -> None:
    upright = blocky(6, 4)  # 96x64: the sides swap under tags 5-8
    tagged = sideways(upright, orientation)
    expected = pixels(jpeg(upright))
    assert not np.array_equal(np.asarray(Image.open(io.BytesIO(tagged)).convert("RGB")), expected)  # stored turned
    np.testing.assert_array_equal(pixels(tagged), expected)
    # PIL's own reading of the tag agrees
    np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(tagged))).convert("RGB")), expected)
    # shrunk (turned first, so exactly) and decoded at a reduced JPEG scale (fast decode)
    np.testing.assert_array_equal(pixels(tagged, keep_side=24), pixels(jpeg(upright), keep_side=24))
    np.testing.assert_array_equal(pixels(tagged, min_side=16), pixels(jpeg(upright), min_side=16))


def png(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=exif)
    return buf.getvalue()


def test_orientation_is_read_from_the_header_and_a_broken_tag_is_ignored() -> None:
    upright = blocky(3, 2)
    for value, expected in ((6, 6), (1, 1), (0, 1), (9, 1), (None, 1)):
        with Image.open(io.BytesIO(jpeg(upright, value))) as img:
            assert exif_orientation(img) == expected
    for data, pixel_data in ((jpeg(upright, 6), b"\xff\xda"), (png(upright, 6), b"IDAT")):
        cut = data[: data.index(pixel_data) + 40]  # the pixels cut off: the header alone is read
        with Image.open(io.BytesIO(cut)) as img:
            assert exif_orientation(img) == 6
            with pytest.raises(OSError):
                img.load()
    broken = jpeg(upright, 6).replace(b"Exif\x00\x00MM", b"Exif\x00\x00XX").replace(b"Exif\x00\x00II", b"Exif\x00\x00XX")
    with Image.open(io.BytesIO(broken)) as img:
        assert exif_orientation(img) == 1
    np.testing.assert_array_equal(pixels(broken), pixels(jpeg(upright)))  # decodes, as stored


def test_a_png_carries_its_orientation_too() -> None:
    upright = blocky(4, 3, block=1)  # PNG is lossless: any pixels
    np.testing.assert_array_equal(pixels(png(upright.transpose(STORED_FOR[8]), 8)), np.asarray(upright))


# --------------------------------------------------------------------- files and bytes alike
def test_bytes_and_the_file_they_came_from_share_one_cache_entry(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(sideways(blocky(4, 3), 6))
    encoder = PixelEncoder()
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        from_file, encoded, _ = embed([Sample(str(path), "image", path=path)], encoder, cache)
        assert encoded == 1
        from_bytes, encoded, errors = embed([Sample.from_bytes(path.read_bytes(), "upload")], encoder, cache)
        assert encoded == 0 and errors == []
        np.testing.assert_array_equal(from_bytes, from_file)
        key = image_key(content_key(path.read_bytes()))
        assert key.endswith(f":d{DECODE_VERSION}") and set(cache.get_many(encoder.model_key, "image", [key])) == {key}


def test_image_bytes_that_cannot_be_used_are_reported_by_their_name_and_the_rest_go_on() -> None:
    good = jpeg(blocky(2, 2))
    samples = [Sample.from_bytes(b"", "upload 0"), Sample.from_bytes(b"GIF89a-truncated", "upload 1"), Sample.from_bytes(good, "upload 2"),
               Sample("nothing", "image")]
    vectors, encoded, errors = embed(samples, PixelEncoder())
    assert len(vectors) == 1 and encoded == 1
    assert errors[0] == "upload 0: cannot decode image: upload 0 is empty (0 bytes)"
    assert errors[1].startswith("upload 1: cannot decode image: upload 1")
    assert errors[2] == "nothing: cannot read: an image sample with neither a path nor bytes"


def test_the_classifier_takes_paths_bytes_pil_images_and_samples_alike(tmp_path: Path) -> None:
    from cotembed._classifier import CoTClassifier
    from cotembed.system import System

    upright = blocky(4, 3)
    tagged = sideways(upright, 6)
    path = tmp_path / "photo.jpg"
    path.write_bytes(tagged)
    clf = CoTClassifier(System.from_dict(COLOUR_SYSTEM), PixelEncoder())
    expected = clf.embed(images=[jpeg(upright)])
    opened = Image.open(io.BytesIO(tagged))  # as a photo opens: stored sideways, its tag unapplied
    for given in (path, tagged, bytearray(tagged), opened, Sample.from_bytes(tagged, "mine")):
        np.testing.assert_allclose(clf.embed(images=[given]), expected, err_msg=type(given).__name__)
    np.testing.assert_allclose(clf.embed(images=[ImageOps.exif_transpose(opened)]), expected)  # upright already: not turned twice
    assert clf.explain(image=Sample.from_bytes(tagged, "mine")).source == "mine"
    with pytest.raises(Exception, match="mine: cannot decode image: mine"):
        clf.embed(images=[Sample.from_bytes(b"not an image", "mine")])


# ------------------------------------------------------------------- the cache key's version
def test_embeddings_stored_before_orientation_was_applied_are_reused_only_where_it_changes_nothing(tmp_path: Path) -> None:
    plain, turned = jpeg(blocky(4, 3, seed=1)), sideways(blocky(4, 3, seed=2), 6)
    encoder = PixelEncoder()
    stale = np.full(encoder.dim, 7.0, dtype=np.float32)
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cache.put_many(encoder.model_key, "image", {content_key(plain): stale, content_key(turned): stale})  # keys of version 1
        vectors, encoded, _ = embed([Sample.from_bytes(plain, "plain"), Sample.from_bytes(turned, "turned")], encoder, cache)
        assert encoded == 1  # the tagged image only: its old embedding was of the sideways pixels
        np.testing.assert_array_equal(vectors[0], stale)
        assert not np.allclose(vectors[1], stale)
        np.testing.assert_array_equal(vectors[1], embed([Sample.from_bytes(jpeg(blocky(4, 3, seed=2)), "upright")], encoder)[0][0])
        stored = cache.get_many(encoder.model_key, "image", [image_key(content_key(plain))])
        np.testing.assert_array_equal(stored[image_key(content_key(plain))], stale)  # kept under the current key
        assert embed([Sample.from_bytes(plain, "plain"), Sample.from_bytes(turned, "turned")], encoder, cache)[1] == 0


# ------------------------------------------------------------------------- the CLI's path
@pytest.fixture(scope="module")
def critter_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A critter scaled 8x (each pixel one flat JPEG block), stored upright, sideways under tag 6,
    and sideways with no tag."""
    from cotembed_critters.species import generate_split

    out = tmp_path_factory.mktemp("photos")
    generate_split(CRITTERS / "species.yaml", out / "split", 1, seed=5, progress=False)
    critter = Image.open(sorted((out / "split").rglob("*.png"))[3]).convert("RGB")
    upright = critter.resize((critter.width * 8, critter.height * 8), Image.Resampling.NEAREST)
    photos = {"upright": jpeg(upright), "tagged": sideways(upright, 6), "untagged": jpeg(upright.transpose(STORED_FOR[6]))}
    for name, data in photos.items():
        (out / f"{name}.jpg").write_bytes(data)
    return {name: out / f"{name}.jpg" for name in photos}


def test_the_cli_classifies_a_photo_turned_by_its_tag_as_the_same_photo_stored_upright(capsys: Any, critter_photos: dict[str, Path],
                                                                                      tmp_path: Path) -> None:
    scores = {}
    for name, path in critter_photos.items():
        code, out, _ = run_cli(capsys, "classify", CRITTERS / "system.yaml", path, "--cache", tmp_path / "c.sqlite", "-q",
                               "--format", "json", "--top-k", "28")
        assert code == 0, out
        scores[name] = {t["class"]: t["score"] for t in json.loads(out)["predictions"][0]["top"]}
    assert scores["tagged"] == scores["upright"]
    assert scores["untagged"] != scores["upright"]  # the model does see which way up it is


# ----------------------------------------------------------------------- the service's path
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from cotembed.serve._app import create_app
    from cotembed.serve._registry import Registry
    from cotembed.serve._server import ServerThread
    from cotembed.serve._settings import ServeSettings
    from cotembed.system import System

    settings = ServeSettings(models=("critters",), systems=(System.load(CRITTERS / "system.yaml"),),
                             cache=str(tmp_path_factory.mktemp("serve") / "c.sqlite"))
    registry = Registry.open(settings)
    try:
        server = ServerThread(create_app(registry), graceful_timeout_s=settings.graceful_timeout_s).start()
    except BaseException:
        registry.close()
        raise
    yield server.url
    server.stop()
    registry.close()


def test_the_service_embeds_and_explains_a_photo_turned_by_its_tag_as_one_stored_upright(service: str,
                                                                                         critter_photos: dict[str, Path]) -> None:
    httpx = pytest.importorskip("httpx")
    sent = {name: base64.b64encode(path.read_bytes()).decode("ascii") for name, path in critter_photos.items()}
    names = list(sent)
    response = httpx.post(f"{service}/v1/embeddings", json={"input": [{"image": sent[n]} for n in names]}, timeout=60)
    assert response.status_code == 200, response.text
    vectors = {n: np.asarray(d["embedding"]) for n, d in zip(names, response.json()["data"])}
    np.testing.assert_array_equal(vectors["tagged"], vectors["upright"])
    assert not np.allclose(vectors["untagged"], vectors["upright"])

    explained = {}
    for name in ("tagged", "upright"):
        response = httpx.post(f"{service}/v1/explain", json={"system": "critters", "input": {"image": sent[name]}}, timeout=60)
        assert response.status_code == 200, response.text
        explained[name] = response.json()
    assert explained["tagged"]["input"] == f"sha256:{content_key(critter_photos['tagged'].read_bytes())}"
    assert explained["tagged"]["questions"] == explained["upright"]["questions"]
    assert explained["tagged"]["top"] == explained["upright"]["top"]


def test_report_thumbnails_of_bytes_and_of_tagged_photos_are_upright(tmp_path: Path) -> None:
    from cotembed.reporting._html import thumbnail_uri

    upright = blocky(6, 4)
    path = tmp_path / "upright.jpg"
    path.write_bytes(jpeg(upright))
    assert thumbnail_uri(sideways(upright, 8), px=32) == thumbnail_uri(path, px=32)


def test_a_single_image_needs_no_list(tmp_path: Path) -> None:
    from cotembed._classifier import CoTClassifier
    from cotembed.system import System

    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg(blocky(2, 2)))
    clf = CoTClassifier(System.from_dict(COLOUR_SYSTEM), PixelEncoder())
    expected = clf.embed(images=[path])
    for single in (str(path), path, path.read_bytes(), Sample.from_bytes(path.read_bytes(), "one")):
        np.testing.assert_array_equal(clf.embed(images=single), expected)
        assert clf.explain(image=single).prediction == clf.explain(image=path).prediction

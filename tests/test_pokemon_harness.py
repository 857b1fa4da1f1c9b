"""The Pokémon harness offline: rendered fake cards served by a real HTTP server on
127.0.0.1, a ``datasets.Dataset`` with the columns of TheFusion21/PokemonCards, one bad
URL, a resumed run, and the crop checked on pixels."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cotembed.cli._main import main
from cotembed.errors import HarnessDependencyError, InputError
from cotembed.http import RetryPolicy
from cotembed.system import System
from cotembed_experiments.pokemon import (
    ARTICLE_ACC1,
    COLUMNS,
    DEFAULT_ART_BOX,
    ArtBox,
    Card,
    ImageDownloader,
    cards_from_table,
    compare_with_article,
    crop_artwork,
    draw_test_set,
    load_table,
)

datasets = pytest.importorskip("datasets")

SYSTEM_PATH = Path(__file__).resolve().parents[1] / "examples" / "pokemon" / "system.yaml"
CARD_SIZE = (367, 512)  # the dataset's scans are 734 x 1024; half size keeps the test fast
BAND = (250, 214, 40)  # the name bar and attack panels
INK = (20, 20, 20)  # printed text
FRAME = (200, 200, 205)
ART = {"Absol": (240, 240, 250), "Aggron": (120, 120, 130), "Dratini": (90, 160, 235), "Arcanine": (235, 130, 40),
       "Absol G": (60, 40, 90), "Beedrill δ": (150, 100, 60)}
OTHERS = ["Pikachu", "Professor Oak's Research"]  # cards whose names are not classes of the system
PER_CLASS = 3


def render_card(name: str, art: tuple[int, int, int], seed: int) -> bytes:
    """A card: frame, name bar with text, the art window (a colour with a few blobs that
    use no band or ink colour), a species line and attack panels with text below."""
    w, h = CARD_SIZE
    img = Image.new("RGB", CARD_SIZE, FRAME)
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(seed)
    draw.rectangle((0, int(0.03 * h), w, int(0.105 * h)), fill=BAND)
    draw.text((int(0.1 * w), int(0.05 * h)), f"{name}   HP 90", fill=INK)
    left, top, right, bottom = DEFAULT_ART_BOX.pixels(w, h)
    draw.rectangle((left - 6, top - 6, right + 6, bottom + 6), fill=art)  # the art runs a little past the box
    for _ in range(4):
        x, y = int(rng.integers(left, right - 20)), int(rng.integers(top, bottom - 20))
        draw.ellipse((x, y, x + 20, y + 16), fill=tuple(int(v) for v in np.clip(np.asarray(art) - 40, 45, 255)))
    draw.rectangle((0, int(0.475 * h), w, int(0.52 * h)), fill=BAND)
    draw.text((int(0.1 * w), int(0.485 * h)), "Disaster Pokémon. Length: 3' 11\"", fill=INK)
    for k in range(3):
        y = int((0.55 + 0.13 * k) * h)
        draw.rectangle((int(0.05 * w), y, int(0.95 * w), y + int(0.1 * h)), fill=BAND)
        draw.text((int(0.1 * w), y + 10), f"Attack {k}  {30 * (k + 1)}", fill=INK)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class CardServer:
    """A threading HTTP server with byte ranges, request logs, a 404 and a URL that fails once."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.flaky_left = {"/flaky.png": 1}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if server.flaky_left.get(self.path, 0) > 0:
                    server.flaky_left[self.path] -= 1
                    return self._send(503, b"busy", "text/plain")
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    return self._send(404, b"not found", "text/plain")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                    self.send_header("Content-Length", str(len(body) - start))
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    self.wfile.write(body[start:])
                    return None
                return self._send(200, body, "image/png")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def image_gets(self) -> list[str]:
        return [path for path, _ in self.requests if path.lstrip("/") in self.files]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    files = {}
    rows = []
    n = 0
    for name in [*ART, *OTHERS]:
        for k in range(PER_CLASS):
            n += 1
            card_id = f"fake{n}-{k}"
            files[f"{card_id}.png"] = render_card(name, ART.get(name, (30, 200, 60)), n)
            rows.append((card_id, f"{card_id}.png", name))
    srv = CardServer(files)
    srv.rows = [(card_id, f"{srv.base}/{path}", name) for card_id, path, name in rows]
    srv.rows.append(("missing-1", f"{srv.base}/missing-1.png", "Dratini"))  # a class card whose URL answers 404
    yield srv
    srv.close()


def table_of(rows):
    """A datasets.Dataset with every column of TheFusion21/PokemonCards, in its order."""
    return datasets.Dataset.from_dict({
        "id": [r[0] for r in rows],
        "image_url": [r[1] for r in rows],
        "caption": [f"A Basic Pokemon Card of type Colorless with the title {r[2]}" for r in rows],
        "name": [r[2] for r in rows],
        "hp": [90] * len(rows),
        "set_name": ["Test Set"] * len(rows),
    })


@pytest.fixture(scope="module")
def system():
    return System.load(SYSTEM_PATH)


def quick_downloader(folder: Path, **kw) -> ImageDownloader:
    return ImageDownloader(folder, timeout_s=5, workers=4, sleep=lambda s: None,
                           policy=RetryPolicy(max_attempts=3, backoff_s=0.01, max_total_s=5), **kw)


def test_dataset_table_has_the_real_columns():
    assert COLUMNS == ("id", "image_url", "caption", "name", "hp", "set_name")


def test_draw_downloads_crops_and_skips_the_bad_url_then_a_second_run_downloads_nothing(server, system, tmp_path):
    cards = cards_from_table(table_of(server.rows))
    n_class_cards = len(ART) * PER_CLASS + 1  # + the 404 card
    failures_heard = []
    with quick_downloader(tmp_path / "images") as dl:
        first = draw_test_set(cards, system, tmp_path, size=n_class_cards, seed=3, downloader=dl, on_failure=failures_heard.append)
    # Every card named after a class, and only those; the 404 one reported and skipped.
    assert first.candidates == n_class_cards
    assert len(first.samples) == n_class_cards - 1
    assert {c.name for c in first.cards} == set(ART)
    assert first.classes == {name: PER_CLASS for name in sorted(ART)}
    assert [f.card.id for f in first.failures] == ["missing-1"] == [f.card.id for f in failures_heard]
    assert "404" in first.failures[0].error
    assert first.other_names == {name: PER_CLASS for name in OTHERS}
    assert first.fetched == n_class_cards - 1 and first.reused == 0
    gets_after_first = len(server.image_gets())
    # The manifest lists the same crops with their labels, loadable by cotembed eval.
    from cotembed.data import collect_samples

    listed = collect_samples([first.manifest])
    assert sorted((Path(s.source).name, s.label) for s in listed) == sorted((Path(s.source).name, s.label) for s in first.samples)

    with quick_downloader(tmp_path / "images") as dl:
        again = draw_test_set(cards, system, tmp_path, size=n_class_cards, seed=3, downloader=dl)
    assert again.fetched == 0 and again.reused == n_class_cards - 1
    assert len(server.image_gets()) == gets_after_first  # no image was transferred again
    assert [c.id for c in again.cards] == [c.id for c in first.cards]


def test_crop_removes_every_text_band(server, tmp_path):
    card_id, url, name = server.rows[0]
    body = server.files[url.rsplit("/", 1)[1]]
    (tmp_path / "card.png").write_bytes(body)
    art = crop_artwork(tmp_path / "card.png", tmp_path / "art.png")
    pixels = np.asarray(Image.open(art).convert("RGB")).reshape(-1, 3)
    left, top, right, bottom = DEFAULT_ART_BOX.pixels(*CARD_SIZE)
    assert Image.open(art).size == (right - left, bottom - top)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    assert BAND not in colours and INK not in colours and FRAME not in colours
    assert tuple(ART[name]) in colours  # and the artwork is what remains
    # The uncropped card does have them: the assertion above can fail.
    full = {tuple(p) for p in np.unique(np.asarray(Image.open(tmp_path / "card.png").convert("RGB")).reshape(-1, 3), axis=0)}
    assert {BAND, INK, FRAME} <= full


def test_a_box_that_keeps_the_name_bar_keeps_its_pixels(server, tmp_path):
    body = server.files[server.rows[0][1].rsplit("/", 1)[1]]
    (tmp_path / "card.png").write_bytes(body)
    art = crop_artwork(tmp_path / "card.png", tmp_path / "art.png", ArtBox(0.0, 0.0, 1.0, 0.46))
    assert BAND in {tuple(p) for p in np.asarray(Image.open(art).convert("RGB")).reshape(-1, 3)}


def test_the_draw_is_seeded(server, system, tmp_path):
    cards = cards_from_table(table_of(server.rows))
    with quick_downloader(tmp_path / "images") as dl:
        a = [c.id for c in draw_test_set(cards, system, tmp_path, size=6, seed=1, downloader=dl).cards]
        b = [c.id for c in draw_test_set(cards, system, tmp_path, size=6, seed=1, downloader=dl).cards]
        c = [c.id for c in draw_test_set(cards, system, tmp_path, size=6, seed=2, downloader=dl).cards]
    assert a == b and len(a) == 6
    assert a != c


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    card_id, url, name = server.rows[1]
    body = server.files[url.rsplit("/", 1)[1]]
    card = Card(card_id, url, name)
    with quick_downloader(tmp_path) as dl:
        from cotembed_experiments.pokemon.download import image_filename

        part = tmp_path / (image_filename(card) + ".part")
        part.write_bytes(body[:1000])
        outcome = dl.fetch(card)
    assert outcome.path is not None and outcome.path.read_bytes() == body
    assert not part.exists()
    assert (f"/{url.rsplit('/', 1)[1]}", "bytes=1000-") in server.requests


def test_a_transient_failure_is_retried(server, tmp_path):
    server.files["flaky.png"] = server.files[server.rows[2][1].rsplit("/", 1)[1]]
    with quick_downloader(tmp_path) as dl:
        outcome = dl.fetch(Card("flaky", f"{server.base}/flaky.png", "Absol"))
    assert outcome.error is None and outcome.fetched
    assert [path for path, _ in server.requests].count("/flaky.png") == 2  # 503, then the image


def test_a_url_that_answers_html_is_skipped_when_cropped(server, system, tmp_path):
    server.files["page.png"] = b"<html>not an image</html>"
    cards = [Card("page", f"{server.base}/page.png", "Absol"), Card("ok", server.rows[0][1], "Absol")]
    with quick_downloader(tmp_path / "images") as dl:
        test_set = draw_test_set(cards, system, tmp_path, size=2, seed=0, downloader=dl)
    assert [c.id for c in test_set.cards] == ["ok"]
    assert test_set.failures[0].card.id == "page" and "cannot decode card image" in test_set.failures[0].error


def test_cli_reproduces_offline_with_a_tiny_model(server, tmp_path, tiny_clip_dir, monkeypatch, capsys):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    csv_path = tmp_path / "cards.csv"
    table_of(server.rows).to_csv(str(csv_path), index=False)
    size = 8
    argv = ["reproduce", "pokemon", "--system", str(SYSTEM_PATH), "--dataset", str(csv_path), "--data-dir", str(tmp_path / "data"),
            "--size", str(size), "--seed", "5", "--model", f"hf:{tiny_clip_dir}", "--cache", str(tmp_path / "cache.sqlite"),
            "--workers", "2", "--timeout", "5", "-q", "--format", "json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["test_set"]["size"] == size
    assert sum(payload["test_set"]["classes"].values()) == size
    assert [m["spec"] for m in payload["models"]] == [f"hf:{tiny_clip_dir}"]
    report = payload["models"][0]
    assert report["n_inputs"] == size and set(report["methods"]) == {"baseline", "cot", "hybrid"}
    rows = {r["method"]: r for r in payload["comparison"]}
    assert set(rows) == {"baseline", "cot", "hybrid"}
    assert all(r["article_acc1"] is None for r in rows.values())  # the article has no figure for this model
    assert rows["cot"]["acc1"] == report["methods"]["cot"]["acc1"]

    # The table form names the test set and the article's note; a second run fetches nothing.
    argv[-1] = "table"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"test set: {size} images (seed 5" in out and "0 downloaded now" in out
    assert "37, 55, 19 and 45 correct out of 118" in out


def test_article_figures_sit_beside_ours():
    class Result:
        def __init__(self, acc1):
            self.acc1 = acc1

        def to_dict(self):
            return {"acc1": self.acc1}

    class Report:
        n_inputs = 117
        methods = {"baseline": Result(0.30), "cot": Result(0.50), "hybrid": Result(0.52)}

    rows = compare_with_article([("jina:jinaai/jina-clip-v1", Report()), ("jina:jinaai/jina-clip-v2", Report())])
    by = {(r["model"], r["method"]): r for r in rows}
    assert by[("jina:jinaai/jina-clip-v1", "baseline")]["article_acc1"] == 0.3136
    assert by[("jina:jinaai/jina-clip-v1", "cot")]["article_acc1"] == 0.4661
    assert by[("jina:jinaai/jina-clip-v2", "baseline")]["article_acc1"] == 0.1610
    assert by[("jina:jinaai/jina-clip-v2", "cot")]["article_acc1"] == 0.3814
    assert by[("jina:jinaai/jina-clip-v2", "hybrid")]["article_acc1"] is None
    assert by[("jina:jinaai/jina-clip-v1", "cot")]["difference"] == pytest.approx(0.50 - 0.4661)
    # The article's percentages are whole images out of 118.
    assert all(abs(v * 118 - round(v * 118)) < 0.01 for figures in ARTICLE_ACC1.values() for v in figures.values())


def test_missing_columns_are_named():
    table = datasets.Dataset.from_dict({"id": ["a"], "url": ["http://x/a.png"]})
    with pytest.raises(InputError, match="missing column.*image_url, name"):
        cards_from_table(table, source="my.csv")


def test_without_datasets_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(HarnessDependencyError, match=r"pip install 'cotembed\[pokemon\]'"):
        load_table("TheFusion21/PokemonCards")


@pytest.mark.parametrize("text", ["0.1,0.2,0.3", "0.5,0.2,0.4,0.9", "a,b,c,d", "0,0,1,nan", "0,0,1.5,1"])
def test_bad_art_boxes_are_input_errors(text, capsys):
    with pytest.raises(InputError):
        ArtBox.parse(text)
    assert main(["reproduce", "pokemon", "--art-box", text, "--format", "json"]) == 2
    assert "art box" in json.loads(capsys.readouterr().out)["error"]["message"]

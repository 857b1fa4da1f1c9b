"""The HTML report: misclassified inputs explained per question, a page that is self-contained,
escaped and bounded, and the `report` / `eval --html` verbs. (The page in a real browser:
test_report_browser.py.)"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cotembed._classifier import CoTClassifier
from cotembed._embeddings import EmbeddingSet
from cotembed.cli import main
from cotembed.data import collect_samples, text_samples
from cotembed.errors import InputError
from cotembed.evaluation._curve import accuracy_curve
from cotembed.evaluation._evaluate import evaluate
from cotembed.evaluation._figures import heatmap_classes, question_chance
from cotembed.evaluation._misclassified import misclassified_examples
from cotembed.reporting._html import (
    SORT_JS,
    heatmap_svg,
    load_curve,
    render_report,
    report_section,
    thumbnail_uri,
    write_report,
)
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.system import System
from support import ColourEncoder, make_image, make_image_folder
from synthetic import hashed_embed, random_system, synthetic_set

METHODS = ("baseline", "cot", "hybrid")
# Wrong on purpose: yellow-thing expects green and red-thing also accepts yellow, so yellow inputs
# go to red-thing (the colour question misled them); blue-thing also accepts green, so green inputs
# go to blue-thing although their answer fits their own class. A low temperature keeps every
# option's probability above float32 rounding, so no two classes tie.
WRONG_RULES = {
    "name": "colours",
    "temperature": 5,
    "groups": {"colour": {"prompt": "a photo of something {}", "options": ["red", "green", "blue", "yellow"]}},
    "rules": {"red-thing": {"colour": ["red", "yellow"]}, "green-thing": {"colour": "green"},
              "blue-thing": {"colour": ["blue", "green"]}, "yellow-thing": {"colour": "green"}},
}


@pytest.fixture
def world(tmp_path):
    """(classifier, embedding set, scorer, report) for 4 colour classes x 3 images with wrong rules."""
    clf = CoTClassifier(System.from_dict(WRONG_RULES), ColourEncoder())
    data = clf.embedding_set(collect_samples([make_image_folder(tmp_path / "data", per_class=3)]))
    scorer = clf.scorer_for(METHODS)
    return clf, data, scorer, evaluate(scorer, data, METHODS)


@pytest.fixture
def system_file(tmp_path):
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump(WRONG_RULES), encoding="utf-8")
    return path


class Page(HTMLParser):
    """Every tag with its attributes, the text, and the scripts and styles of a page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        {"script": self.scripts, "style": self.styles}.get(self._in or "", self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


# ------------------------------------------------------------- misclassified
def test_mistakes_match_the_evaluation_and_the_sample_is_capped_and_seeded(world):
    _, data, scorer, report = world
    sample = misclassified_examples(scorer, data, METHODS, max_per_method=4, seed=0)
    by_method = {m.method: m for m in sample.methods}
    assert (by_method["baseline"].misclassified, by_method["cot"].misclassified, by_method["hybrid"].misclassified) == (0, 6, 3)
    for name, mistakes in by_method.items():
        result = report.methods[name]
        assert mistakes.misclassified == result.total - result.correct
        assert len(mistakes.shown) == min(4, mistakes.misclassified)
        assert all(m.predicted != m.label == data.labels[m.row] for m in mistakes.shown)
    rows = [tuple(m.row for m in misclassified_examples(scorer, data, METHODS, 4, seed).methods[1].shown) for seed in range(6)]
    assert rows[0] == tuple(m.row for m in by_method["cot"].shown)
    assert len(set(rows)) > 1  # another seed, another sample
    everything = misclassified_examples(scorer, data, METHODS, max_per_method=100, seed=3)
    predicted = scorer.predict(data.embeddings, "cot")
    assert [m.row for m in everything.methods[1].shown] == [i for i, (p, t) in enumerate(zip(predicted, data.labels)) if p != t]


def test_each_question_agrees_with_explain_for_the_same_input(world):
    clf, data, scorer, _ = world
    shown = misclassified_examples(scorer, data, ("cot",), max_per_method=100).methods[0].shown
    assert shown
    for m in shown:
        explanation = clf.explain(image=data.samples[m.row].path)
        assert explanation.prediction == m.predicted
        for q, asked in zip(m.questions, explanation.questions):
            assert (q.group, q.answer) == (asked.group, asked.answer)
            assert q.probability == pytest.approx(asked.probabilities[q.answer], abs=1e-6)
            assert q.true_probability == pytest.approx(sum(asked.probabilities[o] for o in q.true_options), abs=1e-6)
            assert q.predicted_probability == pytest.approx(sum(asked.probabilities[o] for o in q.predicted_options), abs=1e-6)


def test_verdicts_say_which_question_misled(world):
    _, data, scorer, _ = world
    shown = misclassified_examples(scorer, data, ("cot",), max_per_method=100).methods[0].shown
    by_label = {m.label: m for m in shown}
    yellow, green = by_label["yellow-thing"].questions[0], by_label["green-thing"].questions[0]
    assert by_label["yellow-thing"].predicted == "red-thing"
    assert (yellow.answer, yellow.true_options, yellow.predicted_options, yellow.verdict) == ("yellow", ("green",), ("red", "yellow"), "misled")
    assert by_label["green-thing"].predicted == "blue-thing"
    assert (green.answer, green.verdict) == ("green", "right")
    assert by_label["green-thing"].true_rank == 2


def test_baseline_mistakes_are_explained_with_the_option_prompts_of_a_wider_scorer():
    rng = np.random.default_rng(5)
    system = random_system(rng, groups=3, options=4, classes=10)
    data = synthetic_set(system, 4, rng, noise=0.6)
    only = Scorer.build(system, hashed_embed, ScoringConfig(20.0), ("baseline",))
    wide = Scorer.build(system, hashed_embed, ScoringConfig(20.0), ("baseline", "cot"))
    assert all(not m.questions for m in misclassified_examples(only, data, ("baseline",)).methods[0].shown)
    shown = misclassified_examples(wide, data, ("baseline",)).methods[0].shown
    assert shown and all(len(m.questions) == 3 for m in shown)


# ------------------------------------------------------------------- the page
def test_the_page_is_self_contained(world):
    _, data, scorer, report = world
    page_text = render_report([report_section(report, scorer, data)])
    page = Page(page_text)
    csp = [a for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")
    for _, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (name, value)
    assert not page.all("link") and not page.all("iframe") and not page.all("object")
    assert page.scripts == [SORT_JS]
    urls = re.findall(r"url\(([^)]*)\)", "".join(page.styles))
    assert urls and all(u.startswith("data:image/") for u in urls)


def test_names_from_systems_and_files_are_escaped(tmp_path):
    hostile_class, hostile_option, group = "<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>', 'g&<>"x'
    system = System.from_dict({
        "name": "<i>sys</i>",
        "groups": {group: {"prompt": "something {}", "options": ["red", hostile_option]}},
        "rules": {hostile_class: {group: 1}, "red-thing": {group: 0}},
    })
    for i in range(2):
        make_image(tmp_path / "data" / hostile_class / f"{i}.png", "red", seed=i)
        make_image(tmp_path / "data" / "red-thing" / f"{i}.png", "red", seed=i)
    clf = CoTClassifier(system, ColourEncoder())
    data = clf.embedding_set(collect_samples([tmp_path / "data"]))
    scorer = clf.scorer_for(METHODS)
    section = report_section(evaluate(scorer, data, METHODS), scorer, data)
    assert section["examples"]["methods"]["cot"]["shown"]  # the hostile class is misclassified, so it is shown
    page = Page(render_report([section]))
    assert not page.all("img")
    assert not [(t, k) for t, attrs in page.tags for k in attrs if k.startswith("on")]
    text = "".join(page.text)
    assert hostile_class in text and hostile_option in text and group in text and "<i>sys</i>" in text


def test_the_footer_states_the_files_own_size(world, tmp_path):
    _, data, scorer, report = world
    path = tmp_path / "out" / "r.html"
    size = write_report(path, render_report([report_section(report, scorer, data)]))
    assert size == path.stat().st_size
    stated = re.search(r"\(([\d,]+) bytes\)", path.read_text(encoding="utf-8"))
    assert stated and int(stated.group(1).replace(",", "")) == size


def test_examples_are_capped_and_each_thumbnail_is_embedded_once(world):
    _, data, scorer, report = world
    section = report_section(report, scorer, data, max_examples=2, thumb_px=20)
    page_text = render_report([section])
    shown = [m for mm in section["examples"]["methods"].values() for m in mm["shown"]]
    assert len(shown) == 4  # cot 2 + hybrid 2; baseline makes no mistake
    assert page_text.count('<article class="card">') == len(shown)
    uris = re.findall(r"url\((data:image/[^)]*)\)", page_text)
    assert len(uris) == len(set(uris)) == len({m["row"] for m in shown})
    for uri in uris:
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert max(image.size) <= 20


@pytest.mark.parametrize("classes, note", [(200, "showing the 40 involved in the most confusions"),
                                            (300, "too many to draw; the largest confusions are listed below")])
def test_a_large_evaluation_gives_a_bounded_page(classes, note):
    rng = np.random.default_rng(2)
    system = random_system(rng, groups=6, options=8, classes=classes)
    data = synthetic_set(system, 10, rng, noise=1.2)
    scorer = Scorer.build(system, hashed_embed, ScoringConfig(15.0), ("baseline", "cot"))
    report = evaluate(scorer, data, ("baseline", "cot"))
    section = report_section(report, scorer, data, max_examples=24)
    page_text = render_report([section])
    assert all(len(m["shown"]) == 24 for m in section["examples"]["methods"].values())
    assert note in page_text
    assert len(page_text.encode()) < 1_000_000, len(page_text.encode())


def test_heatmap_draws_every_class_up_to_the_limit_and_the_most_confused_beyond():
    rng = np.random.default_rng(0)
    small = np.diag(rng.integers(1, 9, size=30)) + (rng.random((30, 30)) < 0.05) * 2
    assert list(heatmap_classes(small)) == list(range(30))
    svg = heatmap_svg([f"c{i}" for i in range(30)], small)
    assert svg.count("<rect") == 1 + int(np.count_nonzero(small))  # background + one per non-empty cell
    big = np.diag(np.full(300, 5))
    big[7, 250] = big[250, 7] = 9
    big[100, 3] = 4
    keep = heatmap_classes(big, limit=60, focus=40)
    assert len(keep) == 40 and {3, 7, 100, 250} <= set(keep.tolist()) and list(keep) == sorted(keep)


def test_question_chance_is_the_share_of_answers_a_class_accepts_weighted_by_its_inputs():
    system = System.from_dict({"groups": {"colour": {"prompt": "{}", "options": ["red", "blue"]},
                                          "size": {"prompt": "{}", "options": ["small", "big", "huge", "tiny"]}},
                               "rules": {"a": {"colour": "red", "size": "small"}, "b": {"colour": ["red", "blue"], "size": ["big", "huge"]}}})
    data = EmbeddingSet(np.zeros((4, 2), dtype=np.float32), ["1", "2", "3", "4"], ["a", "a", "a", "b"], "m")
    chance = question_chance(system.compile(), data)
    assert chance == pytest.approx({"colour": (3 * 0.5 + 1 * 1.0) / 4, "size": (3 * 0.25 + 1 * 0.5) / 4})


def test_text_inputs_show_their_text_escaped(tmp_path):
    system = System.from_dict(WRONG_RULES)
    clf = CoTClassifier(system, ColourEncoder())
    texts = text_samples(["something yellow <b>bold</b>", "something green"])
    samples = [dataclasses.replace(s, label=label) for s, label in zip(texts, ["yellow-thing", "green-thing"])]
    data = clf.embedding_set(samples)
    scorer = clf.scorer_for(METHODS)
    page_text = render_report([report_section(evaluate(scorer, data, METHODS), scorer, data)])
    assert '<p class="textinput">something yellow &lt;b&gt;bold&lt;/b&gt;</p>' in page_text
    assert '<p class="textinput">something green</p>' in page_text and "thumb" not in Page(page_text).text


def test_an_input_that_can_no_longer_be_read_shows_no_preview_and_says_why(world):
    _, data, scorer, report = world
    for sample in data.samples:
        if sample.label == "yellow-thing":
            Path(sample.path).write_bytes(b"not an image any more")
    section = report_section(report, scorer, data)
    views = [v for v in section["inputs"].values() if "yellow-thing" in v["input"]]
    assert views and all(v["thumbnail"] is None and "cannot decode image" in v["thumbnail_error"] for v in views)
    page = Page(render_report([section]))
    assert any("cannot decode image" in (a.get("title") or "") for a in page.all("div"))


def test_thumbnails_fit_the_size_and_keep_the_pixel_cap(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (400, 100), (200, 30, 30)).save(path)
    image = Image.open(io.BytesIO(base64.b64decode(thumbnail_uri(path, 64).split(",", 1)[1])))
    assert image.size == (64, 16)
    with pytest.raises(ValueError, match="image too large: .*wide.png"):
        thumbnail_uri(path, 64, max_pixels=10_000)


# ---------------------------------------------------------------------- curve
def test_the_curve_is_drawn_and_a_curve_of_another_system_is_flagged(world, tmp_path):
    _, data, scorer, report = world
    curve = accuracy_curve(Scorer(scorer.system, scorer.prompt_vectors, scorer.config, ("cot", "baseline")), data).to_dict()
    path = tmp_path / "curve.json"
    path.write_text(json.dumps(curve), encoding="utf-8")
    section = report_section(report, scorer, data)
    page_text = render_report([section], load_curve(path))
    assert "Test-time compute" in page_text and "polyline" in page_text and "not the system evaluated above" not in page_text
    other = {**curve, "system": {**curve["system"], "hash": "0" * 16}}
    assert "not the system evaluated above" in render_report([section], other)


@pytest.mark.parametrize("content, field", [
    ('{"points": [{"k": 1, "mean": NaN, "std": 0, "min": 0, "max": 0, "prompts_mean": 4}], "chance": 0.25, '
     '"baseline": {"accuracy": 0.5, "text_prompts": 4}, "method": "cot", "model": "m", "system": {}}', "points[0].mean"),
    ('{"chance": 0.25, "baseline": {"accuracy": 0.5, "text_prompts": 4}, "method": "cot", "model": "m", "system": {}}', "points must be"),
    ('{"points": "x"', "not a JSON file"),
    ("[1, 2]", "expected an object"),
])
def test_bad_curve_files_name_the_file_and_the_field(tmp_path, content, field):
    path = tmp_path / "curve.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(field)) as info:
        load_curve(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="cannot read"):
        load_curve(tmp_path / "missing.json")


# ------------------------------------------------------------------------ CLI
def test_eval_html_writes_the_page_and_reports_its_size(capsys, tmp_path, colour_model, system_file):
    data = make_image_folder(tmp_path / "data", per_class=3)
    out = tmp_path / "reports" / "eval.html"
    code = main([str(a) for a in ["eval", system_file, data, "--model", colour_model, "--no-cache", "-q",
                                  "--html", out, "--max-examples", "2", "--format", "json"]])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(stdout)
    assert payload["html"] == {"path": str(out), "bytes": out.stat().st_size, "examples_shown": 4, "curve": False}
    assert payload["methods"]["cot"]["acc1"] == 0.5
    text = "".join(Page(out.read_text(encoding="utf-8")).text)
    assert "cot: 6 of 12 misclassified, showing 2" in text and "examples/" not in text


def test_report_verb_embeds_the_curve_and_prints_where_it_wrote(capsys, tmp_path, colour_model, system_file):
    data = make_image_folder(tmp_path / "data", per_class=2)
    curve = tmp_path / "curve.json"
    assert main([str(a) for a in ["curve", system_file, data, "--model", colour_model, "--no-cache", "-q", "--output", curve, "--no-plot"]]) == 0
    capsys.readouterr()
    out = tmp_path / "r.html"
    code = main([str(a) for a in ["report", system_file, data, "--model", colour_model, "--no-cache", "-q", "--output", out,
                                  "--curve", curve, "--title", "Colours & <things>"]])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {out} ({out.stat().st_size:,} bytes" in stdout and "acc1" in stdout
    page = Page(out.read_text(encoding="utf-8"))
    assert "Colours & <things>" in "".join(page.text) and any(a.get("id") == "curve" for _, a in page.tags)


@pytest.mark.parametrize("verb, extra, message", [
    ("eval", ["--curve", "c.json"], "--curve: only used with --html"),
    ("eval", ["--max-examples", "3"], "--max-examples: only used with --html"),
    ("eval", ["--html", "r.txt"], "name it with .html"),
    ("report", ["--output", "r.json"], "name it with .html"),
    ("report", ["--curve", "missing.json"], "cannot read"),
    ("report", ["--max-examples", "-1"], "--max-examples"),
    ("report", ["--thumb-size", "4"], "--thumb-size"),
])
def test_bad_report_options_exit_2(capsys, tmp_path, colour_model, system_file, verb, extra, message):
    data = make_image_folder(tmp_path / "data", per_class=1)
    code = main([str(a) for a in [verb, system_file, data, "--model", colour_model, "--no-cache", "-q", *extra]])
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.html"))


def test_several_models_get_a_section_each_and_share_thumbnails(capsys, tmp_path, colour_model, system_file):
    data = make_image_folder(tmp_path / "data", per_class=2)
    out = tmp_path / "two.html"
    code = main([str(a) for a in ["eval", system_file, data, "--model", colour_model, "--model", "test:other", "--no-cache", "-q",
                                  "--html", out, "--format", "json"]])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert [m["model"] for m in json.loads(stdout)["models"]] == ["test:colour", "test:other"]
    page_text = out.read_text(encoding="utf-8")
    headings = re.findall(r'<h2 id="m\d">Model ([^<]*)</h2>', page_text)
    assert headings == ["test:colour", "test:other"]
    uris = re.findall(r"url\((data:image/[^)]*)\)", page_text)
    cards = page_text.count('<article class="card">')
    assert cards == 12 and page_text.count('class="thumb t') == cards  # per model: cot 4 (yellow and green), hybrid 2
    assert len(uris) == len(set(uris)) == 4  # the 4 distinct inputs, each embedded once for both models

"""The Python API: scikit-learn style predict / predict_proba / explain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cotembed import CoTClassifier, EmbeddingCache, InputError, System
from support import COLOUR_SYSTEM, COLOURS, ColourEncoder, make_image


@pytest.fixture
def system() -> System:
    return System.from_dict(COLOUR_SYSTEM)


def test_predict_paths_and_pil_images(tmp_path, system):
    paths = [make_image(tmp_path / f"{c}.png", c) for c in COLOURS]
    clf = CoTClassifier(system, ColourEncoder())
    assert clf.predict(paths) == [f"{c}-thing" for c in COLOURS]
    assert clf.predict([Image.new("RGB", (10, 10), COLOURS["blue"])]) == ["blue-thing"]
    assert list(clf.classes_) == [f"{c}-thing" for c in COLOURS]


def test_predict_proba_rows_sum_to_one_and_agree_with_predict(tmp_path, system):
    paths = [make_image(tmp_path / f"{c}.png", c) for c in COLOURS]
    for method in ("cot", "baseline", "hybrid"):
        clf = CoTClassifier(system, ColourEncoder(), method=method)
        proba = clf.predict_proba(paths)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert [clf.classes_[i] for i in proba.argmax(axis=1)] == clf.predict(paths)


def test_temperature_precedence(system):
    enc = ColourEncoder()
    assert CoTClassifier(system, enc).temperature == 50.0  # the model's logit scale
    assert CoTClassifier(System.from_dict({**COLOUR_SYSTEM, "temperature": 12}), enc).temperature == 12.0
    assert CoTClassifier(system, enc, temperature=3.0).temperature == 3.0
    enc.logit_scale = None
    assert CoTClassifier(system, enc).temperature == 100.0


def test_prompts_embedded_once_through_cache(tmp_path, system):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    enc = ColourEncoder()
    CoTClassifier(system, enc, cache=cache).predict([Image.new("RGB", (4, 4), (200, 10, 10))])
    assert enc.texts_encoded == 4  # cot needs only the Q=4 option prompts
    CoTClassifier(system, enc, cache=cache, method="hybrid").predict([Image.new("RGB", (4, 4), (200, 10, 10))])
    assert enc.texts_encoded == 8  # hybrid adds the N=4 class-name prompts, nothing twice
    enc2 = ColourEncoder()
    CoTClassifier(system, enc2, cache=cache, method="hybrid").predict([Image.new("RGB", (4, 4), (200, 10, 10))])
    assert enc2.texts_encoded == 0 and enc2.images_encoded == 0


def test_explain_contributions_sum_to_score(tmp_path, system):
    clf = CoTClassifier(system, ColourEncoder(), method="hybrid", hybrid_weight=0.5)
    exp = clf.explain(make_image(tmp_path / "g.png", "green"), top_k=2)
    assert exp.prediction == "green-thing" and len(exp.top) == 2
    for evidence in exp.top:
        assert sum(evidence.contributions.values()) == pytest.approx(evidence.score, rel=1e-5)
    assert exp.questions[0].answer == "green"
    assert exp.to_dict()["system_hash"] == system.hash


def test_bad_arguments_are_input_errors(tmp_path, system):
    with pytest.raises(InputError, match="unknown method"):
        CoTClassifier(system, ColourEncoder(), method="vote")  # type: ignore[arg-type]
    clf = CoTClassifier(system, ColourEncoder())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png: cannot decode image"):
        clf.predict([bad])


def test_explanation_parts_add_up_to_the_score_for_every_method_that_has_them(tmp_path, system):
    from cotembed.scoring import method_class, method_names

    image = make_image(tmp_path / "r.png", "red")
    split = {"cot", "hybrid", "cot-log", "adaptive"}
    for method in method_names():
        if method_class(method).uses_examples:
            continue  # fitted on examples first: tests/test_examples.py explains them
        exp = CoTClassifier(system, ColourEncoder(), method=method).explain(image, top_k=3)
        assert exp.method == method
        assert all(bool(e.contributions) for e in exp.top) == (method in split), method
        for evidence in exp.top:
            if evidence.contributions:
                assert sum(evidence.contributions.values()) == pytest.approx(evidence.score, rel=1e-4, abs=1e-5), method

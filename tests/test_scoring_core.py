"""The scoring core: method registry, Scorer on cached embeddings, PromptBank, EmbeddingSet."""

from __future__ import annotations

import numpy as np
import pytest

from cotembed import CoTClassifier, EmbeddingCache, InputError, System, evaluate
from cotembed._embeddings import EmbeddingSet, PromptBank
from cotembed.scoring import (
    METHODS,
    Param,
    Scorer,
    ScoringConfig,
    ScoringMethod,
    get_method,
    method_names,
    parse_methods,
    register_method,
    registered_method,
)
from support import COLOUR_SYSTEM, COLOURS, ColourEncoder, make_image, make_image_folder


@pytest.fixture
def system() -> System:
    return System.from_dict(COLOUR_SYSTEM)


def test_unknown_method_names_the_valid_ones(system):
    clf = CoTClassifier(system, ColourEncoder())
    with pytest.raises(InputError, match=r"unknown method 'vote'.*baseline, cot, hybrid"):
        clf.scores_from_embeddings(np.ones((1, 8), dtype=np.float32), method="vote")
    with pytest.raises(InputError, match="unknown methods 'vote', 'magic'"):
        parse_methods("cot, vote, magic")
    assert parse_methods("cot, baseline, cot") == ("cot", "baseline")


def test_prompt_counts_come_from_each_methods_prompt_sets(system):
    compiled = system.compile()
    config = ScoringConfig(temperature=10.0)
    used = {name: get_method(name).prompts_used(compiled, config) for name in ("baseline", "cot", "hybrid")}
    assert used == {"baseline": 4, "cot": 4, "hybrid": 8}


class Loudest(ScoringMethod):
    name = "loudest-name"
    description = "test method: the most similar class name, raised to a power"
    needs = ("names",)
    parameters = (Param("power", "int", 2, low=1, high=9, help="exponent"),)

    def score(self, batch):
        return batch["names"] ** self.params["power"]


def test_a_new_method_is_one_scoped_registry_entry(system):
    with registered_method("loudest-name", Loudest):
        assert "loudest-name" in method_names() and METHODS["loudest-name"] == f"{__name__}:Loudest"
        clf = CoTClassifier(system, ColourEncoder())
        x = ColourEncoder().encode_texts(["red"])
        assert clf.scores_from_embeddings(x, method="loudest-name").argmax() == 0
        assert get_method("loudest-name", power=3).params == {"power": 3}
        with pytest.raises(ValueError, match="already registered"):
            register_method("loudest-name", Loudest)
    assert "loudest-name" not in method_names()
    with pytest.raises(InputError, match="unknown method 'loudest-name'"):
        get_method("loudest-name")


def test_registry_holds_import_strings_and_imports_nothing_up_front():
    import subprocess
    import sys

    assert all(isinstance(target, str) and ":" in target for target in METHODS.values())
    code = "import sys, cotembed.scoring; print('cotembed.scoring._adaptive' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_methods_are_configured_objects_with_declared_parameters():
    method = get_method("adaptive", confidence=0.9, max_questions=2)
    assert method.params["confidence"] == 0.9 and method.params["max_questions"] == 2
    assert get_method("adaptive").params["confidence"] != 0.9  # the default is untouched
    with pytest.raises(InputError, match=r"did you mean 'confidence'.*accepts: confidence, max_questions"):
        get_method("adaptive", confidance=0.9)
    with pytest.raises(InputError, match=r"confidence must be a finite number in \(0, 1\]"):
        get_method("adaptive", confidence=1.5)
    with pytest.raises(InputError, match="did you mean 'templates'"):
        ScoringConfig(10.0, method_options={"templtes": ["{}"]})
    assert ScoringConfig(10.0, method_options={"adaptive_confidence": 0.8}).method("adaptive").params["confidence"] == 0.8


def test_no_caller_branches_on_a_method_name():
    """CLI verbs and the service reach methods through the protocol only."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "cotembed"
    for path in (root / "cli" / "_classify.py", root / "serve" / "_registry.py", root / "evaluation" / "_evaluate.py", root / "_classifier.py"):
        text = path.read_text(encoding="utf-8")
        assert '== "adaptive"' not in text and "SeededMethod" not in text and "cotembed._adaptive" not in text, path


@pytest.mark.parametrize("name", method_names())
def test_every_registered_method_passes_check_method(name):
    from cotembed.testing import check_method

    check_method(name)


def test_scoring_config_rejects_non_finite_values():
    for bad in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(InputError, match="temperature"):
            ScoringConfig(temperature=bad)
    with pytest.raises(InputError, match="hybrid weight"):
        ScoringConfig(temperature=1.0, hybrid_weight=float("inf"))


def test_scorer_chunking_does_not_change_scores(system):
    rng = np.random.default_rng(0)
    enc = ColourEncoder()
    bank = PromptBank(enc)
    scorer = Scorer.build(system, bank.embed, ScoringConfig(temperature=30.0), ("cot", "hybrid", "baseline"))
    x = rng.normal(size=(301, 8)).astype(np.float32)
    for method in ("cot", "hybrid", "baseline"):
        whole = scorer.scores(x, method, chunk=1000)
        np.testing.assert_allclose(scorer.scores(x, method, chunk=7), whole, rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="built for"):
        Scorer.build(system, bank.embed, ScoringConfig(temperature=30.0), ("cot",)).scores(x, "hybrid")


def test_prompt_bank_encodes_only_unseen_prompts_after_an_edit(tmp_path, system):
    enc = ColourEncoder()
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    bank = PromptBank(enc, cache)
    Scorer.build(system, bank.embed, ScoringConfig(temperature=10.0), ("hybrid",))
    assert bank.n_encoded == 8
    edited = System.from_dict({**COLOUR_SYSTEM, "groups": {"colour": {"prompt": "a photo of something {}", "options": ["red", "green", "blue", "golden yellow"]}},
                               "rules": {f"{c}-thing": {"colour": i} for i, c in enumerate(COLOURS)}})
    Scorer.build(edited, bank.embed, ScoringConfig(temperature=10.0), ("cot",))
    assert bank.n_encoded == 9  # one new option prompt
    fresh = PromptBank(ColourEncoder(), cache)
    fresh.embed(["a photo of something golden yellow"])
    assert fresh.n_encoded == 0  # read back from the cache


def test_evaluate_on_an_embedding_set_needs_no_model(tmp_path, system):
    data = make_image_folder(tmp_path / "data", per_class=2)
    from cotembed.data import collect_samples

    enc = ColourEncoder()
    embedded = EmbeddingSet.from_samples(collect_samples([data]), enc)
    assert len(embedded) == 8 and embedded.n_encoded == 8
    bank = PromptBank(enc)
    scorer = Scorer.build(system, bank.embed, ScoringConfig(temperature=50.0), ("baseline", "cot"))
    images_before = enc.images_encoded
    report = evaluate(scorer, embedded)
    assert enc.images_encoded == images_before
    cot = report.methods["cot"]
    assert cot.acc1 == 1.0 and cot.acc5 == 1.0 and cot.mean_per_class_recall == 1.0
    assert cot.confusion.trace() == 8
    assert 0 <= cot.ece < 0.5


def test_metrics_on_a_known_confusion(tmp_path):
    """Two classes with identical rules: CoT cannot separate them, so half of those are wrong."""
    spec = {
        "groups": {"colour": {"prompt": "a photo of something {}", "options": ["red", "green", "blue"]}},
        "rules": {"red-a": {"colour": "red"}, "red-b": {"colour": "red"}, "green-thing": {"colour": "green"}, "blue-thing": {"colour": "blue"}},
    }
    system = System.from_dict(spec)
    enc = ColourEncoder()
    x = enc.encode_texts(["red", "red", "green", "blue"])
    data = EmbeddingSet(x, ["a", "b", "c", "d"], ["red-a", "red-b", "green-thing", "blue-thing"], enc.model_key)
    scorer = Scorer.build(system, PromptBank(enc).embed, ScoringConfig(temperature=50.0), ("cot",))
    result = evaluate(scorer, data).methods["cot"]
    assert result.acc1 == 0.75  # the tie goes to the first class, red-a
    assert result.acc5 == 1.0
    assert result.per_class_recall == {"red-a": 1.0, "red-b": 0.0, "green-thing": 1.0, "blue-thing": 1.0}
    assert result.top_confusions() == [{"true": "red-b", "predicted": "red-a", "count": 1}]


def test_classifier_modality_is_explicit(tmp_path, system):
    clf = CoTClassifier(system, ColourEncoder())
    with pytest.raises(InputError, match="texts=\\[...\\]"):
        clf.predict(["a red balloon"])
    assert clf.predict(texts=["a red balloon"]) == ["red-thing"]
    path = make_image(tmp_path / "b.png", "blue")
    assert clf.predict(images=[str(path)]) == ["blue-thing"]
    assert clf.predict([path]) == ["blue-thing"]  # a Path is unambiguous

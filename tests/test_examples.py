"""Few-shot examples and unlabelled batches from the CLI and the Python API: critters splits (support
and test drawn with different seeds), creatures-text with MiniLM, the leave-one-out weight never
reading test labels, the transductive fallback, and bad input with its exit codes."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.support import run_cli

from cotembed._classifier import CoTClassifier
from cotembed._embeddings import EmbeddingSet
from cotembed.data import collect_samples
from cotembed.errors import InputError
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring._transductive import TransductiveRefiner
from cotembed.scoring._transductive_method import Transductive
from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"
SYSTEM = CRITTERS / "system.yaml"
CREATURES = ROOT / "examples" / "creatures-text"


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A hard test split (3 per species, seed 1001) and a support split (2 per species, seed 4242), one shared cache."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("fewshot")
    generate_split(CRITTERS / "species.yaml", root / "test", 3, seed=1001, difficulty="hard", progress=False)
    generate_split(CRITTERS / "species.yaml", root / "support", 2, seed=4242, difficulty="hard", progress=False)
    return {"test": root / "test", "support": root / "support", "cache": root / "cache.sqlite", "root": root}


def cli(capsys: Any, splits: dict[str, Path], *argv: Any) -> tuple[int, Any, str]:
    code, out, err = run_cli(capsys, *argv, "--model", "critters", "--cache", splits["cache"], "-q", "--format", "json")
    return code, json.loads(out) if out.strip() else None, err


def manifest(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("path", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def folder_rows(folder: Path) -> list[tuple[str, str]]:
    return [(str(p), p.parent.name) for p in sorted(folder.rglob("*.png"))]


# ------------------------------------------------------------------------ critters
def test_eval_with_examples_compares_the_few_shot_methods_and_records_their_source(capsys: Any, splits: dict[str, Path]) -> None:
    code, payload, _ = cli(capsys, splits, "eval", SYSTEM, splits["test"], "--examples", splits["support"])
    assert code == 0
    methods = payload["methods"]
    assert {"baseline", "cot", "hybrid", "prototype", "gda", "fused"} <= set(methods)
    options = payload["method_options"]
    assert options["examples"]["count"] == 56 and options["examples"]["source"] == [str(splits["support"])]
    assert options["fused_examples"]["weight_source"].startswith("leave-one-out on 56")
    assert options["transductive"] is False
    # The examples carry what the system lacks: fused is at least as good as the zero-shot prior here.
    assert methods["fused"]["acc1"] >= methods["cot"]["acc1"]


def test_the_fusion_weight_and_predictions_never_read_the_test_labels(capsys: Any, splits: dict[str, Path]) -> None:
    rows = folder_rows(splits["test"])
    true = manifest(splits["root"] / "true.csv", rows)
    labels = [label for _, label in rows]
    random.Random(0).shuffle(labels)
    shuffled = manifest(splits["root"] / "shuffled.csv", [(p, lbl) for (p, _), lbl in zip(rows, labels)])
    runs = []
    for data in (true, shuffled):
        code, payload, _ = cli(capsys, splits, "classify", SYSTEM, data, "--allow-outside-paths", "--method", "fused",
                               "--examples", splits["support"])
        assert code == 0
        runs.append(payload)
    assert runs[0]["method_options"] == runs[1]["method_options"]
    assert [p["top"] for p in runs[0]["predictions"]] == [p["top"] for p in runs[1]["predictions"]]
    # Through the Python API: evaluating against either set of labels leaves the fitted weight alone.
    from cotembed.encoders import load_encoder

    clf = CoTClassifier(System.load(SYSTEM), load_encoder("critters"), method="fused", examples=str(splits["support"]))
    weights = set()
    for data in (true, shuffled):
        samples = collect_samples([data], allow_outside=True)
        report = clf.evaluate(samples, ("fused",))
        weights.add(report.method_options["fused_examples"]["weight"])
    assert len(weights) == 1


def test_transductive_refines_a_batch_and_falls_back_with_a_note_when_it_is_small(capsys: Any, splits: dict[str, Path]) -> None:
    code, payload, _ = cli(capsys, splits, "eval", SYSTEM, splits["test"], "--methods", "cot", "--transductive")
    assert code == 0
    assert payload["method_options"]["cot_transductive"]["refined"] is True and payload["method_options"]["transductive"]
    two = sorted(splits["test"].rglob("*.png"))[:2]
    code, plain, _ = cli(capsys, splits, "classify", SYSTEM, *two)
    code_t, refined, err = cli(capsys, splits, "classify", SYSTEM, *two, "--transductive")
    assert code == code_t == 0
    assert refined["transductive"] is True and "batch too small to refine" in refined["notes"][0]
    assert "batch too small to refine" in err
    for kept, zero_shot in zip(refined["predictions"], plain["predictions"]):  # zero-shot kept
        assert [t["class"] for t in kept["top"]] == [t["class"] for t in zero_shot["top"]]
        assert [t["probability"] for t in kept["top"]] == pytest.approx([t["probability"] for t in zero_shot["top"]], abs=1e-6)


def test_bad_examples_exit_2_naming_the_problem(capsys: Any, splits: dict[str, Path]) -> None:
    test = splits["test"]
    rows = folder_rows(splits["support"])
    unknown = manifest(splits["root"] / "unknown.csv", [*rows, (rows[0][0], "Dragon"), (rows[1][0], "Griffin")])
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--method", "fused", "--examples", unknown, "--allow-outside-paths")
    assert code == 2 and "'Dragon'" in err and "'Griffin'" in err and "--examples" in err
    code, payload, err = cli(capsys, splits, "classify", SYSTEM, test, "--method", "fused", "--examples", unknown,
                             "--allow-outside-paths", "--ignore-unknown")
    assert code == 0 and payload["examples"]["skipped_unknown_labels"] and "skipped (--ignore-unknown)" in err
    nothing = manifest(splits["root"] / "nothing.csv", [(rows[0][0], "Dragon")])
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--method", "fused", "--examples", nothing,
                       "--allow-outside-paths", "--ignore-unknown")
    assert code == 2 and "no example" in err
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--method", "fused")
    assert code == 2 and "needs labelled examples" in err
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--examples", splits["support"])
    assert code == 2 and "only for the few-shot methods" in err
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--shrinkage", "0.5")
    assert code == 2 and "--shrinkage" in err
    code, _, err = cli(capsys, splits, "classify", SYSTEM, test, "--method", "fused", "--examples", splits["support"],
                       "--prior", "telepathy")
    assert code == 2 and "prior" in err and "cot, hybrid, baseline" in err


def test_examples_that_are_test_inputs_are_warned_as_leakage(capsys: Any, splits: dict[str, Path]) -> None:
    leaky = manifest(splits["root"] / "leaky.csv", [*folder_rows(splits["support"]), *folder_rows(splits["test"])[:3]])
    code, payload, err = cli(capsys, splits, "classify", SYSTEM, splits["test"], "--method", "prototype", "--examples", leaky,
                             "--allow-outside-paths")
    assert code == 0 and "leakage" in err
    assert len(payload["examples"]["same_content_as_inputs"]) == 3


def test_an_embedding_set_of_another_model_is_refused(capsys: Any, splits: dict[str, Path]) -> None:
    other = EmbeddingSet(np.ones((2, 4), dtype=np.float32), ["a", "b"], ["Brazzik", "Cruvex"], "minilm:0000")
    other.save(str(splits["root"] / "other.npz"))
    code, _, err = cli(capsys, splits, "classify", SYSTEM, splits["test"], "--method", "gda",
                       "--examples", splits["root"] / "other.npz")
    assert code == 2 and "embedded with model 'minilm:0000'" in err


def test_an_embedding_set_of_the_same_model_fits_like_the_images(splits: dict[str, Path]) -> None:
    from cotembed.encoders import load_encoder

    encoder = load_encoder("critters")
    system = System.load(SYSTEM)
    support = EmbeddingSet.from_samples(collect_samples([splits["support"]]), encoder)
    samples = collect_samples([splits["test"]])[:20]
    from_images = CoTClassifier(system, encoder, method="fused", examples=[str(splits["support"])])
    from_set = CoTClassifier(system, encoder, method="fused", examples=support)
    np.testing.assert_allclose(from_set.predict_proba(images=[s.path for s in samples]),
                               from_images.predict_proba(images=[s.path for s in samples]), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="embedded with model"):
        CoTClassifier(system, encoder, method="fused", examples=EmbeddingSet(support.embeddings, support.sources,
                                                                              support.labels, "other:1"))


def test_explain_with_examples_shows_the_few_shot_prediction(capsys: Any, splits: dict[str, Path]) -> None:
    image = sorted(splits["test"].rglob("*.png"))[0]
    code, payload, _ = cli(capsys, splits, "explain", SYSTEM, image, "--method", "fused", "--examples", splits["support"])
    assert code == 0 and payload["method"] == "fused" and payload["top"][0]["class"] == payload["prediction"]


# ------------------------------------------------------------------- creatures-text
def test_creatures_text_with_minilm_examples(capsys: Any, tmp_path: Path) -> None:
    with (CREATURES / "test.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    seen: dict[str, int] = {}
    support, test = [], []
    for row in rows:  # the first 2 sightings of each species are the examples, the rest the test
        seen[row["label"]] = seen.get(row["label"], 0) + 1
        (support if seen[row["label"]] <= 2 else test).append((row["text"], row["label"]))
    s = manifest(tmp_path / "support.csv", support, ("text", "label"))
    t = manifest(tmp_path / "test.csv", test, ("text", "label"))
    code, out, err = run_cli(capsys, "eval", CREATURES / "system.yaml", t, "--model", "minilm", "--examples", s,
                             "--methods", "cot,prototype,fused", "--transductive", "--cache", tmp_path / "c.sqlite",
                             "-q", "--format", "json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["method_options"]["examples"]["count"] == 2 * len(seen)
    assert all(payload["methods"][m]["total"] == len(test) for m in ("cot", "prototype", "fused"))
    assert payload["method_options"]["cot_transductive"]["on"] is True


# ------------------------------------------------------------------------- scoring
def test_the_transductive_wrapper_scores_do_not_depend_on_chunking_and_match_the_refiner() -> None:
    from cotembed.testing import CHECK_SYSTEM, _hashed_vectors

    system = System.from_dict(CHECK_SYSTEM)
    config = ScoringConfig(10.0)
    scorer = Scorer.build(system, _hashed_vectors, config, ("cot",))
    x = np.random.default_rng(0).normal(size=(60, 24)).astype(np.float32)
    refined = scorer.with_methods([Transductive(scorer.method("cot"))]).prepare(x)
    method = refined.method("cot")
    assert isinstance(method, Transductive) and method.refined
    whole = refined.scores(x, "cot")
    np.testing.assert_allclose(refined.scores(x, "cot", chunk=7), whole, rtol=1e-5, atol=1e-6)
    p0 = scorer.method("cot").probabilities(scorer.scores(x, "cot"), config)  # the sum-normalised posterior it anchors on
    expected = TransductiveRefiner().fit(x, p0).predict_proba()
    np.testing.assert_allclose(refined.probabilities(x, "cot"), expected, rtol=1e-4, atol=1e-6)


# -------------------------------------------------------------------------- curve
def test_curve_shots_draws_examples_per_class_from_the_pool(capsys: Any, splits: dict[str, Path]) -> None:
    out = splits["root"] / "shots.json"
    code, payload, _ = cli(capsys, splits, "curve", SYSTEM, splits["test"], "--shots", "1,2", "--draws", "3",
                           "--examples", splits["support"], "--output", out)
    assert code == 0 and out.exists() and out.with_suffix(".png").stat().st_size > 0
    assert payload["shots"] == [1, 2] and payload["pool"] == 56
    assert set(payload["lines"]) == {"prototype", "gda", "fused", "induce"} and {"cot", "cot+transductive"} <= set(payload["reference"])
    one, two = payload["lines"]["prototype"]
    assert one["draws"] == 3 and one["std"] > 0  # different draws of one example per class
    assert two["std"] == 0  # the pool has exactly 2 per class: every draw is the whole pool
    assert [p["draws"] for p in payload["lines"]["induce"]] == [3, 3]
    assert 0 <= payload["lines"]["induce"][0]["mean"] <= 1
    code, _, err = cli(capsys, splits, "curve", SYSTEM, splits["test"], "--shots", "1", "--output", out)
    assert code == 2 and "needs --examples" in err


def test_draw_takes_k_per_class_and_all_of_a_smaller_class() -> None:
    from cotembed._shots import draw

    labels = np.array([0, 0, 0, 1, 2, 2])
    rows = draw(labels, 3, 2, np.random.default_rng(0))
    assert np.bincount(labels[rows], minlength=3).tolist() == [2, 1, 2]


def test_the_transductive_wrapper_refines_each_seed_of_a_seeded_method_on_its_own() -> None:
    from cotembed.testing import CHECK_SYSTEM, _hashed_vectors

    system = System.from_dict(CHECK_SYSTEM)
    config = ScoringConfig(10.0)
    scorer = Scorer.build(system, _hashed_vectors, config, ("random-control",))
    x = np.random.default_rng(1).normal(size=(60, 24)).astype(np.float32)
    inner = scorer.method("random-control")
    seeds = inner.seeds()
    assert len(seeds) >= 2
    refined = scorer.with_methods([Transductive(inner)]).prepare(x)
    method = refined.method("random-control")
    assert isinstance(method, Transductive) and method.seeds() == seeds
    batch = refined.batch(x)
    runs = {s: method.score_seed(batch, s) for s in seeds}
    assert not np.allclose(runs[seeds[0]], runs[seeds[1]])  # not one refined run repeated
    for s in seeds:
        p0 = inner.probabilities(inner.score_seed(scorer.batch(x), s), config)
        expected = TransductiveRefiner().fit(x, p0).predict_proba()
        np.testing.assert_allclose(method.probabilities(runs[s], config), expected, rtol=1e-4, atol=1e-6)

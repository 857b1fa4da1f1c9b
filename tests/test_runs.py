"""Runs as library calls (cotembed.runs): requests built in Python, without argparse, give results
that carry their provenance, and whose ``to_dict()`` is exactly the JSON the CLI prints for the same
inputs. Critters splits are small and generated; one cache is shared by the module."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from tests.support import run_cli

from cotembed import runs
from cotembed.errors import InputError
from cotembed.runs import (
    CacheOptions,
    CalibrateRequest,
    ClassifyRequest,
    DecisionOptions,
    EmbedRequest,
    EvalRequest,
    ExamplesOptions,
    ExplainRequest,
    MethodSettings,
    ModelOptions,
    calibrate,
    classify,
    embed,
    evaluate_multilabel,
    evaluate_run,
    explain,
)
from cotembed.system import System

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"
SYSTEM = CRITTERS / "system.yaml"


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test split (1 per species, seed 1001), a labelled calibration split (2 per species, seed 4242), one cache."""
    from cotembed_critters.species import generate_split

    root = tmp_path_factory.mktemp("runs")
    generate_split(CRITTERS / "species.yaml", root / "test", 1, seed=1001, difficulty="hard", progress=False)
    generate_split(CRITTERS / "species.yaml", root / "support", 2, seed=4242, difficulty="hard", progress=False)
    return {"test": root / "test", "support": root / "support", "cache": root / "cache.sqlite"}


def model(splits: dict[str, Path]) -> ModelOptions:
    return ModelOptions("critters", quiet=True, cache=CacheOptions(str(splits["cache"])))


def cli_json(capsys: Any, splits: dict[str, Path], *argv: Any) -> Any:
    code, out, err = run_cli(capsys, *argv, "--model", "critters", "--cache", splits["cache"], "-q", "--format", "json")
    assert out.strip(), err
    return json.loads(out)


def test_classify_result_carries_its_provenance_and_is_the_cli_json(capsys, splits):
    request = ClassifyRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), top_k=2)
    result = classify(request)
    system = System.load(SYSTEM)
    prov = result.provenance
    assert (prov.system.name, prov.system.path, prov.system.hash) == (system.name, str(SYSTEM), system.fingerprint)
    assert prov.model.startswith("critters") and prov.method == "cot" and prov.probabilities == "calibrated"
    assert prov.transductive is False and prov.examples is None
    assert len(result.predictions) == len(system.class_names) and not result.errors and result.ok
    assert all(len(p.top) == 2 for p in result.predictions)
    assert sum(p.prediction == p.label for p in result.predictions) >= len(result.predictions) // 2
    assert result.to_dict() == cli_json(capsys, splits, "classify", SYSTEM, splits["test"], "--top-k", "2")


def test_classify_records_method_parameters_and_decisions(capsys, splits):
    request = ClassifyRequest(str(SYSTEM), (str(splits["test"]),), model=dataclasses.replace(model(splits), temperature=50.0),
                              method="adaptive", settings=MethodSettings({"adaptive_confidence": 0.9}),
                              decisions=DecisionOptions(probabilities="normalised", abstain=-0.5))
    result = classify(request)
    prov = result.provenance
    assert prov.method == "adaptive" and prov.temperature == 50.0 and prov.probabilities == "normalised"
    assert prov.method_options["adaptive_confidence"] == 0.9
    assert prov.decisions["abstain"]["threshold"] == -0.5
    assert any(p.abstained for p in result.predictions) or all(p.fit_score >= -0.5 for p in result.predictions)
    expected = cli_json(capsys, splits, "classify", SYSTEM, splits["test"], "--adaptive", "--confidence", "0.9",
                        "--temperature", "50", "--probabilities", "normalised", "--abstain", "-0.5")
    assert result.to_dict() == expected


def test_classify_with_examples_and_transduction_records_their_source(capsys, splits):
    request = ClassifyRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), method="prototype",
                              examples=ExamplesOptions((str(splits["support"]),), transductive=True))
    result = classify(request)
    prov = result.provenance
    assert prov.transductive is True
    assert prov.examples is not None and prov.examples["count"] == 2 * len(System.load(SYSTEM).class_names)
    assert prov.examples["source"] == [str(splits["support"])]
    expected = cli_json(capsys, splits, "classify", SYSTEM, splits["test"], "--method", "prototype",
                        "--examples", splits["support"], "--transductive")
    assert result.to_dict() == expected


def test_literal_texts_are_their_own_names(splits):
    result = classify(ClassifyRequest(str(CRITTERS / "system.yaml"), ("a red bird with spikes",), text=True,
                                      model=dataclasses.replace(model(splits), spec="critters")))
    assert [p.source for p in result.predictions] == ["a red bird with spikes"]


def test_decision_data_with_unknown_labels_is_refused_unless_ignored(splits, tmp_path):
    import shutil

    data = tmp_path / "abstain"
    shutil.copytree(splits["test"], data)
    (data / "Not a species").mkdir()
    shutil.copy(next(splits["test"].rglob("*.png")), data / "Not a species" / "x.png")
    request = ClassifyRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits),
                              decisions=DecisionOptions(abstain_target="coverage=0.9", abstain_data=(str(data),)))
    with pytest.raises(InputError, match="--abstain-data"):
        classify(request)
    kept = classify(dataclasses.replace(request, examples=ExamplesOptions(ignore_unknown=True)))
    assert kept.provenance.decisions["abstain"]["chosen_by"]


@pytest.mark.parametrize(("changes", "message"), [
    ({"inputs": ()}, "classify: give INPUTS or --embeddings DIR"),
    ({"embeddings": "somewhere"}, "give INPUTS or --embeddings DIR, not both"),
    ({"decisions": DecisionOptions(abstain_target="precision=0.9")}, "--abstain-target needs --abstain-data"),
    ({"decisions": DecisionOptions(multi_label=True)}, "--multi-label needs --threshold T or --threshold-data DATA"),
    ({"settings": MethodSettings(calibrate=("x",))}, "--calibrate: only for methods that learn from data"),
    ({"method": "prototype"}, "method prototype needs labelled examples"),
])
def test_a_request_is_checked_as_the_command_line_is(tmp_path, changes, message):
    request = dataclasses.replace(ClassifyRequest(str(SYSTEM), (str(tmp_path),)), **changes)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        classify(request)


def test_requests_are_frozen_values():
    request = ClassifyRequest(str(SYSTEM), ("a.png",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.top_k = 5  # type: ignore[misc]
    assert request == ClassifyRequest(str(SYSTEM), ("a.png",)) and not hasattr(request, "__dict__")


# ------------------------------------------------------------------------ eval
def test_eval_reports_carry_their_provenance_and_are_the_cli_json(capsys, splits):
    request = EvalRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), methods=("baseline", "cot"),
                          settings=MethodSettings(), decisions=DecisionOptions(abstain=-1.0))
    result = evaluate_run(request)
    (report,) = result.reports
    system = System.load(SYSTEM)
    assert report.system["hash"] == system.fingerprint and report.system["path"] == str(SYSTEM)
    assert report.model.startswith("critters") and report.probabilities == "calibrated"
    assert list(report.methods) == ["baseline", "cot"] and result.methods == ("baseline", "cot")
    assert report.n_inputs == len(system.class_names) and result.ok
    assert set(report.extras["abstention"]) == {"baseline", "cot"}
    expected = cli_json(capsys, splits, "eval", SYSTEM, splits["test"], "--methods", "baseline,cot", "--abstain", "-1")
    assert result.to_dict() == expected


def test_eval_records_examples_calibration_data_and_seeds(capsys, splits):
    request = EvalRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), methods=("cot", "prototype", "adaptive"),
                          settings=MethodSettings(calibrate=(str(splits["support"]),)),
                          examples=ExamplesOptions((str(splits["support"]),)))
    result = evaluate_run(request)
    options = result.reports[0].method_options
    assert options["examples"]["count"] == 2 * len(System.load(SYSTEM).class_names)
    assert options["transductive"] is False
    assert options["adaptive_calibration_data"] == [str(splits["support"])]
    expected = cli_json(capsys, splits, "eval", SYSTEM, splits["test"], "--methods", "cot,prototype,adaptive",
                        "--calibrate", splits["support"], "--examples", splits["support"])
    assert result.to_dict() == expected


def test_multilabel_eval_is_the_cli_json(capsys, splits):
    request = EvalRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), methods=("cot",),
                          decisions=DecisionOptions(multi_label=True, threshold=0.5))
    result = evaluate_multilabel(request)
    assert result.provenance.decisions["multi_label"]["thresholds"][0] == 0.5
    assert result.n_inputs == len(System.load(SYSTEM).class_names)
    expected = cli_json(capsys, splits, "eval", SYSTEM, splits["test"], "--methods", "cot", "--multi-label", "--threshold", "0.5")
    assert result.to_dict() == expected


def test_multilabel_outputs_come_from_the_library_call(splits, tmp_path):
    """The --output rows, the per-class figure and the page of ``eval --multi-label`` are made from
    the result of the library call alone; single-label decisions are refused before any file is read."""
    from cotembed.reporting._multilabel import plot_multilabel, render_multilabel_report

    request = EvalRequest(str(SYSTEM), (str(splits["test"]),), model=model(splits), methods=("cot",), figures=True,
                          page=runs.PageOptions(), decisions=DecisionOptions(multi_label=True, threshold_data=(str(splits["support"]),)))
    result = evaluate_multilabel(request)
    per_class = result.multi_label["per_class"]
    rows = result.rows()
    assert [r["class"] for r in rows] == list(per_class) == list(System.load(SYSTEM).class_names)
    for row in rows:
        assert (row["model"], row["system"]) == (result.provenance.model, result.provenance.system.hash)
        assert {k: row[k] for k in ("threshold", "precision", "recall", "f1", "ap")} == \
            {k: per_class[row["class"]].get(k) for k in ("threshold", "precision", "recall", "f1", "ap")}
    assert len({r["threshold"] for r in rows}) > 1  # one threshold per class, chosen on the support split
    page = render_multilabel_report(result.to_dict())
    assert f"{100 * result.multi_label['map']:.1f}%" in page and page.count("<tr><td>") == len(per_class)
    plot = plot_multilabel(result.multi_label, tmp_path / "ml.png", result.title)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for decisions, flag in ((DecisionOptions(multi_label=True, threshold=0.5, conformal=0.1, conformal_data=("x",)), "--conformal"),
                            (DecisionOptions(multi_label=True, threshold=0.5, abstain=-1.0), "--abstain")):
        with pytest.raises(InputError, match=f"--multi-label: {flag} not supported with it"):
            evaluate_multilabel(EvalRequest("missing.yaml", ("nowhere",), decisions=decisions))
    with pytest.raises(InputError, match="--multi-label: --open-set not supported"):
        evaluate_multilabel(dataclasses.replace(request, system="missing.yaml", open_set=3))


def test_eval_request_is_checked_before_any_file_is_read(tmp_path):
    with pytest.raises(InputError, match="--conformal-data needs --conformal"):
        evaluate_run(EvalRequest("missing.yaml", ("nowhere",), decisions=DecisionOptions(conformal_data=("x",))))
    with pytest.raises(InputError, match="--calibrate: only for methods that learn from data"):
        evaluate_run(EvalRequest("missing.yaml", ("nowhere",), methods=("cot",), settings=MethodSettings(calibrate=("x",))))


# ------------------------------------------------------------------------ explain
def test_explain_result_carries_its_provenance_and_is_the_cli_json(capsys, splits):
    image = sorted(splits["test"].rglob("*.png"))[0]
    request = ExplainRequest(str(SYSTEM), str(image), model=model(splits), method="adaptive",
                             settings=MethodSettings({"adaptive_confidence": 0.95}), top_k=3)
    result = explain(request)
    system = System.load(SYSTEM)
    assert result.provenance.system.hash == system.fingerprint == result.explanation.system_hash
    assert result.provenance.method == result.explanation.method == "adaptive"
    assert result.provenance.method_options["adaptive_confidence"] == 0.95
    assert result.provenance.model == result.explanation.model and len(result.explanation.top) == 3
    expected = cli_json(capsys, splits, "explain", SYSTEM, image, "--adaptive", "--confidence", "0.95", "--top-k", "3")
    assert result.to_dict() == expected


def test_explain_request_is_checked_before_any_file_is_read():
    with pytest.raises(InputError, match="method fused needs labelled examples"):
        explain(ExplainRequest("missing.yaml", "a.png", method="fused"))


# ------------------------------------------------------------------------ calibrate
def test_calibrate_writes_the_system_and_its_result_is_the_cli_json(capsys, splits, tmp_path):
    out = tmp_path / "calibrated.yaml"
    request = CalibrateRequest(str(SYSTEM), str(out), (str(splits["support"]),), eval=(str(splits["test"]),),
                               per_group="no", model=model(splits), diagrams=True)
    result = calibrate(request)
    written = System.load(out)
    assert result.out == {"path": str(out), "hash": written.fingerprint} and written == result.calibrated
    assert result.system["hash"] == System.load(SYSTEM).fingerprint and result.model.startswith("critters")
    assert written.temperature == result.fit["temperature"] and result.fit["per_group"] is False
    assert set(result.evaluation) == {"fit", "eval"} and result.diagrams is not None and result.ok
    again = tmp_path / "again.yaml"
    expected = cli_json(capsys, splits, "calibrate", SYSTEM, splits["support"], "--eval", splits["test"], "--per-group", "no",
                        "--out", again)
    assert expected["out"].pop("path") == str(again)
    payload = result.to_dict()
    payload["out"].pop("path")
    assert payload == expected


def test_calibrate_refuses_to_write_over_an_input(splits):
    request = CalibrateRequest(str(SYSTEM), str(splits["support"] / "x.yaml"), (str(splits["support"]),), model=model(splits))
    with pytest.raises(InputError, match="refusing to write over an input"):
        calibrate(request)


# ------------------------------------------------------------------------ embed
def test_embed_is_resumable_and_its_result_is_the_cli_json(capsys, splits, tmp_path):
    out = tmp_path / "support.parquet"
    request = EmbedRequest((str(splits["support"]),), str(out), model=model(splits))
    first = embed(request)
    n = 2 * len(System.load(SYSTEM).class_names)
    assert (first.inputs, first.written, first.skipped_existing, first.ok) == (n, n, 0, True)
    assert first.model.startswith("critters") and first.dim
    second = embed(request)
    assert (second.written, second.skipped_existing, second.dim) == (0, n, first.dim)
    code, stdout, _ = run_cli(capsys, "embed", splits["support"], "--out", out, "--model", "critters", "--cache",
                              splits["cache"], "-q", "--format", "json")
    assert code == 0 and second.to_dict() == json.loads(stdout)


def test_embed_supersedes_rows_of_an_older_decoding(splits, tmp_path):
    """Rows keyed by an older decoding (bare SHA-256 digests) are embedded again and replaced,
    one row per image and none lost; the default layout is binary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cotembed._parquet import part_files, read_info
    from cotembed.runs._embed import superseded_keys

    out = tmp_path / "test.parquet"
    request = EmbedRequest((str(splits["test"]),), str(out), model=model(splits))
    first = embed(request)
    assert first.superseded == 0 and first.written == first.inputs and read_info(out).vector_layout == "binary"
    keys = sorted(pq.read_table(part_files(out)).column("content_hash").to_pylist())
    for path in part_files(out):  # the same dataset as an older decoding keyed it
        part = pq.read_table(path)
        bare = pa.array([k.split(":", 1)[0] for k in part.column("content_hash").to_pylist()], type=pa.string())
        pq.write_table(part.set_column(part.schema.get_field_index("content_hash"), "content_hash", bare), path)
    again = embed(request)
    assert (again.skipped_existing, again.written, again.superseded) == (0, first.inputs, first.inputs)
    assert again.to_dict()["superseded"] == first.inputs
    assert sorted(pq.read_table(part_files(out)).column("content_hash").to_pylist()) == keys
    assert (embed(request).written, embed(request).superseded) == (0, 0)
    assert superseded_keys({"abc", "abc:d1", "abc:d2", "xyz"}, {"abc:d2"}) == {"abc", "abc:d1"}


def test_classify_embeddings_checks_a_named_model_even_the_default(colour_model, tmp_path):
    """With stored embeddings, a named model (model_given) is checked against the dataset, even the
    default model's name; an unnamed one is the dataset's own."""
    import yaml
    from tests.support import COLOUR_SYSTEM, make_image_folder

    from cotembed.encoders import DEFAULT_MODEL

    system = tmp_path / "system.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    out, cache = tmp_path / "emb", CacheOptions(str(tmp_path / "cache.sqlite"))
    embed(EmbedRequest((str(make_image_folder(tmp_path / "data", per_class=1)),), str(out),
                       model=ModelOptions(colour_model, quiet=True, cache=cache)))
    named = ClassifyRequest(str(system), embeddings=str(out), model=ModelOptions(DEFAULT_MODEL, quiet=True, cache=cache))
    with pytest.raises(InputError, match=f"{colour_model}.*{DEFAULT_MODEL}|{DEFAULT_MODEL}.*{colour_model}"):
        classify(named)
    result = classify(dataclasses.replace(named, model_given=False))
    assert result.ok and result.provenance.model == colour_model


def test_readme_runs_example_runs(splits, monkeypatch, capsys):
    """The README's example of the Python entry points runs as written (on a generated split)."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "cotembed.runs" in block]
    monkeypatch.setenv("COTEMBED_CACHE", str(splits["cache"]))
    monkeypatch.chdir(ROOT)
    exec(compile(code.replace(".cotembed-data/critters-easy", str(splits["test"])), "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[1] == System.load(SYSTEM).fingerprint and lines[0].split()[2] == "-1.0"
    assert lines[-1] == "['baseline', 'cot'] True"


# ------------------------------------------------------------------------ the public face
def _documented(doc: str) -> set[str]:
    """Names of a numpy-style ``Parameters`` section (``name : type`` or ``a, b : types`` lines)."""
    import re

    section = doc.split("Parameters\n----------\n", 1)[1]
    section = re.split(r"\n\s*(?:Returns|Raises|Examples)\n", section)[0]
    return {n.strip() for m in re.finditer(r"^([\w, ]+) :", section, re.MULTILINE) for n in m.group(1).split(",")}


@pytest.mark.parametrize("entry", [
    runs.CacheOptions, runs.ModelOptions, runs.MethodSettings, runs.DecisionOptions, runs.ExamplesOptions,
    runs.ClassifyRequest, runs.EvalRequest, runs.ExplainRequest, runs.CalibrateRequest, runs.EmbedRequest,
    runs.PageOptions, runs.Provenance, runs.classify, runs.evaluate_run, runs.evaluate_multilabel, runs.explain,
    runs.calibrate, runs.embed,
], ids=lambda e: e.__qualname__)
def test_every_entry_point_documents_every_parameter(entry):
    import inspect

    doc = inspect.getdoc(entry) or ""
    assert "Parameters\n----------" in doc
    names = set(inspect.signature(entry).parameters)
    assert names - _documented(doc) == set()

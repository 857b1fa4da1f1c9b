"""The cotembed command end to end: verbs, formats, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cotembed import encoders
from support import COLOUR_SYSTEM, make_image, make_image_folder
from support import run_cli as run


@pytest.fixture
def system_file(tmp_path) -> Path:
    path = tmp_path / "colours.yaml"
    path.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    return path


def test_validate_table_and_json(capsys, system_file):
    code, out, _ = run(capsys, "validate", system_file)
    assert code == 0 and "valid system colours" in out and "Q=4" in out
    code, out, _ = run(capsys, "validate", system_file, "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["n_classes"] == 4 and data["n_prompts"] == 4 and len(data["hash"]) == 16
    assert data["templates"] == [] and "ensemble templates" not in run(capsys, "validate", system_file)[1]
    system_file.write_text(yaml.safe_dump({**COLOUR_SYSTEM, "templates": ["a photo of a {}", "art of a {}"]}), encoding="utf-8")
    code, out, _ = run(capsys, "validate", system_file)
    assert code == 0 and "ensemble templates (2): 'a photo of a {}', 'art of a {}'" in out


def test_validate_invalid_system_exits_2_naming_the_problem(capsys, tmp_path):
    bad = dict(COLOUR_SYSTEM, rules={"red-thing": {"colour": 12}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    code, out, err = run(capsys, "validate", path)
    assert code == 2 and out == ""
    assert str(path) in err and "rules.red-thing.colour: option 12 out of range (group has 4 options)" in err


def test_eval_json_contract_and_cot_beats_baseline(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=3)
    cache = tmp_path / "cache.sqlite"
    code, out, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--cache", cache, "--format", "json", "-q")
    assert code == 0, err
    report = json.loads(out)
    assert {"system", "model", "n_images", "n_classes", "methods", "errors"} <= set(report)
    assert report["model"] == "test:colour" and report["n_images"] == 12 and report["n_classes"] == 4
    assert report["methods"]["cot"]["accuracy"] == 1.0
    assert report["methods"]["baseline"]["text_prompts"] == 4 and report["methods"]["cot"]["text_prompts"] == 4
    assert report["methods"]["hybrid"]["text_prompts"] == 8
    assert report["question_accuracy"] == {"colour": 1.0}
    assert report["temperature"] == 50.0 and report["system"]["hash"]


def test_eval_table_reports_methods_and_prompt_counts(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=2)
    code, out, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--temperature", "7")
    assert code == 0
    lines = out.splitlines()
    assert "temperature 7" in lines[0]
    assert any(l.startswith("cot") and "100.00%" in l and "Q=4" in l for l in lines)
    assert any(l.startswith("baseline") and "N=4" in l for l in lines)


def test_eval_unknown_label_is_input_error_unless_ignored(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    make_image(data / "purple-thing" / "0.png", "red")
    code, _, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q")
    assert code == 2 and "'purple-thing'" in err and "--ignore-unknown" in err
    code, out, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--ignore-unknown", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["n_images"] == 4 and len(report["skipped_unknown_labels"]) == 1


def test_corrupt_image_reported_run_continues_exit_1(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=2)
    (data / "red-thing" / "bad.png").write_bytes(b"garbage")
    code, out, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["n_images"] == 8
    assert [e["input"].endswith("bad.png") for e in report["errors"]] == [True]


def test_images_above_max_pixels_are_reported_per_file_and_the_run_goes_on(capsys, tmp_path, system_file, colour_model,
                                                                           monkeypatch):
    monkeypatch.delenv("COTEMBED_MAX_PIXELS", raising=False)
    data = make_image_folder(tmp_path / "data", per_class=1)  # 24 x 24 = 576 pixels each
    big = make_image(data / "red-thing" / "big.png", "red", size=40)  # 1,600 pixels
    base = ["--model", colour_model, "--no-cache", "-q", "--format", "json"]
    code, out, err = run(capsys, "eval", system_file, data, *base)
    assert code == 0 and json.loads(out)["n_images"] == 5, err
    code, out, _ = run(capsys, "eval", system_file, data, *base, "--max-pixels", "1000")
    report = json.loads(out)
    assert code == 1 and report["n_images"] == 4 and report["methods"]["cot"]["acc1"] == 1.0
    [error] = report["errors"]
    assert error["input"] == str(big) and "image too large" in error["error"]
    code, out, _ = run(capsys, "classify", system_file, big, data / "blue-thing" / "0.png", *base, "--max-pixels", "1000")
    result = json.loads(out)
    assert code == 1 and [p["prediction"] for p in result["predictions"]] == ["blue-thing"]
    assert [e["input"] for e in result["errors"]] == [str(big)]


def test_classify_manifest_and_files(capsys, tmp_path, system_file, colour_model):
    make_image(tmp_path / "imgs" / "a.png", "green")
    make_image(tmp_path / "imgs" / "b.png", "blue")
    (tmp_path / "m.csv").write_text("path,label\nimgs/a.png,green-thing\nimgs/b.png,\n", encoding="utf-8")
    code, out, _ = run(capsys, "classify", system_file, tmp_path / "m.csv", "--model", colour_model, "--no-cache", "-q", "--format", "json", "--top-k", "2")
    result = json.loads(out)
    assert code == 0 and result["method"] == "cot" and result["model"] == "test:colour"
    assert [p["prediction"] for p in result["predictions"]] == ["green-thing", "blue-thing"]
    assert len(result["predictions"][0]["top"]) == 2 and result["errors"] == []
    code, out, _ = run(capsys, "classify", system_file, tmp_path / "imgs" / "b.png", "--model", colour_model, "--no-cache", "-q")
    assert code == 0 and "blue-thing" in out


def test_explain_shows_questions_and_contributions(capsys, tmp_path, system_file, colour_model):
    image = make_image(tmp_path / "x.png", "yellow")
    code, out, _ = run(capsys, "explain", system_file, image, "--model", colour_model, "--no-cache", "--format", "json")
    exp = json.loads(out)
    assert code == 0 and exp["prediction"] == "yellow-thing"
    assert exp["questions"][0]["answer"] == "yellow"
    assert abs(sum(exp["questions"][0]["probabilities"].values()) - 1) < 1e-5
    assert exp["top"][0]["contributions"]["colour"] == pytest.approx(exp["top"][0]["score"])
    code, out, _ = run(capsys, "explain", system_file, image, "--model", colour_model, "--no-cache", "--method", "hybrid")
    assert code == 0 and "Q: a photo of something {}" in out and "class name" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "{system}", "{data}", "--model", "nope:thing"], "unknown model spec 'nope:thing'"),
        (["eval", "{system}", "{data}", "--model", "hf:"], "needs an argument"),
        (["eval", "{system}", "{tmp}/missing"], "no such file or folder"),
        (["eval", "{system}", "{data}", "--methods", "cot,magic", "--model", "test:colour"], "unknown method 'magic'"),
        (["classify", "{system}", "{data}", "--temperature", "-1"], "must be in (0, 10000]"),
        (["classify", "{system}", "{data}", "--temperature", "inf"], "must be a finite number"),
        (["eval", "{system}", "{data}", "--temperature", "1e39"], "must be in (0, 10000]"),
        (["eval", "{system}", "{data}", "--hybrid-weight", "inf"], "must be a finite number"),
        (["eval", "{system}", "{data}", "--hybrid-weight", "nan"], "must be a finite number"),
        (["eval", "{system}", "{data}", "--max-pixels", "0"], "must be between 1 and"),
        (["classify", "{system}", "{data}", "--max-pixels", "1e6"], "not a whole number"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2(capsys, tmp_path, system_file, colour_model, argv, message):
    data = make_image_folder(tmp_path / "data", per_class=1)
    argv = [a.format(system=system_file, data=data, tmp=tmp_path) for a in argv]
    code, _, err = run(capsys, *argv, "--no-cache") if argv[0] != "frobnicate" else run(capsys, *argv)
    assert code == 2 and message in err


def test_models_lists_backends(capsys):
    code, out, _ = run(capsys, "models", "--format", "json")
    specs = {m["spec"]: m for m in json.loads(out)["models"]}
    assert code == 0 and {"hf:<...>", "open_clip:<...>", "jina:<...>", "st:<...>", "jina-api:<...>", "minilm"} <= set(specs)
    assert specs["critters[:<...>]"]["default"] is True and specs["minilm"]["default"] is False


def test_classify_literal_texts(capsys, system_file, colour_model):
    code, out, _ = run(capsys, "classify", system_file, "a red balloon", "green grass", "--text", "--model", colour_model, "--no-cache", "--format", "json")
    result = json.loads(out)
    assert code == 0 and [p["prediction"] for p in result["predictions"]] == ["red-thing", "green-thing"]
    assert result["predictions"][0]["input"] == "a red balloon" and result["predictions"][1]["input"] == "green grass"


def test_json_mode_prints_an_error_object_and_keeps_the_exit_code(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    code, out, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--methods", "vote", "--format", "json", "--no-cache")
    error = json.loads(out)["error"]
    assert code == 2 and error["type"] == "InputError" and "unknown method 'vote'" in error["message"] and error["exit_code"] == 2
    assert "unknown method 'vote'" in err
    code, out, _ = run(capsys, "validate", tmp_path / "missing.yaml", "--format", "json")
    assert code == 2 and str(tmp_path / "missing.yaml") in json.loads(out)["error"]["message"]
    code, out, _ = run(capsys, "eval", "--format", "json")  # a usage error is JSON too
    assert code == 2 and json.loads(out)["error"]["type"] == "InputError"


def test_cached_eval_never_loads_the_model(capsys, tmp_path, system_file, monkeypatch):
    import support

    built: list[str] = []

    class CountingEncoder(support.ColourEncoder):
        def __init__(self, name: str = "colour"):
            built.append(name)
            super().__init__(name)

    monkeypatch.setattr(support, "CountingEncoder", CountingEncoder, raising=False)
    monkeypatch.setattr(support, "DEFAULT_BATCH_SIZE", 4, raising=False)
    monkeypatch.setattr(support, "counting_key", lambda argument, options: f"test:{argument}", raising=False)
    backend = encoders.Backend("count", "support", "CountingEncoder", "dev", "image, text", "test double", "count:x", key="counting_key")
    data = make_image_folder(tmp_path / "data", per_class=2)
    cache = tmp_path / "cache.sqlite"
    argv = ["eval", system_file, data, "--model", "count:colour", "--cache", cache, "--format", "json", "-q"]
    with encoders.registered_backend(backend):
        code, first, _ = run(capsys, *argv)
        assert code == 0 and built == ["colour"]
        code, second, _ = run(capsys, *argv)
    assert code == 0 and built == ["colour"], "a fully cached run must not load the model"
    assert json.loads(second)["n_encoded"] == 0
    assert json.loads(second)["methods"] == json.loads(first)["methods"]


def test_eval_output_file_by_extension(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    for name in ("m.json", "m.csv", "m.jsonl"):
        code, _, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--output", tmp_path / name)
        assert code == 0
    assert json.loads((tmp_path / "m.json").read_text())["methods"]["cot"]["acc1"] == 1.0
    csv_lines = (tmp_path / "m.csv").read_text().splitlines()
    assert csv_lines[0].startswith("model,system,method") and len(csv_lines) == 4
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["baseline", "cot", "hybrid"]
    code, _, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--output", tmp_path / "m.xlsx")
    assert code == 2 and "use .json, .csv or .jsonl" in err


def test_eval_with_no_usable_input_says_so(capsys, tmp_path, system_file, colour_model):
    data = tmp_path / "data"
    (data / "red-thing").mkdir(parents=True)
    (data / "red-thing" / "0.png").write_bytes(b"not an image")
    code, out, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q")
    assert code == 1 and "nothing was evaluated" in out and "0.00%" not in out
    code, out, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--no-cache", "-q", "--format", "json")
    assert json.loads(out)["methods"]["cot"]["acc1"] is None


def test_eval_compares_several_models_in_one_table(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    code, out, _ = run(capsys, "eval", system_file, data, "--model", "test:one", "--model", "test:two", "--no-cache", "-q")
    assert code == 0 and "model test:one" in out and "model test:two" in out
    code, out, _ = run(capsys, "eval", system_file, data, "--model", "test:one", "--model", "test:two", "--no-cache", "-q", "--format", "json")
    assert [r["model"] for r in json.loads(out)["models"]] == ["test:one", "test:two"]


def test_cli_recovers_a_corrupt_cache_only_when_asked(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    cache = tmp_path / "cache.sqlite"
    code, _, _ = run(capsys, "eval", system_file, data, "--model", colour_model, "--cache", cache, "-q")
    assert code == 0
    raw = bytearray(cache.read_bytes())
    page = 4096
    for offset in range(page, len(raw), page):  # smash every page header after the first
        raw[offset : offset + 16] = b"\xde\xad\xbe\xef" * 4
    cache.write_bytes(bytes(raw))
    code, out, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--cache", cache, "-q", "--format", "json")
    assert code != 0 and str(cache) in err and "--cache-recover" in err
    assert str(cache) in json.loads(out)["error"]["message"]
    code, _, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--cache", cache, "-q", "--cache-recover")
    assert code == 0 and "corrupt" in err
    assert list(tmp_path.glob("cache.sqlite.corrupt-*")), "the damaged file is kept aside, never deleted"


def test_manifest_outside_paths_need_the_flag(capsys, tmp_path, system_file, colour_model):
    image = make_image(tmp_path / "elsewhere" / "a.png", "red")
    manifest = tmp_path / "inside" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path,label\n../elsewhere/a.png,red-thing\n{image},red-thing\n", encoding="utf-8")
    code, _, err = run(capsys, "classify", system_file, manifest, "--model", colour_model, "--no-cache", "-q")
    assert code == 2 and "--allow-outside-paths" in err and "m.csv" in err
    code, out, _ = run(capsys, "classify", system_file, manifest, "--model", colour_model, "--no-cache", "-q", "--allow-outside-paths", "--format", "json")
    assert code == 0 and [p["prediction"] for p in json.loads(out)["predictions"]] == ["red-thing", "red-thing"]

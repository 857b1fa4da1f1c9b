"""What a new user meets at the command line: errors before any model loads, exit codes, messages,
tables that stay aligned and cannot be rewritten by the names they show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

from cotembed import encoders
from cotembed.reporting._text import table
from support import COLOUR_SYSTEM, make_image, make_image_folder
from support import run_cli as run

RLO = "\u202e"


class ExplodingEncoder:
    """A backend whose model must never load: the error the test expects comes first."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("the model was loaded")


@pytest.fixture
def system_file(tmp_path: Path) -> Path:
    path = tmp_path / "colours.yaml"
    path.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    return path


@pytest.fixture
def unloadable(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``text-only:x`` and ``images:x``: models that fail if anything loads them."""
    specs = {}
    for scheme, inputs in (("text-only", "text"), ("images", "image, text")):
        backend = encoders.Backend(scheme, __name__, "ExplodingEncoder", "dev", inputs, "never loads", f"{scheme}:x")
        monkeypatch.setitem(encoders.BACKENDS, scheme, backend)
        specs[inputs] = f"{scheme}:x"
    return specs


def test_a_text_model_on_images_is_refused_before_it_loads(capsys, tmp_path, system_file, unloadable):
    data = make_image_folder(tmp_path / "data", per_class=1)
    for verb in ("classify", "eval", "curve"):
        code, _, err = run(capsys, verb, system_file, data, "--model", unloadable["text"], "--no-cache", "-q")
        assert code == 2 and "cannot encode image inputs (it takes: text)" in err and "loaded" not in err, (verb, err)


def test_unlabelled_data_is_refused_before_the_model_loads(capsys, tmp_path, system_file, unloadable):
    flat = tmp_path / "flat"
    make_image(flat / "a.png", "red")
    code, _, err = run(capsys, "eval", system_file, flat, "--model", unloadable["image, text"], "--no-cache", "-q")
    assert code == 2 and "have no label" in err and "loaded" not in err


def test_a_model_directory_that_does_not_exist_is_bad_input(capsys, tmp_path, system_file):
    make_image(tmp_path / "a.png", "red")
    code, _, err = run(capsys, "classify", system_file, tmp_path / "a.png", "--model", "hf:/nonexistent/model", "--no-cache", "-q")
    assert code == 2 and "does not exist" in err


def test_options_are_never_abbreviated(capsys, tmp_path, system_file, colour_model):
    data = make_image_folder(tmp_path / "data", per_class=1)
    code, _, err = run(capsys, "eval", system_file, data, "--model", colour_model, "--method", "cot", "--no-cache")
    assert code == 2 and "unrecognized arguments: --method" in err


def test_usage_errors_name_the_verb_once(capsys, system_file):
    code, _, err = run(capsys, "eval", system_file)
    assert code == 2 and err.startswith("cotembed: error: eval: ") and "cotembed eval:" not in err
    assert "see `cotembed eval --help`" in err


def test_classify_text_reports_the_text(capsys, system_file, colour_model):
    code, out, err = run(capsys, "classify", system_file, "something red", "--text", "--model", colour_model, "--no-cache",
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["predictions"][0]["input"] == "something red"
    code, out, _ = run(capsys, "classify", system_file, "something red", "--text", "--model", colour_model, "--no-cache")
    assert "something red" in out and "text[0]" not in out


def test_an_empty_file_is_reported_as_empty(capsys, tmp_path, system_file, colour_model):
    (tmp_path / "empty.png").write_bytes(b"")
    code, out, _ = run(capsys, "classify", system_file, tmp_path / "empty.png", "--model", colour_model, "--no-cache", "--format", "json")
    assert code == 1
    assert "is empty (0 bytes)" in json.loads(out)["errors"][0]["error"]


def test_ignore_unknown_that_skips_every_input_says_so(capsys, tmp_path, system_file, colour_model):
    data = tmp_path / "data"
    make_image(data / "zebra" / "0.png", "red")
    make_image(data / "okapi" / "0.png", "blue")
    for verb in ("eval", "curve"):
        code, _, err = run(capsys, verb, system_file, data, "--ignore-unknown", "--model", colour_model, "--no-cache", "-q")
        assert code == 2 and "all 2 labelled input(s) were skipped by --ignore-unknown" in err and "'okapi'" in err, (verb, err)


def display_width(text: str) -> int:
    """Terminal columns, counted independently of the code under test."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def test_table_columns_align_by_display_width() -> None:
    rows = [["class", "score"], ["金魚", "1.000"], ["🐟 fish", "2.000"], ["plain", "3.000"], ["e\u0301t\u00e9", "4.000"]]
    lines = table(rows).splitlines()
    ends = {display_width(line) for line in lines}
    assert len(ends) == 1, lines  # right-aligned numbers end in the same column
    starts = {display_width(line[: line.index(row[1])]) for line, row in zip(lines[2:], rows[1:])}
    assert len(starts) == 1, lines


def test_control_and_bidi_characters_are_shown_neutralised(capsys, tmp_path, colour_model):
    system = dict(COLOUR_SYSTEM, rules={f"{c}{RLO}gpj.exe\x1b[2J" if c == "red" else f"{c}-thing": {"colour": c}
                                        for c in ("red", "green", "blue", "yellow")})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(system, allow_unicode=True), encoding="utf-8")
    code, out, err = run(capsys, "classify", path, "something red", "--text", "--model", colour_model, "--no-cache")
    assert code == 0, err
    assert RLO not in out and "\x1b" not in out and "\\u202e" in out and "\\u001b" in out
    data = tmp_path / "data"
    make_image(data / f"red{RLO}gpj.exe\x1b[2J" / "0.png", "red")
    make_image(data / "blue-thing" / "0.png", "blue")
    page = tmp_path / "page.html"
    code, out, err = run(capsys, "report", path, data, "--model", colour_model, "--no-cache", "--output", page, "-q")
    assert code == 0, err
    html = page.read_text(encoding="utf-8")
    assert RLO not in html and "\x1b" not in html and "\\u202e" in html


def test_a_very_long_question_is_cut_in_the_table(capsys, tmp_path, colour_model):
    long_prompt = "a photo of something {} " + "very " * 700
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(COLOUR_SYSTEM, groups={"colour": {"prompt": long_prompt, "options": list(COLOUR_SYSTEM["groups"]["colour"]["options"])}})),
                    encoding="utf-8")
    code, out, err = run(capsys, "explain", path, "something red", "--text", "--model", colour_model, "--no-cache")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 200 and "characters)" in out
    code, out, _ = run(capsys, "validate", path)
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 200


def test_quiet_silences_the_model_libraries_loading_bars(capsys, tmp_path, system_file, tiny_clip_dir):
    import transformers  # noqa: F401  (imported before the run, as a library user would have it)

    make_image(tmp_path / "a.png", "red")
    code, _, err = run(capsys, "classify", system_file, tmp_path / "a.png", "--model", f"hf:{tiny_clip_dir}", "--no-cache", "-q")
    assert code == 0, err
    assert "Loading weights" not in err and "%|" not in err
    from transformers.utils import logging as transformers_logging

    assert transformers_logging.is_progress_bar_enabled()  # given back when the run ends


def test_score_and_ece_are_explained(capsys):
    from cotembed.cli._main import build_parser

    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices and "eval" in a.choices)
    assert "0 to the number of questions" in " ".join(sub.choices["classify"].format_help().split())
    for verb in ("eval", "report"):
        text = " ".join(sub.choices[verb].format_help().split())
        assert "ECE: expected calibration error" in text, verb
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert "0 to the number of questions" in readme and "expected calibration error" in readme


def verb_parsers(parser, name: str = "cotembed"):
    """Every parser of the command, nested verbs included, with its full name."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action.choices, dict):
            for verb, sub in action.choices.items():
                yield from verb_parsers(sub, f"{name} {verb}")


def test_the_default_model_is_named_with_what_it_is():
    from cotembed.cli._main import build_parser
    from cotembed.encoders import DEFAULT_MODEL, DEFAULT_MODEL_NOTE

    stated = f"default: {DEFAULT_MODEL}, {DEFAULT_MODEL_NOTE}"
    falling_back = []
    for name, parser in verb_parsers(build_parser()):
        model = next((a for a in parser._actions if "--model" in a.option_strings), None)
        if model is not None and (model.default == DEFAULT_MODEL or f"default: {DEFAULT_MODEL}" in " ".join((model.help or "").split())):
            assert stated in " ".join(parser.format_help().split()), name
            falling_back.append(name)
    assert {"cotembed classify", "cotembed eval", "cotembed explain", "cotembed serve", "cotembed embed"} <= set(falling_back)
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert f"`--model` defaults to `{DEFAULT_MODEL}` in every verb that takes one" in readme


def test_neutralise_keeps_text_that_is_only_unusual() -> None:
    from cotembed.reporting._text import neutralise

    for text in ("金魚", "🐟", "👩\u200d🔬", "Pokémon", unicodedata.normalize("NFD", "Pokémon")):
        assert neutralise(text) == text


def test_arguments_that_are_not_utf8_exit_2_with_a_message(capsys, tmp_path, system_file, colour_model):
    bad = (tmp_path / "x.png").as_posix().encode() + b"\xff"
    argv = ["classify", str(system_file), bad.decode("utf-8", "surrogateescape"), "--model", colour_model, "--no-cache"]
    for extra in ([], ["--format", "json"]):
        code, out, err = run(capsys, *argv, *extra)
        assert code == 2 and "argument 3" in err and "not valid UTF-8" in err, err
        if extra:
            assert json.loads(out)["error"]["exit_code"] == 2


def test_libraries_first_imported_under_quiet_get_their_bars_back():
    """huggingface_hub and transformers read the variable once, at import: a run under -q must not silence later runs."""
    script = ("import os; os.environ.pop('HF_HUB_DISABLE_PROGRESS_BARS', None)\n"
              "from cotembed.encoders._loading import quiet_model_libraries\n"
              "restore = quiet_model_libraries()\n"
              "import huggingface_hub.utils, transformers\n"
              "from transformers.utils import logging as tl\n"
              "assert huggingface_hub.utils.are_progress_bars_disabled() and not tl.is_progress_bar_enabled()\n"
              "assert 'HF_HUB_DISABLE_PROGRESS_BARS' not in os.environ\n"
              "restore()\n"
              "print(huggingface_hub.utils.are_progress_bars_disabled(), tl.is_progress_bar_enabled())\n")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]

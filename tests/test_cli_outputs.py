"""No verb writes where its output flags do not say, and no write replaces an input of the run.

Every verb runs with every positional form the README and its --help document, in a folder
holding its inputs; afterwards every input is byte for byte as it was and the only new
files are the ones the output flags (or their documented defaults) name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from llm_server import PROXY_VARS, ScriptedChatServer, reply
from support import COLOUR_SYSTEM, make_image, make_image_folder
from support import run_cli as run

REPO = Path(__file__).resolve().parents[1]
INPUT_POSITIONALS = {"system", "data", "inputs", "input", "train", "names", "embeddings"}
"""What a positional argument of any verb may be: something the verb reads (a file, or a name such as a dataset's)."""


def _verb_parsers() -> Iterator[tuple[str, object]]:
    import argparse

    from cotembed.cli._main import build_parser

    def walk(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        subactions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subactions:
            yield name, parser
        for action in subactions:
            for verb, sub in action.choices.items():
                yield from walk(sub, f"{name} {verb}".strip())

    yield from walk(build_parser(), "")


def test_every_positional_of_every_verb_is_an_input_and_no_option_is_abbreviated() -> None:
    import argparse

    seen = set()
    for verb, parser in _verb_parsers():
        assert isinstance(parser, argparse.ArgumentParser)
        seen.add(verb)
        positionals = [a.dest for a in parser._actions if not a.option_strings]
        assert set(positionals) <= INPUT_POSITIONALS, (verb, positionals)
        outputs = parser.get_default("output_dests") or {}
        assert not set(outputs) & set(positionals), verb
        assert parser.allow_abbrev is False, verb
    assert {"eval", "report", "classify", "curve", "induce", "optimize", "build", "critters generate"} <= seen
    parsers = dict(_verb_parsers())
    for verb in ("eval", "report"):
        assert [a.dest for a in parsers[verb]._actions if not a.option_strings] == ["system", "data"]  # type: ignore[attr-defined]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a system, an ImageFolder, image files and CSV/JSONL manifests; the current directory."""
    folder = tmp_path / "work"
    (folder / "colours.yaml").parent.mkdir(parents=True)
    (folder / "colours.yaml").write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    make_image_folder(folder / "data", per_class=1)
    rows = [(f"imgs/{c}.png", f"{c}-thing") for c in ("red", "green", "blue", "yellow")]
    for path, label in rows:
        make_image(folder / path, label.split("-")[0], seed=7)
    (folder / "labels.csv").write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows), encoding="utf-8")
    (folder / "labels.jsonl").write_text("".join(json.dumps({"path": p, "label": label}) + "\n" for p, label in rows), encoding="utf-8")
    (folder / "classes.txt").write_text("red-thing\ngreen-thing\nblue-thing\nyellow-thing\n", encoding="utf-8")
    shutil.copy(REPO / "examples" / "critters" / "species.yaml", folder / "species.yaml")
    monkeypatch.chdir(folder)
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    return folder


MODEL = ("--model", "test:colour", "-q", "--format", "json")
# (argv, files the run may create, relative to the folder): every documented positional form
FORMS = [
    (["validate", "colours.yaml"], set()),
    (["classify", "colours.yaml", "data", *MODEL], set()),
    (["classify", "colours.yaml", "imgs/red.png", "imgs/blue.png", "labels.csv", "labels.jsonl", *MODEL], set()),
    (["classify", "colours.yaml", "data", "labels.csv", "--output", "predictions.csv", *MODEL], {"predictions.csv"}),
    (["classify", "colours.yaml", "a red thing", "labels.csv", "--text", *MODEL], set()),
    (["eval", "colours.yaml", "data", *MODEL], set()),
    (["eval", "colours.yaml", "data", "labels.csv", *MODEL], set()),
    (["eval", "colours.yaml", "data", "labels.jsonl", *MODEL], set()),
    (["eval", "colours.yaml", "data", "labels.csv", "labels.jsonl", *MODEL], set()),
    (["eval", "colours.yaml", "labels.csv", "data", "labels.jsonl", "--output", "m.csv", *MODEL], {"m.csv"}),
    (["eval", "colours.yaml", "data", "labels.csv", "--output", "m.json", "--html", "page.html", *MODEL], {"m.json", "page.html"}),
    (["report", "colours.yaml", "data", "labels.csv", "labels.jsonl", *MODEL], {"report.html"}),
    (["report", "colours.yaml", "data", "--output", "page.html", *MODEL], {"page.html"}),
    (["explain", "colours.yaml", "imgs/red.png", *MODEL], set()),
    (["explain", "colours.yaml", "a red thing", "--text", *MODEL], set()),
    (["curve", "colours.yaml", "data", "labels.csv", *MODEL], {"curve.json", "curve.png"}),
    (["curve", "colours.yaml", "data", "--output", "c.json", "--no-plot", *MODEL], {"c.json"}),
    (["inspect", "colours.yaml"], set()),
    (["inspect", "colours.yaml", "--data", "data", "labels.csv", *MODEL], set()),
    (["induce", "colours.yaml", "data", "labels.csv", "--per-class", "1", "--out", "new.yaml", *MODEL], {"new.yaml"}),
    (["optimize", "colours.yaml", "data", "labels.csv", "--out", "best.yaml", "--max-candidates", "4", "--max-rounds", "1",
      "--no-plot", "--val-fraction", "0", *MODEL], {"best.yaml", "best.history.jsonl"}),
    (["models", "--format", "json"], set()),
]


def _cache_args(argv: list[str], cache: Path) -> list[str]:
    return [*argv, "--cache", str(cache)] if "--model" in argv else argv


@pytest.mark.parametrize("argv, created", FORMS, ids=[" ".join(a[:4]) for a, _ in FORMS])
def test_a_verb_writes_only_where_its_output_flags_say(capsys, work, tmp_path, colour_model, argv, created):
    before = _digest(work)
    code, out, err = run(capsys, *_cache_args(argv, tmp_path / "cache.sqlite"))
    assert code == 0, err
    after = _digest(work)
    assert {k: after.get(k) for k in before} == before  # every input as it was
    new = {k for k in after if k not in before}
    assert {k for k in new if "/" not in k} | {k.split("/")[0] for k in new if "/" in k} == created


def test_critters_generate_writes_only_its_out_folder(capsys, work):
    before = _digest(work)
    code, _, err = run(capsys, "critters", "generate", "--species", "species.yaml", "--per-class", "1", "--seed", "1",
                       "--size", "16", "--out", "rendered", "-q")
    assert code == 0, err
    after = _digest(work)
    assert {k: after.get(k) for k in before} == before
    assert {k.split("/")[0] for k in after if k not in before} == {"rendered"}


def test_build_writes_only_its_out_and_transcript(capsys, work):
    system = dict(COLOUR_SYSTEM, description="colours")
    with ScriptedChatServer([reply(json.dumps(system))]) as server:
        before = _digest(work)
        code, _, err = run(capsys, "build", "--classes", "classes.txt", "--out", "drafted.yaml", "--transcript", "t.jsonl",
                           "--llm-base-url", server.base_url, "--llm-model", "m", "-q", "--format", "json")
    assert code == 0, err
    after = _digest(work)
    assert {k: after.get(k) for k in before} == before
    assert set(after) - set(before) == {"drafted.yaml", "t.jsonl"}


# ------------------------------------------------------------------ the guard
REFUSED = [
    (["eval", "colours.yaml", "data", "labels.csv", "--output", "labels.csv"], "labels.csv", "DATA"),
    (["eval", "colours.yaml", "labels.jsonl", "--output", "labels.jsonl"], "labels.jsonl", "DATA"),
    (["eval", "colours.yaml", "data", "--calibrate", "labels.csv", "--adaptive", "--output", "labels.csv"], "labels.csv", "--calibrate"),
    (["eval", "colours.yaml", "labels.csv", "--output", "link.csv"], "labels.csv", "DATA"),
    (["eval", "colours.yaml", "labels.csv", "--output", "hard.csv"], "labels.csv", "DATA"),
    (["eval", "colours.yaml", "data", "--html", "data/red-thing/0.png"], "data/red-thing/0.png", "DATA"),
    (["classify", "colours.yaml", "labels.csv", "--output", "labels.csv"], "labels.csv", "INPUTS"),
    (["report", "colours.yaml", "data", "--output", "data/red-thing/0.png"], "data/red-thing/0.png", "DATA"),
    (["curve", "colours.yaml", "data/red-thing", "--output", "data/red-thing/0.json"], "data/red-thing/0.png", "DATA"),
    (["induce", "colours.yaml", "data", "--per-class", "1", "--out", "colours.yaml"], "colours.yaml", "SYSTEM"),
    (["optimize", "colours.yaml", "data", "--out", "colours.yaml"], "colours.yaml", "SYSTEM"),
    (["optimize", "colours.yaml", "labels.jsonl", "--out", "best.yaml", "--history", "labels.jsonl", "--force"], "labels.jsonl", "TRAIN"),
    (["eval", "colours.yaml", "data", "--output", "cache.json", "--cache", "cache.json"], "cache.json", "--cache"),
    (["build", "--classes", "labels.jsonl", "--out", "best.yaml", "--transcript", "labels.jsonl"], "labels.jsonl", "--classes"),
    (["build", "--classes", "colours.yaml", "--out", "colours.yaml", "--force"], "colours.yaml", "--classes"),
    (["embed", "data", "--out", "data"], "data/red-thing/0.png", "DATA"),
    (["embed", "labels.csv", "--out", "labels.csv"], "labels.csv", "DATA"),
    (["calibrate", "colours.yaml", "labels.csv", "--out", "new.yaml", "--plot", "labels.csv"], "labels.csv", "DATA"),
]


@pytest.mark.parametrize("argv, victim, named", REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_an_output_that_would_replace_an_input_is_refused_with_exit_2(capsys, work, colour_model, argv, victim, named):
    os.symlink("labels.csv", "link.csv")
    os.link("labels.csv", "hard.csv")
    (work / "cache.json").write_text("{}", encoding="utf-8")
    before = _digest(work)
    code, _, err = run(capsys, *argv, *(["--model", colour_model] if argv[0] not in ("build",) else ["--llm-base-url", "http://127.0.0.1:9"]))
    assert code == 2, err
    assert "an input of this run" in err and named in err
    assert _digest(work) == before and victim in before


def test_build_may_still_revise_its_from_file_in_place_but_nothing_else(capsys, work):
    code, _, err = run(capsys, "build", "--from", "colours.yaml", "--feedback", "more", "--out", "labels.csv",
                       "--llm-base-url", "http://127.0.0.1:9")
    assert code == 2  # not a system file, refused before any request
    with ScriptedChatServer([reply(json.dumps(COLOUR_SYSTEM))]) as server:
        code, _, err = run(capsys, "build", "--from", "colours.yaml", "--feedback", "keep it", "--out", "colours.yaml",
                           "--llm-base-url", server.base_url, "--llm-model", "m", "-q")
    assert code == 0, err

"""optimize: edits, vocabularies, the objective on cached embeddings, the seeded search, LLM proposals and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import yaml

from cotembed import EmbeddingSet, Scorer, ScoringConfig, System, evaluate
from cotembed.authoring._llm import ChatClient, LLMSettings
from cotembed.errors import InputError, SystemValidationError
from cotembed.http import RetryPolicy
from cotembed.optimize import EDITS, Objective, Search, SearchSettings, Vocabulary, edit_from_dict, split_rows
from cotembed.optimize._edits import (
    Compound,
    DropGroup,
    MergeGroups,
    MergeOptions,
    RemoveOption,
    ReplaceSystem,
    RewordOption,
    SetGroupWeight,
    SetRules,
    SetTemperature,
)
from llm_server import PROXY_VARS, ScriptedChatServer, error, reply
from support import COLOURS, make_image_folder
from support import run_cli as run
from synthetic import DIM, hashed_embed, random_system, synthetic_set

ROOT = Path(__file__).resolve().parents[1]
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0, max_total_s=10.0)


class CountingEmbed:
    """The hashed text tower, counting calls and texts (to check batching and that repeats cost nothing)."""

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return hashed_embed(texts)


def small_system() -> System:
    return System.from_dict({
        "name": "small",
        "groups": {
            "colour": {"prompt": "it is {}", "options": ["red", "green", "blue"]},
            "shape": {"prompt": "shaped like {}", "options": ["a ball", "a box"]},
            "size": {"prompt": "size {}", "options": ["small", "big"]},
        },
        "rules": {
            "a": {"colour": "red", "shape": "a ball", "size": "small"},
            "b": {"colour": "green", "shape": "a box", "size": "small"},
            "c": {"colour": ["blue", "green"], "shape": "a ball", "size": "big"},
        },
    })


def disguised(system: System, prefix: str = "zq") -> tuple[System, dict[str, dict[str, list[str]]]]:
    """``system`` with every option renamed to a word the hashed tower maps to a random direction,
    and the vocabulary that offers the true words back."""
    out, vocabulary = system, {}
    for group in system.groups:
        entry = {}
        for i, option in enumerate(group.options):
            fake = f"{prefix}{group.name}{i}"
            out = out.replace_option(group.name, option, fake)
            entry[fake] = [f"{prefix}decoy{group.name}{i}", option]
        vocabulary[group.name] = entry
    return out, vocabulary


@pytest.fixture
def world() -> dict[str, Any]:
    """A synthetic task whose true system is known: train and validation rows from its rules."""
    rng = np.random.default_rng(7)
    true = random_system(rng, groups=3, options=4, classes=10)
    return {"true": true, "train": synthetic_set(true, 12, rng, noise=0.6), "val": synthetic_set(true, 8, rng, noise=0.6)}


def acc(system: System, data: EmbeddingSet, temperature: float = 100.0) -> float:
    report = evaluate(Scorer.build(system, hashed_embed, ScoringConfig(temperature), ("cot",)), data, ("cot",))
    return float(report.methods["cot"].acc1 or 0.0)


# ------------------------------------------------------------------ edits
EXAMPLES = [
    RewordOption("colour", "red", "crimson"),
    RemoveOption("size", "big"),
    MergeOptions("colour", keep="green", drop="blue"),
    SetRules((("a", "colour", ("green",)), ("c", "size", ("small", "big"))), note="two rules"),
    DropGroup("size"),
    MergeGroups("colour", "shape"),
    SetGroupWeight("shape", 2.5),
    SetTemperature(12.0),
    ReplaceSystem.of(small_system().with_temperature(3.0), note="revision"),
    Compound((RewordOption("colour", "red", "scarlet"), SetGroupWeight("size", 0.5)), note="both"),
]


@pytest.mark.parametrize("edit", EXAMPLES, ids=lambda e: e.kind)
def test_every_edit_applies_describes_itself_and_replays_from_its_json(edit):
    system = small_system()
    if isinstance(edit, RemoveOption):  # 'big' is c's only size: give c another option first
        system = system.with_rule("c", "size", ["small", "big"])
    changed = edit.apply(system)
    assert changed != system and changed.fingerprint != system.fingerprint
    assert edit.describe() and "\n" not in edit.describe()
    again = edit_from_dict(json.loads(json.dumps(edit.to_dict())))
    assert again == edit and again.apply(system) == changed
    assert set(EDITS) >= {e.kind for e in EXAMPLES}


def test_merge_options_moves_the_rules_then_drops_the_option():
    merged = MergeOptions("colour", keep="red", drop="green").apply(small_system())
    assert merged.groups[0].options == ("red", "blue")
    assert merged.rules["b"]["colour"] == (0,) and merged.rules["c"]["colour"] == (0, 1)


def test_merge_groups_asks_both_questions_in_one_softmax():
    system = small_system()
    merged = MergeGroups("colour", "size").apply(system)
    assert merged.group_names == ("colour+size", "shape")
    group = merged.groups[0]
    assert group.prompt == "{}" and group.weight == 2.0 and group.options[0] == "it is red" and "size big" in group.options
    assert [group.options[i] for i in merged.rules["c"]["colour+size"]] == ["it is green", "it is blue", "size big"]
    assert merged.n_prompts == system.n_prompts
    two = System.from_dict({"groups": {"x": {"prompt": "{}", "options": ["p", "q"]}, "y": {"prompt": "{}", "options": ["r", "s"]}},
                            "rules": {"a": {"x": "p", "y": "r"}, "b": {"x": "q", "y": "s"}}})
    assert MergeGroups("x", "y").apply(two).group_names == ("x+y",)


def test_edits_that_do_not_fit_are_input_errors():
    system = small_system()
    with pytest.raises(SystemValidationError, match="only option"):
        RemoveOption("size", "big").apply(system)
    with pytest.raises(InputError, match="unknown group"):
        DropGroup("nope").apply(system)
    with pytest.raises(InputError, match="positive finite"):
        SetTemperature(float("nan"))
    other = System.from_dict({"groups": {"g": {"prompt": "{}", "options": ["x"]}}, "rules": {"zzz": {"g": "x"}, "a": {"g": "x"}}})
    with pytest.raises(SystemValidationError, match="classes differ"):
        ReplaceSystem.of(other).apply(system)
    with pytest.raises(InputError, match="unknown edit kind 'frobnicate'"):
        edit_from_dict({"kind": "frobnicate"})


# -------------------------------------------------------------- vocabulary
def test_vocabulary_per_option_and_free_wordings(tmp_path):
    system = small_system()
    path = tmp_path / "vocab.yaml"
    path.write_text("colour:\n  red: [crimson, scarlet]\n  '*': [teal]\nshape: [a cube, a sphere]\n", encoding="utf-8")
    vocabulary = Vocabulary.load(path, system)
    assert vocabulary.alternatives("colour", "red") == ("crimson", "scarlet")
    assert vocabulary.alternatives("colour", "crimson") == ("red", "scarlet")  # interchangeable once reworded
    assert vocabulary.free_words("colour") == ("teal",) and vocabulary.free_words("shape") == ("a cube", "a sphere")
    assert vocabulary.alternatives("colour", "blue") == ()
    grown = vocabulary.extended("colour", "blue", ["navy", " ", "navy"])
    assert grown.alternatives("colour", "blue") == ("navy",) and vocabulary.alternatives("colour", "blue") == ()
    assert Vocabulary.from_dict(vocabulary.to_dict(), system).alternatives("colour", "red") == ("crimson", "scarlet")


def test_a_bad_vocabulary_lists_every_problem_with_the_file_and_entry(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("colour:\n  purple: [violet]\n  red: [3]\nweather: [sunny]\nsize: small\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        Vocabulary.load(path, small_system())
    text = str(info.value)
    assert str(path) in text and "3 problem(s)" not in text
    for fragment in ("colour.purple: matches no option", "colour.red[0]: a wording must be non-empty text", "weather: not a group",
                     "size: expected a mapping"):
        assert fragment in text
    (tmp_path / "broken.yaml").write_text("colour: [a\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid vocabulary .*broken.yaml"):
        Vocabulary.load(tmp_path / "broken.yaml", small_system())


def test_the_shipped_critters_vocabularies_are_generated_and_one_has_no_caption_word(tmp_path):
    sys.path.insert(0, str(ROOT / "examples" / "critters"))
    try:
        import make_vocabulary as mv
    finally:
        sys.path.remove(str(ROOT / "examples" / "critters"))
    system = System.load(ROOT / "examples/critters/system_paraphrased.yaml")
    for name, with_captions in (("vocabulary.yaml", True), ("vocabulary_paraphrases.yaml", False)):
        shipped = yaml.safe_load((ROOT / "examples/critters" / name).read_text(encoding="utf-8"))
        assert shipped == mv.critters_vocabulary(system, with_captions), f"{name} is out of date: run examples/critters/make_vocabulary.py"
        Vocabulary.load(ROOT / "examples/critters" / name, system)
    banned = mv.caption_words()
    words = [w for entry in yaml.safe_load((ROOT / "examples/critters/vocabulary_paraphrases.yaml").read_text()).values()
             for ws in entry.values() for w in ws]
    assert words and not any(mv.words(w) & banned for w in words)
    with_captions = yaml.safe_load((ROOT / "examples/critters/vocabulary.yaml").read_text())
    assert "red" in with_captions["colour"]["crimson"] and "outer space" in with_captions["scene"]["the starry cosmos"]


# --------------------------------------------------------------- objective
@pytest.mark.parametrize("method", ["cot", "hybrid"])
def test_objective_scores_match_evaluate_on_train_and_validation(world, method):
    system = world["true"].with_rule(world["true"].class_names[0], "g0", [0, 1])
    objective = Objective(world["train"], hashed_embed, 80.0, val=world["val"], method=method)
    score = objective.score(system)
    for part, value in (("train", score.train), ("val", score.val)):
        report = evaluate(Scorer.build(system, hashed_embed, ScoringConfig(80.0), (method,)), world[part], (method,))
        assert value == pytest.approx(report.methods[method].acc1, abs=1e-12)
    assert objective.report(system, "val").methods[method].acc1 == pytest.approx(score.val)
    own = objective.score(system.with_temperature(20.0))  # a system's own temperature wins, as in eval
    report = evaluate(Scorer.build(system, hashed_embed, ScoringConfig(20.0), (method,)), world["train"], (method,))
    assert own.train == pytest.approx(report.methods[method].acc1)


def test_new_wordings_of_many_candidates_are_embedded_in_one_call(world):
    embed = CountingEmbed()
    objective = Objective(world["train"], embed, 100.0)
    start = world["true"]
    objective.score(start)
    calls, texts = embed.calls, embed.texts
    candidates = [start.replace_option("g0", 0, f"new wording {i}") for i in range(20)]
    objective.prefetch(candidates)
    assert embed.calls == calls + 1 and embed.texts == texts + 20
    for c in candidates:
        objective.score(c)
    assert embed.calls == calls + 1  # scoring cost no model call


def test_split_rows_is_seeded_per_class_and_disjoint():
    labels = [c for c in "abc" for _ in range(10)] + ["d"]
    train, val = split_rows(labels, 0.3, seed=5)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert [labels[i] for i in val].count("a") == 3 and "d" not in [labels[i] for i in val]
    assert split_rows(labels, 0.3, seed=5) == (train, val) and split_rows(labels, 0.3, seed=6) != (train, val)
    with pytest.raises(InputError):
        split_rows(labels, 1.0, seed=0)


def test_a_method_that_does_not_ask_the_questions_is_refused(world):
    with pytest.raises(InputError, match="asks the system's questions"):
        Objective(world["train"], hashed_embed, 100.0, method="baseline")


# ------------------------------------------------------------------ search
def test_search_finds_the_words_the_model_knows_and_is_deterministic(world):
    start, vocab = disguised(world["true"])
    vocabulary = Vocabulary.from_dict(vocab, start)
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    settings = SearchSettings(seed=3, proposers=("reword", "reword-group"), max_candidates=400)
    rows: list[dict[str, Any]] = []
    result = Search(objective, settings, vocabulary=vocabulary, record=rows.append).run(start)
    assert result.best_score.val >= acc(world["true"], world["val"]) - 0.05 > result.start_score.val + 0.3
    assert result.best.groups[0].options == world["true"].groups[0].options
    assert result.n_candidates == sum(r["type"] == "candidate" for r in rows) <= 400
    again = Search(objective, settings, vocabulary=vocabulary).run(start)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(again.history) == strip(result.history) and again.best == result.best


def test_reinduce_repairs_wrong_rules(world):
    true = world["true"]
    broken = true.with_rules({c: {"g1": (true.rules[c]["g1"][0] + 1) % 4} for c in true.class_names[:6]})
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    result = Search(objective, SearchSettings(proposers=("reinduce",), max_candidates=50)).run(broken)
    assert result.best_score.val > result.start_score.val + 0.2
    assert result.best_path[1]["proposer"] == "reinduce"


def test_validation_picks_the_best_even_when_training_accuracy_keeps_rising():
    """Training rows follow the rules; validation rows of two classes carry each other's labels, so the
    re-induced rules that win on training lose on validation: accepted, but not the best."""
    rng = np.random.default_rng(1)
    true = random_system(rng, groups=2, options=4, classes=6)
    a, b = true.class_names[:2]
    swapped = true.with_rules({a: {g: list(true.rules[b][g]) for g in true.group_names},
                               b: {g: list(true.rules[a][g]) for g in true.group_names}})
    train = synthetic_set(true, 10, rng, noise=0.3)
    val = synthetic_set(true, 10, rng, noise=0.3)
    val.labels = [{a: b, b: a}.get(lbl, lbl) for lbl in val.labels]
    objective = Objective(train, hashed_embed, 100.0, val=val)
    result = Search(objective, SearchSettings(proposers=("reinduce",), max_candidates=20)).run(swapped)
    assert result.final_score.train > result.start_score.train and result.final_score.val < result.start_score.val
    assert result.best == swapped and result.best_index == 0
    accepted = [r for r in result.history if r.get("accepted") and r["type"] == "candidate"]
    assert accepted and not any(r["new_best"] for r in accepted)


@pytest.mark.parametrize(("settings", "reason"), [
    ({"max_candidates": 5}, "max-candidates"),
    ({"max_rounds": 1}, "max-rounds"),
    ({"patience": 1, "proposers": ("temperature",)}, "plateau"),
    ({"proposers": ("drop-group",), "max_candidates": 1000, "patience": 50}, "exhausted"),
])
def test_the_search_stops_on_budget_rounds_plateau_or_nothing_new(world, settings, reason):
    start, vocab = disguised(world["true"])
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    result = Search(objective, SearchSettings(**settings), vocabulary=Vocabulary.from_dict(vocab, start)).run(start)
    assert result.stop_reason == reason
    assert result.n_candidates <= settings.get("max_candidates", 10**9)
    assert result.history[-1]["type"] == "end" and result.history[-1]["stop_reason"] == reason


def test_bad_settings_are_named():
    with pytest.raises(InputError, match="per_round must be a whole number >= 1.*unknown proposer"):
        SearchSettings(per_round=0, proposers=("nope",))
    with pytest.raises(InputError, match="need an LLM"):
        Search(Objective(synthetic_set(small_system(), 2, np.random.default_rng(0)), hashed_embed, 10.0),
               SearchSettings(proposers=("llm-system",)))


# ----------------------------------------------------------- LLM proposers
@pytest.fixture
def no_proxy(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def test_llm_revision_is_validated_repaired_and_scored(world, no_proxy):
    start, _ = disguised(world["true"])
    invalid = dict(world["true"].to_dict(), rules={c: r for c, r in list(world["true"].to_dict()["rules"].items())[:-1]})
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    with ScriptedChatServer([reply(json.dumps(invalid)), reply("```json\n" + json.dumps(world["true"].to_dict()) + "\n```")]) as server:
        with ChatClient(LLMSettings(base_url=server.base_url, model="m", retry=FAST_RETRY)) as client:
            result = Search(objective, SearchSettings(proposers=("llm-system",), llm_requests=2, max_rounds=3), llm=client).run(start)
        first, repair = server.requests[0].last_user, server.requests[1].last_user
    assert "Current system (JSON)" in first and "Confusions that cost most" in first and "chance" in first
    assert "missing class" in repair
    notes = [r for r in result.history if r["type"] == "note"]
    assert notes[0]["error"] == "invalid revision" and notes[0]["attempt"] == 1
    assert result.best == world["true"] and result.llm_requests == 2
    row = next(r for r in result.history if r.get("proposer") == "llm-system" and r["type"] == "candidate")
    assert row["edit"]["kind"] == "replace-system" and row["new_best"]


def test_llm_revision_retry_does_not_echo_a_runaway_unreadable_answer(world, no_proxy):
    from cotembed.authoring._drafting import ECHO_LIMIT

    start, _ = disguised(world["true"])
    runaway = "I cannot say. " + "blah " * 40_000 + "THE-END"
    objective = Objective(world["train"], hashed_embed, 100.0)
    with ScriptedChatServer([reply(runaway), reply("```json\n" + json.dumps(world["true"].to_dict()) + "\n```")]) as server:
        with ChatClient(LLMSettings(base_url=server.base_url, model="m", retry=FAST_RETRY)) as client:
            result = Search(objective, SearchSettings(proposers=("llm-system",), llm_requests=2, max_rounds=3), llm=client).run(start)
        retry = server.requests[1].messages
    echoed = next(m["content"] for m in retry if m["role"] == "assistant")
    assert len(echoed) < ECHO_LIMIT < len(runaway)
    assert "200,021 characters" in echoed and echoed.rstrip("]").count("THE-END") == 1 and "It was refused" in echoed
    assert "could not be read as a system" in retry[-1]["content"]
    assert result.best == world["true"]


def test_llm_wordings_join_the_vocabulary_and_an_unavailable_llm_ends_llm_proposals(world, no_proxy):
    start, _ = disguised(world["true"])
    g0 = start.groups[0]
    answer = {"g0": {g0.options[i]: [world["true"].groups[0].options[i], "x y z"] for i in range(len(g0.options))}}
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    script = [reply(json.dumps(answer))] + [error(503)] * 4
    with ScriptedChatServer(script) as server:
        with ChatClient(LLMSettings(base_url=server.base_url, model="m", retry=FAST_RETRY)) as client:
            settings = SearchSettings(proposers=("llm-wordings", "reword"), llm_requests=5, max_rounds=6)
            result = Search(objective, settings, llm=client).run(start)
        asked = len(server.requests)
    assert result.vocabulary.alternatives("g0", g0.options[0])[0] == world["true"].groups[0].options[0]
    assert any(r.get("proposer") == "llm-wordings" and r["type"] == "candidate" for r in result.history)
    assert result.best.groups[0].options != g0.options  # the LLM's words were tried and kept
    errors = [r["error"] for r in result.history if r["type"] == "note" and "error" in r]
    assert errors and "LLMUnavailable" in errors[0]
    assert asked == 1 + FAST_RETRY.max_attempts  # one answer, then one failed request: LLM proposals ended


# --------------------------------------------------------------------- plot
def test_trajectory_plot_is_written_from_the_history(tmp_path, world):
    from cotembed.reporting._plots import plot_trajectory

    start, vocab = disguised(world["true"])
    objective = Objective(world["train"], hashed_embed, 100.0, val=world["val"])
    result = Search(objective, SearchSettings(max_candidates=60), vocabulary=Vocabulary.from_dict(vocab, start)).run(start)
    path = plot_trajectory(result.history, tmp_path / "t.png", "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="no scored candidate"):
        plot_trajectory([{"type": "end"}], tmp_path / "x.png")


# ---------------------------------------------------------------------- CLI
PARAPHRASES = {"red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden"}


@pytest.fixture
def colour_task(tmp_path) -> dict[str, Path]:
    """Colour images, a system worded in paraphrases the colour model does not know, and a vocabulary with the colour names."""
    system = {"name": "paraphrased colours", "groups": {"colour": {"prompt": "a photo of something {}", "options": list(PARAPHRASES.values())}},
              "rules": {f"{c}-thing": {"colour": p} for c, p in PARAPHRASES.items()}}
    (tmp_path / "system.yaml").write_text(yaml.safe_dump(system), encoding="utf-8")
    (tmp_path / "vocab.yaml").write_text(yaml.safe_dump({"colour": {p: ["vivid", c] for c, p in PARAPHRASES.items()}}), encoding="utf-8")
    return {"system": tmp_path / "system.yaml", "vocab": tmp_path / "vocab.yaml", "train": make_image_folder(tmp_path / "train", 4),
            "val": make_image_folder(tmp_path / "val", 2), "dir": tmp_path}


def cli_args(task: dict[str, Path], model: str, *extra: Any) -> list[Any]:
    return ["optimize", task["system"], task["train"], "--model", model, "--out", task["dir"] / "best.yaml",
            "--cache", task["dir"] / "cache.sqlite", "-q", "--format", "json", *extra]


def test_cli_optimize_writes_the_best_system_history_and_plot(capsys, colour_model, colour_task):
    code, out, err = run(capsys, *cli_args(colour_task, colour_model, "--val", colour_task["val"], "--eval", colour_task["val"],
                                           "--vocabulary", colour_task["vocab"], "--seed", "1"))
    assert code == 0, err
    payload = json.loads(out)
    assert payload["start"]["val_accuracy"] < 0.6 and payload["best"]["val_accuracy"] == 1.0
    assert payload["data"]["eval"]["best"] == 1.0 and payload["data"]["validation"]["n_inputs"] == 8
    best = System.load(colour_task["dir"] / "best.yaml")
    assert best.fingerprint == payload["out"]["hash"] and set(best.groups[0].options) == set(COLOURS)
    assert (colour_task["dir"] / "best.yaml").read_text().startswith("# Optimised by `cotembed optimize")
    rows = [json.loads(line) for line in (colour_task["dir"] / "best.history.jsonl").read_text().splitlines()]
    assert rows[0]["type"] == "start" and rows[-1]["type"] == "end"
    candidates = [r for r in rows if r["type"] == "candidate"]
    assert len(candidates) == payload["n_candidates"] and {"fingerprint", "edit", "train_accuracy", "val_accuracy", "time_s"} <= set(candidates[0])
    assert (colour_task["dir"] / "best.trajectory.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(capsys, "eval", colour_task["dir"] / "best.yaml", colour_task["val"], "--model", colour_model, "--methods", "cot",
                       "--cache", colour_task["dir"] / "cache.sqlite", "-q", "--format", "json")
    assert code == 0 and json.loads(out)["methods"]["cot"]["acc1"] == 1.0  # eval agrees with what optimize reported


def test_cli_optimize_table_and_a_validation_share_of_train(capsys, colour_model, colour_task):
    args = [a for a in cli_args(colour_task, colour_model, "--vocabulary", colour_task["vocab"], "--val-fraction", "0.25") if a != "json"]
    args.remove("--format")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "path to the best system:" in out and "wrote" in out and "validation" in out
    assert "25% of TRAIN per class (seed 0)" in (colour_task["dir"] / "best.yaml").read_text()


@pytest.mark.parametrize(("extra", "message"), [
    (("--proposers", "reword,nope"), "unknown proposer"),
    (("--proposers", "llm-system"), "no LLM model given"),
    (("--vocabulary", "VOCAB_BAD"), "bad.yaml"),
    (("--history", "h.json"), "name it .jsonl"),
])
def test_cli_optimize_bad_input_exits_2_and_writes_nothing(capsys, colour_model, colour_task, extra, message, monkeypatch):
    bad = colour_task["dir"] / "bad.yaml"
    bad.write_text("weather: [sunny]\n", encoding="utf-8")
    extra = tuple(str(bad) if e == "VOCAB_BAD" else e for e in extra)
    monkeypatch.delenv("COTEMBED_LLM_MODEL", raising=False)
    code, out, err = run(capsys, *cli_args(colour_task, colour_model, *extra))
    assert code == 2 and message in err
    assert not (colour_task["dir"] / "best.yaml").exists() and not (colour_task["dir"] / "best.history.jsonl").exists()


def test_cli_optimize_refuses_to_overwrite_without_force(capsys, colour_model, colour_task):
    (colour_task["dir"] / "best.yaml").write_text("keep me", encoding="utf-8")
    code, _, err = run(capsys, *cli_args(colour_task, colour_model))
    assert code == 2 and "--force" in err and (colour_task["dir"] / "best.yaml").read_text() == "keep me"
    code, _, err = run(capsys, "optimize", colour_task["system"], colour_task["train"], "--model", colour_model, "--out", colour_task["system"])
    assert code == 2 and "is SYSTEM" in err and "an input of this run" in err
    code, _, err = run(capsys, *cli_args(colour_task, colour_model, "--force", "--max-candidates", "3"))
    assert code == 0, err
    System.load(colour_task["dir"] / "best.yaml")


def test_cli_optimize_with_an_llm_against_a_scripted_server(capsys, colour_model, colour_task, no_proxy):
    fixed = {"name": "fixed", "groups": {"colour": {"prompt": "a photo of something {}", "options": list(COLOURS)}},
             "rules": {f"{c}-thing": {"colour": c} for c in COLOURS}}
    with ScriptedChatServer([reply(json.dumps(fixed))]) as server:
        code, out, err = run(capsys, *cli_args(colour_task, colour_model, "--val", colour_task["val"], "--llm-base-url", server.base_url,
                                               "--llm-model", "scripted", "--proposers", "llm-system", "--llm-requests", "1"))
        assert len(server.requests) == 1
    assert code == 0, err
    payload = json.loads(out)
    assert payload["best"]["val_accuracy"] == 1.0 and payload["llm_requests"] == 1
    assert System.load(colour_task["dir"] / "best.yaml").groups[0].options == tuple(COLOURS)


def test_hashed_world_is_learnable():
    """The synthetic world the search tests rely on: the true system is far better than chance."""
    rng = np.random.default_rng(7)
    true = random_system(rng, groups=3, options=4, classes=10)
    assert acc(true, synthetic_set(true, 12, rng, noise=0.6)) > 0.8 and DIM == 64


class InterruptingProposer:
    """A proposer (the protocol: ``name``, ``needs_llm``, ``propose(ctx)``) whose second round is Ctrl-C."""

    name = "interrupt-test"
    description = "rewords once, then the user presses Ctrl-C"
    needs_llm = False

    def propose(self, ctx):
        if ctx.round > 1:
            raise KeyboardInterrupt
        group = ctx.system.groups[0]
        singles = [RewordOption(group.name, group.options[i], c) for i, c in enumerate(COLOURS)]
        return [*singles, Compound(tuple(singles), note="all four")]


def test_an_interrupted_run_still_writes_a_valid_best_system(capsys, colour_model, colour_task, monkeypatch):
    from cotembed.optimize import _proposers as proposers

    with proposers.registered_proposer(InterruptingProposer.name, InterruptingProposer):
        code, out, err = run(capsys, *cli_args(colour_task, colour_model, "--val", colour_task["val"], "--proposers", "interrupt-test"))
    assert code == 130, err
    payload = json.loads(out)
    assert payload["stop_reason"] == "interrupted" and payload["n_candidates"] == 5
    best = System.load(colour_task["dir"] / "best.yaml")
    assert best.fingerprint == payload["out"]["hash"] and payload["best"]["val_accuracy"] > payload["start"]["val_accuracy"]
    assert json.loads((colour_task["dir"] / "best.history.jsonl").read_text().splitlines()[-1])["stop_reason"] == "interrupted"

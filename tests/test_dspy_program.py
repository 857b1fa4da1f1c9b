"""The optimisation as a DSPy program and as a GEPA run (the ``dspy`` extra), with no real LLM:
DSPy's DummyLM, a scripted callable, and the scripted local chat server through the CLI."""

from __future__ import annotations

import builtins
import json
from typing import Any

import numpy as np
import pytest
import yaml

from cotembed import System
from cotembed.authoring._llm import ChatReply, LLMSettings
from cotembed.errors import InputError, MissingDependencyError
from cotembed.optimize import Objective, SearchSettings
from cotembed.optimize.dspy_program import Tracker, run_dspy, run_gepa
from llm_server import PROXY_VARS, ScriptedChatServer, reply
from support import COLOURS, make_image_folder
from support import run_cli as run
from synthetic import hashed_embed, random_system, synthetic_set

dspy = pytest.importorskip("dspy", reason="the dspy extra is not installed: pip install 'cotembed[dspy]'")
from dspy.utils import DummyLM  # noqa: E402


@pytest.fixture
def task() -> dict[str, Any]:
    """A synthetic task: the true system, a start with half its rules broken, train and validation rows."""
    rng = np.random.default_rng(11)
    true = random_system(rng, groups=3, options=4, classes=8)
    broken = true.with_rules({c: {"g0": (true.rules[c]["g0"][0] + 1) % 4, "g1": (true.rules[c]["g1"][0] + 1) % 4}
                              for c in true.class_names[:5]})
    objective = Objective(synthetic_set(true, 10, rng, noise=0.5), hashed_embed, 100.0, val=synthetic_set(true, 6, rng, noise=0.5))
    return {"true": true, "start": broken, "objective": objective}


def as_json(system: System) -> str:
    return json.dumps(system.to_dict())


def test_dspy_program_revises_the_system_and_keeps_the_best(task):
    lm = DummyLM([{"revised_system": "I would change the colours."}, {"revised_system": as_json(task["true"])}]
                 + [{"revised_system": as_json(task["true"])}] * 5)
    rows: list[dict[str, Any]] = []
    result = run_dspy(task["start"], task["objective"], lm, settings=SearchSettings(max_rounds=4, patience=2), optimizer="none",
                      record=rows.append)
    assert result.best == task["true"] and result.best_score.val > result.start_score.val + 0.2
    kinds = [r["type"] for r in rows]
    assert kinds[0] == "start" and "invalid" in kinds and kinds[-1] == "end"
    assert "no system" in next(r["error"] for r in rows if r["type"] == "invalid")
    assert result.stop_reason == "plateau" and result.n_candidates == 1  # the repeated answer is scored once
    first_prompt = json.dumps(lm.history[0]["messages"])
    assert "revised_system" in first_prompt and "chance" in first_prompt  # the diagnostics reach the LM


class InstructionFollowingChat:
    """A chat model (cotembed's ChatModel protocol) that plays both of GEPA's roles: asked to reflect, it
    proposes a new instruction; asked to revise, it returns the true system only when its instructions say
    so, and otherwise a valid but no better one. So the true system can only come from GEPA's compile."""

    INSTRUCTION = "Fix the rules that the confusions point at."

    def __init__(self, good: System, plain: System):
        self.settings = LLMSettings(base_url="http://127.0.0.1:9/v1", model="fake")
        self.good, self.plain = good, plain
        self.reflections: list[str] = []
        self.revisions = 0

    def complete(self, messages):
        system_message = messages[0]["content"]
        if "current_instruction" in system_message:
            self.reflections.append(json.dumps(messages))
            text = json.dumps({"new_instruction": self.INSTRUCTION})  # the reflection prompt asks for a JSON object
        else:
            self.revisions += 1
            chosen = self.good if self.INSTRUCTION in system_message else self.plain
            text = f"[[ ## revised_system ## ]]\n{as_json(chosen)}\n\n[[ ## completed ## ]]"
        return ChatReply(text, "stop", "fake", {}, 0.0)


def test_dspy_gepa_compiles_the_reviser_with_cotembed_accuracy_as_metric(task):
    chat = InstructionFollowingChat(task["true"], task["start"].with_temperature(50.0))
    result = run_dspy(task["start"], task["objective"], chat, settings=SearchSettings(llm_requests=4, max_rounds=2, patience=1),
                      optimizer="gepa")
    assert chat.reflections, "GEPA never asked the reflection LM"
    assert "Confusions that cost most" in chat.reflections[0] or "chance" in chat.reflections[0]  # cotembed's feedback
    assert result.best == task["true"] and result.best_score.val > result.start_score.val
    assert result.settings["optimizer"] == "gepa" and result.llm_requests == chat.revisions + len(chat.reflections)


def test_dspy_bootstrap_keeps_a_demo_that_beat_the_start(task):
    lm = DummyLM([{"revised_system": as_json(task["true"])}] * 6)
    result = run_dspy(task["start"], task["objective"], lm, settings=SearchSettings(max_rounds=1), optimizer="bootstrap")
    assert result.best == task["true"]
    assert any(r.get("proposer") == "dspy-compile" for r in result.history)


def test_gepa_optimize_anything_over_the_yaml_text(task):
    calls: list[Any] = []

    def reflection_lm(prompt: Any) -> str:
        calls.append(prompt)
        return "```yaml\n" + yaml.safe_dump(task["true"].to_dict(), sort_keys=False) + "```"

    result = run_gepa(task["start"], task["objective"], reflection_lm, settings=SearchSettings(llm_requests=3))
    assert result.best == task["true"] and result.llm_requests == len(calls) >= 1
    text = calls[0] if isinstance(calls[0], str) else json.dumps(calls[0])
    assert "Confusions that cost most" in text or "accuracy" in text  # the side information reaches the reflection LM
    assert [r["type"] for r in result.history][0] == "start" and result.history[-1]["type"] == "end"


def test_tracker_reads_yaml_json_fenced_and_rejects_other_classes(task):
    tracker = Tracker(task["objective"], task["start"])
    for text in (yaml.safe_dump(task["true"].to_dict()), as_json(task["true"]), "Here:\n```json\n" + as_json(task["true"]) + "\n```"):
        assert tracker.parse(text)[0] == task["true"]
    renamed = task["true"].to_dict()
    renamed["rules"] = {f"x{k}": v for k, v in renamed["rules"].items()}
    system, problems = tracker.parse(json.dumps(renamed))
    assert system is None and any("not one of the requested classes" in p for p in problems)


def test_an_engine_without_an_llm_or_without_the_extra_says_what_to_do(task, monkeypatch):
    with pytest.raises(InputError, match="needs an LLM"):
        run_dspy(task["start"], task["objective"], None)
    real_import = builtins.__import__

    def no_dspy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "dspy" or name.startswith("dspy."):
            raise ImportError("No module named 'dspy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dspy)
    with pytest.raises(MissingDependencyError, match=r"cotembed\[dspy\]"):
        run_dspy(task["start"], task["objective"], object())


# ---------------------------------------------------------------------- CLI
PARAPHRASES = {"red": "crimson", "green": "emerald", "blue": "azure", "yellow": "golden"}
FIXED = {"name": "fixed", "groups": {"colour": {"prompt": "a photo of something {}", "options": list(COLOURS)}},
         "rules": {f"{c}-thing": {"colour": c} for c in COLOURS}}


@pytest.fixture
def cli_task(tmp_path, monkeypatch) -> dict[str, Any]:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    system = {"name": "paraphrased colours", "groups": {"colour": {"prompt": "a photo of something {}", "options": list(PARAPHRASES.values())}},
              "rules": {f"{c}-thing": {"colour": p} for c, p in PARAPHRASES.items()}}
    (tmp_path / "system.yaml").write_text(yaml.safe_dump(system), encoding="utf-8")
    return {"dir": tmp_path, "system": tmp_path / "system.yaml", "train": make_image_folder(tmp_path / "train", 3),
            "val": make_image_folder(tmp_path / "val", 2)}


def dspy_answer(system: dict[str, Any]) -> str:
    """What an LLM answers to DSPy's chat adapter: the output field between its markers."""
    return f"[[ ## revised_system ## ]]\n{json.dumps(system)}\n\n[[ ## completed ## ]]"


def test_cli_engines_refuse_search_only_flags_before_any_work(capsys, colour_model, cli_task):
    code, _, err = run(capsys, "optimize", cli_task["system"], cli_task["train"], "--model", colour_model, "--engine", "gepa",
                       "--proposers", "reword", "--llm-model", "m", "--out", cli_task["dir"] / "best.yaml")
    assert code == 2 and "belong to --engine search" in err and not (cli_task["dir"] / "best.history.jsonl").exists()


@pytest.mark.parametrize(("engine", "answer", "extra"), [
    ("dspy", dspy_answer(FIXED), ("--dspy-optimizer", "none", "--max-rounds", "1")),
    ("gepa", "```yaml\n" + yaml.safe_dump(FIXED) + "```", ("--llm-requests", "2")),
])
def test_cli_engines_run_against_the_scripted_server(capsys, colour_model, cli_task, engine, answer, extra):
    with ScriptedChatServer([reply(answer)] * 3) as server:
        code, out, err = run(capsys, "optimize", cli_task["system"], cli_task["train"], "--val", cli_task["val"], "--model", colour_model,
                             "--engine", engine, "--llm-base-url", server.base_url, "--llm-model", "scripted", "--out",
                             cli_task["dir"] / "best.yaml", "--cache", cli_task["dir"] / "c.sqlite", "-q", "--format", "json", *extra)
        requests = len(server.requests)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["engine"] == engine and payload["best"]["val_accuracy"] == 1.0 and requests >= 1
    assert System.load(cli_task["dir"] / "best.yaml").groups[0].options == tuple(COLOURS)
    assert (cli_task["dir"] / "best.trajectory.png").exists()
    rows = [json.loads(line) for line in (cli_task["dir"] / "best.history.jsonl").read_text().splitlines()]
    assert rows[0]["type"] == "start" and any(r["type"] == "candidate" for r in rows)

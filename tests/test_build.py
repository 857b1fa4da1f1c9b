"""`cotembed build` and the chat client, against a real local chat-completions server with scripted replies."""

from __future__ import annotations

import copy
import json
import os
import pprint
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from cotembed.authoring._llm import ENV_API_KEYS, ENV_BASE_URL, ENV_MODEL, ChatClient, LLMSettings
from cotembed.authoring.build import (
    BuildRequest,
    ClassList,
    build_system,
    draft_messages,
    extract_system,
    load_class_names,
    make_class_list,
    repair_message,
    review_draft,
    write_system,
)
from cotembed.cli._main import main
from cotembed.errors import DraftParseError, InputError, LLMBadResponse, LLMEmptyAnswer, LLMRefusal, LLMSettingsError, LLMUnavailable, SystemValidationError
from cotembed.http import RetryPolicy
from cotembed.system import System
from llm_server import PROXY_VARS, ScriptedChatServer, error, raw, reply

CLASSES = ["Absol", "Aggron", "Bulbasaur", "Weedle"]
KEY = "sk-test-key-0123456789"
ARTICLE_ANSWER = (Path(__file__).parent / "data" / "article_pokemon_answer.md").read_text(encoding="utf-8")
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_s=0.0, jitter=0.0, max_total_s=30.0)


def good_system() -> dict[str, Any]:
    return {
        "name": "pokemon_test",
        "description": "Four Pokémon told apart by colour and form.",
        "groups": {
            "dominant_color": {"prompt": "This Pokémon's body is mainly {} in color.", "options": ["white", "gray", "green", "brown"]},
            "primary_form": {"prompt": "It looks like {}.", "options": ["a wolf", "an armored dinosaur", "a toad-like creature", "a caterpillar larva"]},
        },
        "rules": {
            "Absol": {"dominant_color": "white", "primary_form": "a wolf"},
            "Aggron": {"dominant_color": "gray", "primary_form": "an armored dinosaur"},
            "Bulbasaur": {"dominant_color": "green", "primary_form": "a toad-like creature"},
            "Weedle": {"dominant_color": "brown", "primary_form": "a caterpillar larva"},
        },
    }


def bad_system() -> dict[str, Any]:
    """Three kinds of problem at once: an unknown option, a missing class, a class that was not asked for."""
    data = good_system()
    data["rules"]["Absol"]["dominant_color"] = "silver"
    del data["rules"]["Weedle"]
    data["rules"]["absol g"] = {"dominant_color": "white", "primary_form": "a wolf"}
    return data


def system_with_findings() -> dict[str, Any]:
    """Valid, but Bulbasaur and Weedle cannot be told apart and 'brown' / 'a caterpillar larva' are unused."""
    data = good_system()
    data["rules"]["Weedle"] = dict(data["rules"]["Bulbasaur"])
    return data


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedChatServer]:
    for var in (*PROXY_VARS, ENV_BASE_URL, ENV_MODEL, *ENV_API_KEYS, "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COTEMBED_LLM_API_KEY", KEY)
    with ScriptedChatServer() as scripted:
        yield scripted


@pytest.fixture()
def classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("# four Pokémon\n" + "\n".join(CLASSES) + "\n\n", encoding="utf-8")
    return path


def run(server: ScriptedChatServer, capsys: pytest.CaptureFixture[str], *args: str, model: bool = True) -> tuple[int, Any, str]:
    argv = ["build", *args, "--llm-base-url", server.base_url, "--format", "json", "-q"]
    if model:
        argv += ["--llm-model", "test-model"]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write may have left behind."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------ the verb
def test_valid_answer_is_written_with_provenance(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply(as_json(good_system())))
    out = tmp_path / "system.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--domain", "Pokémon cards",
                           "--attributes", "main colour, body shape", "--attributes", "background", "--groups", "2",
                           "--hint", "Use words a child knows.", "--name", "my_pokemon", "--llm-temperature", "0")
    assert code == 0 and payload["name"] == "my_pokemon"
    assert payload["path"] == str(out) and payload["rounds"] == 1 and payload["findings"] == []
    assert payload["n_classes"] == 4 and payload["llm"] == {"model": "test-model", "host": server.base_url.split("/")[2],
                                                            "answered_by": "scripted-model"}
    written = System.load(out)
    assert written == System.from_dict({**good_system(), "name": "my_pokemon"})
    assert written.description == "Four Pokémon told apart by colour and form."
    header = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert header[0].startswith("# Drafted by `cotembed build` on 20")
    assert header[1] == f"# LLM: test-model at {server.base_url.split('/')[2]}; 1 round(s)"
    assert header[2] == f"# Classes: 4 from {classes_file}"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions" and request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "test-model"
    system_msg, task = request.messages
    assert system_msg["role"] == "system" and "{}" in system_msg["content"]
    assert json.dumps(CLASSES) in task["content"] and "(Pokémon cards)" in task["content"]
    assert "mutually exclusive" in task["content"] and '"rules"' in task["content"]
    assert "1. 2 attribute groups based on visual features" in task["content"]
    assert "Consider these attributes: main colour; body shape; background." in task["content"]
    assert "- Use words a child knows." in task["content"] and request.body["temperature"] == 0.0
    assert leftovers(tmp_path) == []


def test_every_problem_goes_back_and_the_repair_is_written(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    first = as_json(bad_system())
    server.push(reply(first), reply(as_json(good_system())))
    out = tmp_path / "system.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out))
    assert code == 0 and payload["rounds"] == 2
    assert System.load(out) == System.from_dict(good_system())
    assert "# LLM: test-model at" in out.read_text(encoding="utf-8") and "; 2 round(s)" in out.read_text(encoding="utf-8")
    expected = review_draft(bad_system(), CLASSES).problems
    assert len(expected) == 3
    repair = server.requests[1]
    for problem in expected:
        assert problem in repair.last_user
    assert "'silver' is not one of the group's options" in repair.last_user
    assert "missing class(es) 'Weedle'" in repair.last_user
    assert "rules.absol g: not one of the requested classes" in repair.last_user
    assert repair.messages[-2] == {"role": "assistant", "content": first}
    assert repair.messages[:2] == server.requests[0].messages  # the same task, then the draft and the problems


def test_malformed_json_is_sent_back_as_unreadable(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply('{"groups": {"dominant_color": {"prompt": "It is {}.", "options": ["red", '), reply(as_json(good_system())))
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"))
    assert code == 0 and payload["rounds"] == 2
    assert "could not be read as a system" in server.requests[1].last_user


def test_prose_and_fences_around_the_json(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply(f"Sure! Here's a system with {{}} placeholders:\n```json\n{as_json(good_system())}\n```\nLet me know if you'd like changes."))
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"))
    assert code == 0 and payload["rounds"] == 1


def test_the_articles_own_answer_shape_loads(server: ScriptedChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = tmp_path / "classes.yaml"
    classes.write_text("- Absol\n- Absol G\n", encoding="utf-8")
    server.push(reply(ARTICLE_ANSWER))
    out = tmp_path / "pokemon.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes), "--out", str(out), "--rounds", "0")
    assert code == 0
    system = System.load(out)
    assert system.group_names == ("dominant_color", "primary_form", "key_trait", "body_shape", "background_scene")
    assert system.rules["Absol"]["background_scene"] == (2,) and system.rules["Absol G"]["background_scene"] == (0,)
    assert system.groups[0].prompt == "This Pokémon's body is mainly {} in color."
    assert system.description  # filled in when the answer has none
    kinds = [f.split(":")[0] for f in payload["findings"]]
    assert kinds == ["unused-option"] * 5 + ["no-information"] * 4  # two classes that differ only in their background
    assert out.read_text(encoding="utf-8").count("# Open finding: unused-option: no rule uses") == 5


def test_rate_limit_then_success(server: ScriptedChatServer, classes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.push(error(429, "Rate limit reached", retry_after=0), reply(as_json(good_system())))
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"))
    assert code == 0 and payload["rounds"] == 1 and len(server.requests) == 2


def test_server_errors_until_giving_up(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    server.push(*[error(500, "upstream exploded", retry_after=0)] * 3)
    out = tmp_path / "s.yaml"
    code, payload, err = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--max-attempts", "3")
    assert code == 1 and len(server.requests) == 3
    assert "failed after 3 attempts" in err and "HTTP 500: upstream exploded" in err
    assert payload["error"]["type"] == "LLMUnavailable" and payload["error"]["exit_code"] == 1
    assert not out.exists() and leftovers(tmp_path) == []


def test_no_valid_draft_leaves_out_untouched_and_saves_the_draft_aside(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "system.yaml"
    out.write_text("# my hand-written system\n", encoding="utf-8")
    server.push(reply(as_json(bad_system())), reply(as_json(bad_system())))
    code, payload, err = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--rounds", "1", "--force")
    assert code == 1 and len(server.requests) == 2
    assert out.read_text(encoding="utf-8") == "# my hand-written system\n"
    assert payload["error"]["type"] == "BuildFailed"
    assert payload["error"]["problems"] == list(review_draft(bad_system(), CLASSES).problems)
    rejected = tmp_path / "system.rejected.yaml"
    assert f"the last draft is in {rejected}" in err
    text = rejected.read_text(encoding="utf-8")
    assert text.startswith("# REJECTED") and "# - rules: missing class(es) 'Weedle'" in text
    assert yaml.safe_load(text) == bad_system()
    with pytest.raises(SystemValidationError):
        System.load(rejected)
    assert leftovers(tmp_path) == []


def test_the_rejected_file_pairs_the_last_readable_draft_with_its_own_problems(
        server: ScriptedChatServer, classes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply(as_json(bad_system())), reply("I'm sorry, I can't do that."))
    out = tmp_path / "system.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--rounds", "1")
    assert code == 1 and "contains no system" in payload["error"]["problems"][0]
    text = (tmp_path / "system.rejected.yaml").read_text(encoding="utf-8")
    assert "option 'silver' is not one of the group's options" in text and "contains no system" not in text
    assert "# (Later answers held no readable draft.)" in text and yaml.safe_load(text) == bad_system()
    server.push(*[reply("I'm sorry, I can't do that.")] * 2)
    code, _, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--rounds", "1")
    text = (tmp_path / "system.rejected.yaml").read_text(encoding="utf-8")
    assert code == 1 and text.endswith("# I'm sorry, I can't do that.\n") and yaml.safe_load(text) is None
    assert not out.exists()


@pytest.mark.parametrize(("script", "code", "kind"), [
    ([reply("", refusal="I can't help with that.")], 1, "LLMRefusal"),
    ([reply("partial", finish_reason="content_filter")], 1, "LLMRefusal"),
    ([reply("   ")], 1, "LLMEmptyAnswer"),
    ([reply(None, finish_reason="length")], 1, "LLMEmptyAnswer"),
    ([raw("<html>502 Bad Gateway (from a proxy)</html>")], 1, "LLMBadResponse"),
    ([error(400, "This model's maximum context length is 8192 tokens")], 1, "LLMBadResponse"),
    ([error(401, "Incorrect API key provided")], 2, "LLMSettingsError"),
    ([error(404, "The model `test-model` does not exist", code="model_not_found")], 2, "LLMSettingsError"),
    ([reply("I'm sorry, I cannot produce that.")] * 3, 1, "BuildFailed"),
    ([reply("{not json at all")] * 3, 1, "BuildFailed"),
])
def test_failures_never_leave_a_system_file(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], script: list[Any], code: int, kind: str) -> None:
    server.push(*script)
    out = tmp_path / "system.yaml"
    got, payload, err = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--rounds", "2")
    assert (got, payload["error"]["type"]) == (code, kind), err
    assert not out.exists() and leftovers(tmp_path) == []
    assert server.remaining == 0


def test_findings_are_sent_back_too(server: ScriptedChatServer, classes_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply(as_json(system_with_findings())), reply(as_json(good_system())))
    out = tmp_path / "s.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out))
    assert code == 0 and payload["rounds"] == 2 and payload["findings"] == []
    repair = server.requests[1].last_user
    assert "identical-rules: add a question that separates Bulbasaur and Weedle" in repair
    assert "unused-option: no rule uses 'brown' in 'dominant_color'" in repair
    assert "unused-option: no rule uses 'a caterpillar larva' in 'primary_form'" in repair
    assert System.load(out) == System.from_dict(good_system())


def test_a_valid_draft_survives_a_repair_that_breaks_it(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply(as_json(system_with_findings())), reply(as_json(bad_system())))
    out = tmp_path / "s.yaml"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(out), "--rounds", "1")
    assert code == 0 and payload["rounds"] == 2 and len(payload["findings"]) == 3
    assert System.load(out) == System.from_dict(system_with_findings())
    assert payload["identical_rules"] == [["Bulbasaur", "Weedle"]]


def test_feedback_revises_an_existing_system_in_place(server: ScriptedChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "system.yaml"
    System.from_dict(good_system()).save(current)
    revised = copy.deepcopy(good_system())
    revised["groups"]["background_scene"] = {"prompt": "The background looks like {}.", "options": ["a rocky battlefield", "green forest"]}
    for name, scene in zip(CLASSES, ["a rocky battlefield", "a rocky battlefield", "green forest", "green forest"]):
        revised["rules"][name]["background_scene"] = scene
    server.push(reply(as_json(revised)))
    feedback = "Add a group for the background scene: rocky battlefield or green forest."
    code, payload, _ = run(server, capsys, "--from", str(current), "--feedback", feedback, "--out", str(current))
    assert code == 0 and payload["n_groups"] == 3
    assert System.load(current) == System.from_dict(revised)
    text = current.read_text(encoding="utf-8")
    assert f"# Revised from: {current}" in text and f"# Feedback: {feedback}" in text
    assert f"# Classes: 4 from {current} (its classes)" in text
    messages = server.requests[0].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"]) == System.from_dict(good_system()).to_dict()
    assert feedback in messages[3]["content"] and json.dumps(CLASSES) in messages[1]["content"]


def test_feedback_on_an_invalid_file_asks_to_fix_its_problems_too(server: ScriptedChatServer, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    current = tmp_path / "draft.yaml"
    current.write_text(yaml.safe_dump(bad_system(), allow_unicode=True), encoding="utf-8")
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(CLASSES), encoding="utf-8")
    server.push(reply(as_json(good_system())))
    out = tmp_path / "fixed.yaml"
    code, payload, _ = run(server, capsys, "--from", str(current), "--classes", str(classes), "--feedback", "Use 'white' for Absol.",
                           "--out", str(out))
    assert code == 0 and System.load(out) == System.from_dict(good_system())
    asked = server.requests[0].last_user
    assert "- Use 'white' for Absol." in asked and "invalid until these problems are fixed" in asked
    for problem in review_draft(bad_system(), CLASSES).problems:
        assert problem in asked
    assert current.read_text(encoding="utf-8") == yaml.safe_dump(bad_system(), allow_unicode=True)


def test_transcript_records_the_whole_exchange_without_the_key(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    server.push(reply("no system here"), reply(as_json(good_system())))
    transcript = tmp_path / "t.jsonl"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"), "--transcript", str(transcript))
    assert code == 0 and payload["transcript"] == str(transcript)
    text = transcript.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["type"] for r in records] == ["start", "exchange", "exchange", "end"]
    assert records[0]["classes"] == CLASSES and records[0]["llm"]["model"] == "test-model"
    first, second = records[1], records[2]
    assert (first["kind"], first["valid"], second["kind"], second["valid"]) == ("draft", False, "repair", True)
    assert first["reply"]["content"] == "no system here" and "contains no system" in first["problems"][0]
    assert second["request"]["messages"] == server.requests[1].messages
    assert records[3]["valid"] is True and records[3]["rounds"] == 2
    assert KEY not in text


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "{tmp}/s.yaml"], "give the classes"),
    (["--classes", "{classes}", "--out", "{tmp}/s.txt"], "ends in .yaml"),
    (["--classes", "{classes}", "--out", "{tmp}/missing/s.yaml"], "does not exist"),
    (["--classes", "{classes}", "--out", "{classes}.yaml", "--feedback", "more colours"], "add --from"),
    (["--classes", "{tmp}/nope.txt", "--out", "{tmp}/s.yaml"], "no such file"),
    (["--classes", "{classes}", "--out", "{tmp}/s.yaml", "--rounds", "99"], "--rounds"),
    (["--classes", "{classes}", "--out", "{tmp}/s.yaml", "--llm-temperature", "nan"], "--llm-temperature"),
])
def test_bad_input_exits_2_before_any_request(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    argv = [a.format(tmp=tmp_path, classes=classes_file) for a in args]
    code, payload, err = run(server, capsys, *argv)
    assert code == 2 and message in err and payload["error"]["exit_code"] == 2
    assert server.requests == []


def test_existing_out_needs_force_and_a_model_is_required(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.yaml"
    out.write_text("keep me\n", encoding="utf-8")
    code, _, err = run(server, capsys, "--classes", str(classes_file), "--out", str(out))
    assert code == 2 and "--force" in err
    code, _, err = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "t.yaml"), model=False)
    assert code == 2 and "--llm-model" in err and ENV_MODEL in err
    assert out.read_text(encoding="utf-8") == "keep me\n" and server.requests == []


def test_model_and_url_from_the_environment(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MODEL, "env-model")
    monkeypatch.setenv(ENV_BASE_URL, server.base_url)
    server.push(reply(as_json(good_system())))
    code = main(["build", "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"), "-q", "--modality", "text"])
    out, _ = capsys.readouterr()
    assert code == 0 and out.startswith(f"wrote {tmp_path / 's.yaml'}: 4 classes, 2 groups, 8 prompts")
    body = server.requests[0].body
    assert body["model"] == "env-model" and "temperature" not in body and "max_tokens" not in body
    assert "a text embedding model" in body["messages"][0]["content"] and "features of the text" in body["messages"][1]["content"]


# ------------------------------------------------------------- the chat client
def _client(server: ScriptedChatServer, sleeps: list[float] | None = None, **options: Any) -> ChatClient:
    options.setdefault("retry", FAST_RETRY)
    settings = LLMSettings(base_url=server.base_url, model="test-model", api_key=None, **options)
    return ChatClient(settings, sleep=(sleeps if sleeps is not None else []).append)


def test_client_sends_settings_and_returns_the_reply(server: ScriptedChatServer) -> None:
    server.push(reply("hello", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}))
    with _client(server, temperature=0.2, max_tokens=500) as client:
        answer = client.complete([{"role": "user", "content": "hi"}])
    assert (answer.content, answer.finish_reason, answer.model, answer.usage["total_tokens"]) == ("hello", "stop", "scripted-model", 4)
    body = server.requests[0].body
    assert body == {"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "max_tokens": 500}
    assert "authorization" not in server.requests[0].headers  # no key: none sent (local servers need none)


def test_client_retries_a_slow_answer_then_gives_up_with_a_clear_error(server: ScriptedChatServer) -> None:
    server.push(reply("late", delay_s=3.0), reply("on time"))
    sleeps: list[float] = []
    with _client(server, sleeps, timeout_s=0.3) as client:
        assert client.complete([{"role": "user", "content": "hi"}]).content == "on time"
        assert len(server.requests) == 2 and sleeps == [0.0]
        server.push(*[reply("late", delay_s=3.0)] * 3)
        with pytest.raises(LLMUnavailable, match=r"failed after 3 attempts.*ReadTimeout.*raise --timeout") as info:
            client.complete([{"role": "user", "content": "hi"}])
    assert info.value.attempts == 3 and info.value.status is None and info.value.exit_code == 1


def test_client_names_the_fix_for_rejected_requests(server: ScriptedChatServer) -> None:
    with _client(server) as client:
        server.push(error(401, "Incorrect API key provided"))
        with pytest.raises(LLMSettingsError, match=r"HTTP 401: Incorrect API key provided.*no API key was sent.*COTEMBED_LLM_API_KEY"):
            client.complete([{"role": "user", "content": "x"}])
        server.push(error(400, "maximum context length is 8192 tokens"))
        with pytest.raises(LLMBadResponse, match="too long for this model"):
            client.complete([{"role": "user", "content": "x"}])
        server.push(error(429, "quota", retry_after=0), error(429, "quota", retry_after=0), error(429, "quota", retry_after=0))
        with pytest.raises(LLMUnavailable, match="rate-limiting") as info:
            client.complete([{"role": "user", "content": "x"}])
        assert info.value.status == 429
    wrong = LLMSettings(base_url=server.base_url.removesuffix("/v1"), model="m", retry=FAST_RETRY)
    with ChatClient(wrong) as client, pytest.raises(LLMSettingsError, match=r"HTTP 404.*usually end in /v1"):
        client.complete([{"role": "user", "content": "x"}])
    assert isinstance(LLMSettingsError("x"), InputError)


def test_client_reads_refusals_and_content_parts(server: ScriptedChatServer) -> None:
    with _client(server) as client:
        server.push(reply(None, refusal="I can't assist with that."))
        with pytest.raises(LLMRefusal, match="refused: I can't assist"):
            client.complete([{"role": "user", "content": "x"}])
        server.push(reply(None, finish_reason="length"))
        with pytest.raises(LLMEmptyAnswer, match="raise --max-tokens"):
            client.complete([{"role": "user", "content": "x"}])
        parts = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "finish_reason": "stop"}]}
        server.push(raw(json.dumps(parts), content_type="application/json"))
        assert client.complete([{"role": "user", "content": "x"}]).content == "ab"


def test_settings_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {ENV_MODEL: "m-env", "OPENAI_API_KEY": "k2", "COTEMBED_LLM_API_KEY": "k1", "OPENAI_BASE_URL": "http://other:1/v1"}
    s = LLMSettings.resolve(env=env)
    assert (s.model, s.api_key, s.base_url, s.endpoint, s.host) == ("m-env", "k1", "http://other:1/v1", "http://other:1/v1/chat/completions", "other:1")
    s = LLMSettings.resolve("https://u:p@llm.example/v1/chat/completions/", "m-flag", "k0", env=env)
    assert (s.model, s.api_key, s.endpoint, s.host) == ("m-flag", "k0", "https://u:p@llm.example/v1/chat/completions", "llm.example")
    assert "k0" not in repr(s)
    assert LLMSettings.resolve(env={ENV_MODEL: "m"}).endpoint == "https://api.openai.com/v1/chat/completions"
    with pytest.raises(LLMSettingsError, match="no LLM model"):
        LLMSettings.resolve(env={})
    with pytest.raises(LLMSettingsError, match="must be an http"):
        LLMSettings.resolve("ftp://x", "m", env={})
    with pytest.raises(LLMSettingsError, match="timeout_s"):
        LLMSettings.resolve(None, "m", env={}, timeout_s=float("inf"))


# ------------------------------------------------------------------ the parts
def test_extract_system_shapes() -> None:
    data = good_system()
    text = as_json(data)
    assert extract_system(text) == data
    assert extract_system(f"```\n{text}\n```") == data
    assert extract_system(f"```yaml\n{yaml.safe_dump(data, allow_unicode=True)}```") == data
    python = "pokemon_system = " + pprint.pformat(data, width=60, sort_dicts=False)
    assert "'white',\n" in python
    assert extract_system(python.replace("'white',\n", "'white',  # Absol, Absol G\n") + "  # the end") == data
    loose = text.replace('"a caterpillar larva"\n', '"a caterpillar larva",  // last one\n').replace('"Weedle": {', '"Weedle": {  # brown\n')
    assert loose != text and extract_system(loose) == data
    assert extract_system("{'groups': {}, 'rules': {}, 'temperature': null, 'x': true}") == {"groups": {}, "rules": {}, "temperature": None, "x": True}
    assert extract_system(json.dumps({"pokemon_system": data})) == data
    # An example object before the real one in prose: the one with groups wins.
    assert extract_system('Use {} for the option, e.g. {"a": 1}. The system: ' + text) == data


def test_extract_system_failures_say_why() -> None:
    with pytest.raises(DraftParseError, match="contains no system"):
        extract_system("I'm sorry, I can't help with that.")
    with pytest.raises(DraftParseError, match="duplicate key 'Absol'"):
        extract_system('{"groups": {}, "rules": {"Absol": {}, "Absol": {}}}')
    with pytest.raises(DraftParseError, match="duplicate key"):
        extract_system("pokemon_system = {'rules': {'Absol': 1, 'Absol': 2}}")
    with pytest.raises(DraftParseError, match="only literal values"):
        extract_system("{'groups': __import__('os').getcwd()}")
    with pytest.raises(DraftParseError):
        extract_system('Here it is: {"groups": {"colour": {"prompt": "It is {}.", "options": ["re')


def test_the_article_answer_parses_and_validates_unchanged() -> None:
    data = extract_system(ARTICLE_ANSWER)
    assert set(data) == {"classification_cot", "pokemon_rules"}
    review = review_draft(data, ["Absol", "Absol G"])
    assert review.valid and review.system is not None
    assert review.system.groups[0].options[-1] == "light blue"


def test_review_checks_classes_orders_rules_and_fills_the_description() -> None:
    data = good_system()
    del data["description"]
    data["rules"] = dict(reversed(list(data["rules"].items())))
    review = review_draft(data, CLASSES, description="Drafted.")
    assert review.valid and review.system is not None
    assert review.system.class_names == tuple(CLASSES) and review.system.description == "Drafted."
    wrong = good_system()
    wrong["rules"]["absol"] = wrong["rules"].pop("Absol")
    problems = review_draft(wrong, CLASSES).problems
    assert problems == ("rules.absol: not one of the requested classes; write it exactly as 'Absol'",
                        "rules: missing class(es) 'Absol': every requested class needs a rule")
    assert review_draft(["not", "a", "dict"], CLASSES).problems[0].startswith("top level: expected a mapping")


def test_class_notes_and_hints_reach_the_prompt() -> None:
    request = BuildRequest(ClassList(("Absol", "Weedle"), "test", {"Absol": "white wolf with a horn"}), hints=("short options",))
    task = draft_messages(request)[1]["content"]
    assert "Notes on some classes:\n- Absol: white wolf with a horn" in task and "- short options" in task
    assert "1. 4 to 6 attribute groups" in task


def test_repair_message_lists_problems_then_findings() -> None:
    text = repair_message(["p1", "p2"], ["f1"])
    assert text.index("- p1") < text.index("- p2") < text.index("- f1")
    assert text.startswith("Your system has 2 problem(s)") and text.endswith("as one JSON object only.")
    assert repair_message([], ["f1"]).startswith("Your system is valid, but")


def test_class_lists_from_files_folders_and_manifests(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"Absol": "white wolf with a horn", "Weedle": null}', encoding="utf-8")
    listed = load_class_names(tmp_path / "c.json")
    assert listed.names == ("Absol", "Weedle") and listed.notes == {"Absol": "white wolf with a horn"}
    (tmp_path / "c.yml").write_text("classes: [Absol, 7]\n", encoding="utf-8")
    assert load_class_names(tmp_path / "c.yml").names == ("Absol", "7")
    data = tmp_path / "data"
    for name in ("Weedle", "Absol", ".hidden", "__MACOSX"):
        (data / name).mkdir(parents=True)
    (data / "stray.png").write_bytes(b"")
    assert load_class_names(data).names == ("Absol", "Weedle")
    (tmp_path / "m.csv").write_text("path,label\na.png,Weedle\nb.png,Absol\nc.png,Weedle\n", encoding="utf-8")
    assert load_class_names(tmp_path / "m.csv").names == ("Weedle", "Absol")
    (tmp_path / "m.jsonl").write_text('{"text": "hi", "label": "greeting"}\n{"text": "bye", "label": "farewell"}\n', encoding="utf-8")
    assert load_class_names(tmp_path / "m.jsonl").names == ("greeting", "farewell")
    System.from_dict(good_system()).save(tmp_path / "system.yaml")
    assert load_class_names(tmp_path / "system.yaml").names == tuple(CLASSES)
    (tmp_path / "nfd.txt").write_text("Pok\u0065\u0301mon\nOther\n", encoding="utf-8")
    assert load_class_names(tmp_path / "nfd.txt").names == ("Pok\u00e9mon", "Other")


@pytest.mark.parametrize(("content", "message"), [
    ("Absol\nabsol\n", "duplicate class name"),
    ("Absol\n", "at least 2"),
    ("{a: [1, 2]}", None),
])
def test_bad_class_lists_are_input_errors(tmp_path: Path, content: str, message: str | None) -> None:
    path = tmp_path / ("c.yaml" if content.startswith("{") else "c.txt")
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message or "expected a list of class names"):
        load_class_names(path)
    with pytest.raises(InputError, match="no class folders"):
        (tmp_path / "empty").mkdir()
        load_class_names(tmp_path / "empty")


def test_write_system_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s.yaml"
    out.write_text("old\n", encoding="utf-8")
    os.chmod(out, 0o640)
    system = System.from_dict(good_system())

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(Exception, match="No space left on device.*nothing was written"):
        write_system(system, out, "# header\n")
    assert out.read_text(encoding="utf-8") == "old\n" and leftovers(tmp_path) == []
    monkeypatch.undo()
    write_system(system, out, "# header\n")
    assert out.read_text(encoding="utf-8").startswith("# header\nname: pokemon_test\n")
    assert System.load(out) == system and (out.stat().st_mode & 0o777) == 0o640
    write_system(system, tmp_path / "s.json")
    assert System.load(tmp_path / "s.json") == system


def test_build_system_with_a_fake_model_counts_rounds() -> None:
    """build_system takes any ChatModel; here one that always answers the same invalid draft."""

    class Stubborn:
        settings = LLMSettings(base_url="http://unused.test/v1", model="fake")

        def __init__(self) -> None:
            self.calls = 0

        def complete(self, messages: Any) -> Any:
            from cotembed.authoring._llm import ChatReply

            self.calls += 1
            return ChatReply(as_json(bad_system()), "stop", "fake", {}, 0.0)

    model = Stubborn()
    request = BuildRequest(make_class_list(CLASSES, "test"))
    result = build_system(model, request, rounds=2)
    assert model.calls == 3 and result.system is None and result.rounds == 3
    assert result.problems == list(review_draft(bad_system(), CLASSES).problems) and result.last_draft == bad_system()
    with pytest.raises(InputError, match="repair rounds"):
        build_system(model, request, rounds=21)
    assert isinstance(request.classes, ClassList)


def test_a_huge_unreadable_answer_is_summarised_not_resent(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    huge = "BEGIN " + "la " * 3_500_000 + " END"  # 10.5 MB of prose, over the length an answer is read at
    server.push(reply(huge), reply(huge), reply(as_json(good_system())))
    transcript = tmp_path / "t.jsonl"
    code, payload, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"),
                           "--transcript", str(transcript))
    assert code == 0 and payload["rounds"] == 3
    for request in server.requests[1:]:
        assert len(json.dumps(request.messages)) < 20_000
        answer = request.messages[-2]
        assert answer["role"] == "assistant" and f"{len(huge):,} characters" in answer["content"]
        assert "BEGIN la" in answer["content"] and "la  END" in answer["content"] and "4,000,000" in answer["content"]
    assert "could not be read as a system" in server.requests[1].last_user
    assert transcript.stat().st_size < 100_000
    first = json.loads(transcript.read_text(encoding="utf-8").splitlines()[1])
    assert first["reply"]["content_chars"] == len(huge) and "not repeated here" in first["reply"]["content"]


def test_a_short_unreadable_answer_goes_back_whole(server: ScriptedChatServer, classes_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    broken = '{"groups": {"dominant_color": {"prompt": "It is {}.", "options": ["red", '
    server.push(reply(broken), reply(as_json(good_system())))
    code, _, _ = run(server, capsys, "--classes", str(classes_file), "--out", str(tmp_path / "s.yaml"))
    assert code == 0 and server.requests[1].messages[-2] == {"role": "assistant", "content": broken}

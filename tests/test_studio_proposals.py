"""The studio's proposals split into changes, the LLM revision (against a scripted OpenAI-compatible
server on 127.0.0.1), per-change acceptance of an optimise run, Save as, and the studio mounted
under a real ``cotembed serve``.

The model is the colour test double of ``test_studio`` (images embed to their mean colour,
texts to the colour they name), so a rule or wording change moves accuracy in a way that
can be checked by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import test_studio
from cotembed.studio._app import Background, create_app
from cotembed.studio._changes import apply_changes, system_changes
from cotembed.system import System
from llm_server import PROXY_VARS, ScriptedChatServer, reply
from test_studio import SYSTEM, open_studio, post

world = test_studio.world  # the fixtures of the studio's API tests
served = test_studio.served

ROOT = Path(__file__).resolve().parents[1]
CRITTERS = ROOT / "examples" / "critters"


@pytest.fixture()
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def colours() -> System:
    return System.from_dict(SYSTEM)


# ----------------------------------------------------------------- changes
def test_every_change_applies_alone_and_all_together_make_the_proposed_system() -> None:
    base = colours()
    data = base.to_dict()
    data["groups"]["colour"]["options"][0] = "crimson"  # a reword: rules follow it by position
    data["groups"]["mood"]["prompt"] = "the scene feels {}"
    data["groups"]["size"] = {"prompt": "it is {}", "options": ["small", "large"]}  # a new group with its rules
    for i, rule in enumerate(data["rules"].values()):
        rule["colour"] = "crimson" if rule["colour"] == "red" else rule["colour"]
        rule["size"] = "small" if i % 2 else "large"
    data["rules"]["blue-thing"]["colour"] = "green"  # a rule change
    data["temperature"] = 42.0
    proposed = System.from_dict(data)
    changes = system_changes(base, proposed)
    kinds = sorted(c["kind"] for c in changes)
    assert kinds == ["add_group", "option", "prompt", "rule", "temperature"]
    assert apply_changes(base, changes) == proposed
    for change in changes:  # each one alone leaves a valid system that differs from the base
        alone = apply_changes(base, [change])
        assert alone != base
    rule = next(c for c in changes if c["kind"] == "rule")
    assert apply_changes(base, [rule]).rules["blue-thing"]["colour"] == (base.groups[0].options.index("green"),)
    reword = next(c for c in changes if c["kind"] == "option")
    reworded = apply_changes(base, [reword])
    assert reworded.groups[0].options[0] == "crimson" and reworded.rules["red-thing"]["colour"] == (0,)


def test_options_added_or_dropped_travel_with_their_rules_and_a_dropped_group_goes_whole() -> None:
    base = colours()
    data = base.to_dict()
    data["groups"]["mood"]["options"] = ["calm", "busy", "tense"]
    data["rules"]["red-thing"]["mood"] = "tense"
    del data["groups"]["colour"]
    for rule in data["rules"].values():
        del rule["colour"]
    proposed = System.from_dict(data)
    changes = system_changes(base, proposed)
    assert sorted(c["kind"] for c in changes) == ["drop", "options"]
    options = next(c for c in changes if c["kind"] == "options")
    assert options["rules"]["red-thing"] == ["tense"]
    assert apply_changes(base, changes) == proposed
    kept = apply_changes(base, [options])
    assert kept.group_names == ("colour", "mood") and kept.groups[1].options == ("calm", "busy", "tense")


def test_a_subset_that_makes_no_valid_system_is_refused_with_its_problems(world) -> None:
    from cotembed.studio._proposals import Proposal

    base = colours()
    data = base.to_dict()
    options = data["groups"]["colour"]["options"]
    options[0], options[1] = options[1], options[0]  # two wordings swapped: each reword alone makes a duplicate
    proposed = System.from_dict(data)
    changes = system_changes(base, proposed)
    assert apply_changes(base, changes) == proposed
    studio = open_studio(world)
    studio.proposal = Proposal("p", "test", studio.system, changes, {"before": {}, "after": {}})
    first = next(i for i, c in enumerate(changes) if c["kind"] == "option")
    preview = studio.preview("p", [first])
    assert preview["ok"] is False and any("duplicate" in p for p in preview["problems"])
    refused = studio.accept("p", [first])
    assert refused.ok is False and refused.problems and studio.system == base


# ------------------------------------------------------------- LLM revision
def llm_studio(world: dict[str, Any], server: ScriptedChatServer) -> Any:
    from cotembed.authoring._llm import ChatClient, LLMSettings
    from cotembed.http import RetryPolicy

    client = ChatClient(LLMSettings(base_url=server.base_url, model="scripted-model",
                                    retry=RetryPolicy(max_attempts=1, backoff_s=0.0, jitter=0.0, max_total_s=5.0)))
    studio = open_studio(world, llm=client)
    studio.figures()
    return studio, client


def wrong_red(world: dict[str, Any]) -> None:
    """The file on disk with red-thing's colour rule wrong: the LLM has something to fix."""
    data = yaml.safe_load(world["path"].read_text(encoding="utf-8"))
    data["rules"]["red-thing"]["colour"] = "blue"
    world["path"].write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_llm_revision_sees_confusions_and_notes_is_repaired_measured_and_accepted_per_change(world, no_proxy) -> None:
    wrong_red(world)
    fixed = colours().to_dict()
    fixed["groups"]["mood"]["options"] = ["serene", "busy"]
    fixed["rules"] = {c: {**r, "mood": "serene" if r["mood"] == "calm" else r["mood"]} for c, r in fixed["rules"].items()}
    garbled = "Sure! Here is the revised system: {groups: [oops"
    script = [reply(garbled), reply("```json\n" + json.dumps(fixed) + "\n```")]
    with ScriptedChatServer(script) as server:
        studio, client = llm_studio(world, server)
        with client, Background(create_app(studio)) as url, httpx.Client(base_url=url, timeout=60) as http:
            assert 'id="llm"' in http.get("/").text and 'id="llm-notes"' in http.get("/").text
            post(http, "/api/claim")
            before = studio.figures().report.methods["cot"].acc1
            answer = post(http, "/api/propose/llm", notes="red things are never <b>blue</b>").json()
            first, repair = server.requests[0].last_user, server.requests[1].last_user
            proposal = answer["proposal"]
            assert "Current system (JSON)" in first and "Confusions that cost most" in first and "red-thing -> " in first
            assert "red things are never <b>blue</b>" in first  # the notes go to the LLM as typed
            assert "could not be read as a system" in repair  # the garbled answer went back once with its problem
            assert proposal["source"] == "llm" and "after 1 repair" in proposal["note"]
            kinds = {(c["kind"], c.get("class"), c.get("group")) for c in proposal["changes"]}
            assert ("rule", "red-thing", "colour") in kinds and ("option", None, "mood") in kinds
            assert proposal["effect"]["before"]["cot"] == pytest.approx(before) and proposal["effect"]["after"]["cot"] == 1.0
            assert "<ins>serene</ins>" in answer["fragments"]["proposal"]
            rule = next(i for i, c in enumerate(proposal["changes"]) if c["kind"] == "rule")
            preview = post(http, "/api/proposal/preview", id=proposal["id"], accepted=[rule]).json()
            assert preview["ok"] is True and preview["after"]["cot"] == 1.0 and "cot " in preview["line"] and "→ 100.0%" in preview["line"]
            accepted = post(http, "/api/proposal/accept", id=proposal["id"], accepted=[rule]).json()
            assert accepted["ok"] is True and accepted["metrics"]["accuracy"]["cot"] == 1.0
            assert studio.system.rules["red-thing"]["colour"] == (0,)
            assert studio.system.groups[1].options == ("calm", "busy")  # the reword was not accepted


@pytest.mark.parametrize(("script", "says"), [
    ([reply(None, refusal="I can't help with that.")], "refused"),
    ([reply("no system here, sorry"), reply('{"groups": {}}')], "not a valid system after 2 answer(s)"),
])
def test_a_refused_or_garbled_llm_answer_is_an_error_and_proposes_nothing(world, no_proxy, script, says) -> None:
    with ScriptedChatServer(script) as server:
        studio, client = llm_studio(world, server)
        with client, Background(create_app(studio)) as url, httpx.Client(base_url=url, timeout=60) as http:
            post(http, "/api/claim")
            refused = post(http, "/api/propose/llm", notes="")
            assert refused.status_code == 502 and refused.json()["error"]["type"] == "llm_error"
            assert says in refused.json()["error"]["message"]
            assert studio.proposal is None and server.remaining == 0


def test_while_the_llm_answers_the_page_keeps_working_and_a_second_request_is_told(world, no_proxy) -> None:
    import concurrent.futures

    with ScriptedChatServer([reply(json.dumps(SYSTEM), delay_s=1.5)]) as server:
        studio, client = llm_studio(world, server)
        with client, Background(create_app(studio)) as url, httpx.Client(base_url=url, timeout=60) as http:
            post(http, "/api/claim")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pending = pool.submit(post, http, "/api/propose/llm", notes="")
                deadline = time.monotonic() + 10
                while not server.requests:  # the LLM has the request and waits before answering
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                started = time.monotonic()
                assert http.get("/api/metrics").status_code == 200
                assert time.monotonic() - started < 1.0  # not held up by the LLM
                busy = post(http, "/api/propose/llm", notes="")
                assert busy.status_code == 409 and busy.json()["error"]["type"] == "busy"
                answer = pending.result(timeout=30).json()
            assert answer["proposal"]["changes"] == [] and "no change" in answer["message"]


def test_without_an_llm_the_button_is_off_and_the_api_says_how_to_configure_one(served) -> None:
    client, _ = served
    assert 'id="llm" disabled' in client.get("/").text
    post(client, "/api/claim")
    refused = post(client, "/api/propose/llm", notes="x")
    assert refused.status_code == 422 and "--llm-model" in refused.json()["error"]["message"]


# --------------------------------------------------- optimize, per change
def test_an_optimize_proposal_is_split_into_changes_accepted_one_by_one(served) -> None:
    from test_studio import _wait_for_optimization

    client, studio = served
    post(client, "/api/claim")
    post(client, "/api/edit", op="rule", **{"class": "red-thing"}, group="colour", text="blue")
    post(client, "/api/edit", op="rule", **{"class": "green-thing"}, group="colour", text="blue")
    post(client, "/api/propose/optimize", max_candidates=200, max_seconds=60)
    _wait_for_optimization(client)
    proposal = client.get("/api/state").json()["fragments"]["proposal"]
    assert studio.proposal is not None and len(studio.proposal.changes) >= 1, proposal
    changes = studio.proposal.changes
    assert all(c["kind"] != "system" for c in changes)
    assert proposal.count('name="change"') == len(changes)
    first = post(client, "/api/proposal/preview", id=studio.proposal.id, accepted=[0]).json()
    assert first["ok"] is True and set(first["after"]) == set(studio.methods)
    expected = studio.proposal.apply(studio.system, [0])
    assert post(client, "/api/proposal/accept", id=studio.proposal.id, accepted=[0]).json()["ok"] is True
    assert studio.system == expected


# ------------------------------------------------------------------ save as
def save_as(client: httpx.Client, target: str, confirm: bool = False) -> httpx.Response:
    return client.post("/api/save_as", json={"tab": "tab-1", "path": target, "confirm": confirm})


def test_save_as_writes_a_new_file_refuses_to_overwrite_without_confirmation_and_goes_on_editing_it(served, world) -> None:
    client, studio = served
    post(client, "/api/claim")
    original = world["path"].read_text(encoding="utf-8")
    post(client, "/api/edit", op="option", group="mood", index=1, text="hectic")
    saved = save_as(client, "revised.yaml").json()
    target = world["path"].parent / "revised.yaml"
    assert saved["saved"]["written"] is True and saved["saved"]["backup"] is None and "now editing" in saved["message"]
    assert System.load(target) == studio.system and target.read_text(encoding="utf-8").startswith("# hand-written colours\n")
    assert world["path"].read_text(encoding="utf-8") == original  # the opened file is untouched
    assert studio.path == target and not client.get("/api/metrics").json()["dirty"]
    post(client, "/api/edit", op="weight", group="mood", text="2")
    (world["path"].parent / "taken.json").write_text("{}", encoding="utf-8")
    asked = save_as(client, "taken.json").json()
    assert asked["ok"] is False and "confirm" in asked["confirm"]
    assert (world["path"].parent / "taken.json").read_text(encoding="utf-8") == "{}"
    confirmed = save_as(client, "taken.json", True).json()["saved"]
    assert Path(confirmed["backup"]).read_text(encoding="utf-8") == "{}"
    assert json.loads((world["path"].parent / "taken.json").read_text(encoding="utf-8"))["groups"]["mood"]["weight"] == 2.0
    assert System.load(world["path"].parent / "taken.json") == studio.system
    for bad in ("notes.txt", "missing-folder/x.yaml", ""):
        refused = save_as(client, bad)
        assert refused.status_code == 422, bad
    assert not list(world["path"].parent.glob("*.tmp*"))  # atomic writes leave no temporary file


# ------------------------------------------------------------ --format json
def test_studio_format_json_prints_the_url_and_first_figures(world) -> None:
    cmd = [sys.executable, "-m", "cotembed.cli", "studio", str(world["path"]), str(world["folder"]), "--model", "critters",
           "--no-cache", "-q", "--port", "0", "--format", "json"]
    env = {k: v for k, v in os.environ.items() if k not in ("COTEMBED_API_KEY", "COTEMBED_LLM_MODEL")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline(), parse_constant=lambda c: pytest.fail(f"non-finite {c}"))
        assert ready["url"].startswith("http://127.0.0.1:") and ready["labelled"] is True and ready["llm"] is None
        assert ready["inputs"] == len(world["data"]) and set(ready["accuracy"]) == {"cot", "hybrid"}
        metrics = httpx.get(ready["url"] + "api/metrics", timeout=30).json()
        assert metrics["fingerprint"] == ready["fingerprint"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------ serve --studio
def _ready(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    ready: dict[str, Any] = json.loads(line)
    return ready


def test_serve_mounts_the_studio_behind_its_api_key(world, tmp_path: Path) -> None:
    from cotembed_critters.species import generate_split

    split = tmp_path / "split"
    generate_split(CRITTERS / "species.yaml", split, 1, seed=5, progress=False)
    key = "studio-key-1"
    cmd = [sys.executable, "-m", "cotembed.cli", "serve", "--model", "critters", "--port", "0", "--format", "json",
           "--no-cache", "--log-level", "warning", "--studio", str(CRITTERS / "system.yaml"), str(split)]
    env = {k: v for k, v in os.environ.items() if k != "COTEMBED_API_KEY"}
    proc = subprocess.Popen([*cmd, "--api-key", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        ready = _ready(proc)
        base, studio_url = ready["url"], ready["studio"]
        assert studio_url == base + "/studio/"
        deadline = time.monotonic() + 60
        while httpx.get(base + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(studio_url, timeout=30).status_code == 401  # the service's key guards the studio
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=studio_url, headers=auth, timeout=60) as client:
            page = client.get("")
            assert page.status_code == 200 and 'src="static/studio.js"' in page.text
            assert client.get("static/studio.js").status_code == 200
            before = client.get("api/metrics").json()["accuracy"]["cot"]
            assert client.post("api/claim", json={"tab": "t"}).json()["holder"] is True
            group = System.load(CRITTERS / "system.yaml").group_names[0]
            edit = client.post("api/edit", json={"tab": "t", "op": "weight", "group": group, "text": "0.25"}).json()
            assert edit["ok"] is True and isinstance(edit["metrics"]["accuracy"]["cot"], float)
            assert before is not None
        redirect = httpx.get(base + "/studio", headers=auth, timeout=30)
        assert redirect.status_code == 307 and redirect.headers["location"] == "/studio/"
        link = httpx.get(studio_url + f"?key={key}", timeout=30)  # the link leaves a cookie and returns to the page
        assert link.status_code == 303 and link.headers["location"] == "/studio/"
        assert httpx.get(base + "/v1/models", headers=auth, timeout=30).status_code == 200  # the service is unchanged
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    bad = subprocess.run([*cmd[:-3], "--host", "0.0.0.0", "--insecure-no-auth", "--studio", str(CRITTERS / "system.yaml"), str(split)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "API key" in bad.stderr
    one = subprocess.run([*cmd[:-2], str(CRITTERS / "system.yaml")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert one.returncode == 2 and "--studio SYSTEM DATA" in one.stderr
    many = subprocess.run([*cmd, "--workers", "2"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert many.returncode == 2 and "--workers 2" in many.stderr and "one process" in many.stderr

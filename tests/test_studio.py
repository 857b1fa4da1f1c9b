"""The studio's API against the real server on loopback (uvicorn in a thread, a free port).

The model is the colour test double (images embed to their mean colour, texts to the
colour they name), so renaming the option "red" to a word that names no colour must
cost the red class its accuracy, and every figure can be checked by hand.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cotembed._embeddings import EmbeddingSet, PromptBank
from cotembed.data import collect_samples
from cotembed.studio._app import Background, create_app
from cotembed.studio._state import Studio
from cotembed.system import System
from support import COLOURS, ColourEncoder, make_image_folder

SYSTEM = {
    "name": "colours",
    "groups": {
        "colour": {"prompt": "a photo of something {}", "options": list(COLOURS)},
        "mood": {"prompt": "it feels {}", "options": ["calm", "busy"]},
    },
    "rules": {f"{c}-thing": {"colour": c, "mood": "calm" if i % 2 else "busy"} for i, c in enumerate(COLOURS)},
}


@pytest.fixture()
def world(tmp_path: Path) -> dict[str, Any]:
    folder = make_image_folder(tmp_path / "data", per_class=3)
    path = tmp_path / "colours.yaml"
    path.write_text("# hand-written colours\n" + yaml.safe_dump(SYSTEM, sort_keys=False), encoding="utf-8")
    encoder = ColourEncoder()
    data = EmbeddingSet.from_samples(collect_samples([folder]), encoder)
    bank = PromptBank(encoder)
    return {"path": path, "folder": folder, "encoder": encoder, "data": data, "bank": bank, "tmp": tmp_path}


def open_studio(world: dict[str, Any], data: EmbeddingSet | None = None, **kwargs: Any) -> Studio:
    return Studio(world["path"], data if data is not None else world["data"], world["bank"].embed,
                  logit_scale=world["encoder"].logit_scale, **kwargs)


@pytest.fixture()
def served(world: dict[str, Any]):
    studio = open_studio(world, state_dir=world["tmp"] / "state")
    studio.figures()  # as the CLI does before it serves
    with Background(create_app(studio)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, studio


def post(client: httpx.Client, path: str, tab: str = "tab-1", **body: Any) -> httpx.Response:
    return client.post(path, json={"tab": tab, **body})


def test_page_shows_accuracy_confusion_questions_and_findings(served) -> None:
    client, _ = served
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert 'id="acc-cot" data-value="1.0"' in html  # every colour is named by its option
    assert 'id="confusion"' in html and 'data-true="red-thing" data-pred="red-thing"' in html
    assert 'id="questions"' in html and ">mood<" in html
    assert 'id="findings"' in html
    assert client.get("/static/studio.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../_app.py").status_code == 404


def test_an_option_edit_rescores_embedding_only_the_new_prompt(served, world) -> None:
    client, studio = served
    assert post(client, "/api/claim").json()["holder"] is True
    before = world["encoder"].texts_encoded
    images = world["encoder"].images_encoded
    answer = post(client, "/api/edit", op="option", group="colour", index=0, text="scarlet").json()
    assert answer["ok"] is True
    assert answer["metrics"]["accuracy"]["cot"] == pytest.approx(0.75)  # red-thing now matches no option well
    assert world["encoder"].texts_encoded - before == 1  # only "a photo of something scarlet"
    assert world["encoder"].images_encoded == images
    assert "-    - red" in answer["fragments"]["diff"] or "red" in answer["fragments"]["diff"]
    assert "+    - scarlet" in studio.diff()
    assert 'id="acc-cot" data-value="0.75"' in answer["fragments"]["summary"]


def test_an_invalid_edit_names_its_field_and_the_last_valid_system_keeps_scoring(served) -> None:
    client, studio = served
    post(client, "/api/claim")
    fingerprint = studio.system.fingerprint
    answer = post(client, "/api/edit", op="option", group="colour", index=1, text="red").json()  # a duplicate option
    assert answer["ok"] is False and answer["field"] == "option:colour:1"
    assert any("red" in p for p in answer["problems"])
    assert studio.system.fingerprint == fingerprint and answer["metrics"]["accuracy"]["cot"] == 1.0
    answer = post(client, "/api/yaml", text="groups: [1, 2\n").json()
    assert answer["ok"] is False and answer["field"] == "yaml" and answer["problems"]
    assert answer["metrics"]["draft"]["text"] == "groups: [1, 2\n"
    assert 'id="invalid"' in answer["fragments"]["status"]
    assert studio.system.fingerprint == fingerprint
    rule = post(client, "/api/edit", op="rule", **{"class": "red-thing"}, group="colour", text="purple").json()
    assert rule["ok"] is False and "purple" in rule["problems"][0] and rule["field"] == "rule:red-thing:colour"


def test_user_text_is_escaped_everywhere(served) -> None:
    client, _ = served
    post(client, "/api/claim")
    answer = post(client, "/api/edit", op="option", group="mood", index=0, text='<img src=x onerror="alert(1)">').json()
    assert answer["ok"] is True
    page = client.get("/").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=" in page


def test_undo_redo_and_yaml_edits(served) -> None:
    client, studio = served
    post(client, "/api/claim")
    original = studio.system
    refused = post(client, "/api/edit", op="weight", group="mood", text="0").json()
    assert refused["ok"] is False and refused["field"] == "weight:mood"  # weights are positive
    post(client, "/api/edit", op="weight", group="mood", text="0.5")
    assert studio.system.groups[1].weight == 0.5
    text = studio.render().replace("busy", "hectic")
    assert post(client, "/api/yaml", text=text).json()["ok"] is True
    assert "hectic" in studio.system.groups[1].options
    assert post(client, "/api/undo").json()["metrics"]["can_redo"] is True
    post(client, "/api/undo")
    assert studio.system == original
    post(client, "/api/redo")
    assert studio.system.groups[1].weight == 0.5


def test_a_second_tab_is_told_and_refused_until_it_takes_over(served) -> None:
    client, studio = served
    assert post(client, "/api/claim", tab="first").json()["holder"] is True
    second = post(client, "/api/claim", tab="second").json()
    assert second["holder"] is False and "another tab" in second["message"]
    refused = post(client, "/api/edit", tab="second", op="weight", group="mood", text="2")
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "other_tab"
    assert studio.system.groups[1].weight == 1.0
    assert post(client, "/api/claim", tab="second", take_over=True).json()["holder"] is True
    assert post(client, "/api/edit", tab="second", op="weight", group="mood", text="2").json()["ok"] is True
    assert post(client, "/api/edit", tab="first", op="weight", group="mood", text="3").status_code == 409


def test_confusion_cell_lists_its_inputs(served) -> None:
    client, _ = served
    post(client, "/api/claim")
    post(client, "/api/edit", op="option", group="colour", index=0, text="scarlet")
    cells = [client.get("/api/cell", params={"true": "red-thing", "predicted": c}).json() for c in SYSTEM["rules"]]
    assert sum(c["count"] for c in cells) == 3  # every red input lands in one cell of the red row
    wrong = next(c for c in cells if c["count"] and c["predicted"] != "red-thing")
    assert len(wrong["inputs"]) == wrong["count"] and 'src="data:image/jpeg;base64,' in wrong["html"]
    assert client.get("/api/cell", params={"true": "nope", "predicted": "red-thing"}).status_code == 422


def test_induce_proposal_is_measured_and_accepted_per_change(served) -> None:
    client, studio = served
    post(client, "/api/claim")
    post(client, "/api/edit", op="rule", **{"class": "red-thing"}, group="colour", text="blue")  # a wrong rule
    assert studio.figures().report.methods["cot"].acc1 < 1.0
    proposal = post(client, "/api/propose/induce").json()["proposal"]
    fixes = [i for i, c in enumerate(proposal["changes"]) if c["kind"] == "rule" and c["class"] == "red-thing" and c["group"] == "colour"]
    assert fixes and proposal["changes"][fixes[0]]["after"] == ["red"]
    assert proposal["effect"]["after"]["cot"] >= proposal["effect"]["before"]["cot"]
    answer = post(client, "/api/proposal/accept", id=proposal["id"], accepted=fixes).json()
    assert answer["ok"] is True
    assert studio.system.rules["red-thing"]["colour"] == (0,)
    assert answer["metrics"]["accuracy"]["cot"] == 1.0
    again = post(client, "/api/proposal/accept", id=proposal["id"], accepted=fixes).json()
    assert again["ok"] is False  # a proposal is accepted once


def test_save_needs_confirmation_keeps_a_backup_and_writes_a_valid_file(served, world) -> None:
    client, studio = served
    post(client, "/api/claim")
    original_text = world["path"].read_text(encoding="utf-8")
    post(client, "/api/edit", op="option", group="mood", index=1, text="hectic")
    refused = post(client, "/api/save", confirm=False).json()
    assert refused["ok"] is False and refused["saved"] is None and "confirm" in refused["confirm"]
    assert world["path"].read_text(encoding="utf-8") == original_text
    saved = post(client, "/api/save", confirm=True).json()["saved"]
    assert saved["written"] is True
    assert Path(saved["backup"]).read_text(encoding="utf-8") == original_text
    written = world["path"].read_text(encoding="utf-8")
    assert written.startswith("# hand-written colours\n")  # the header comment is kept
    assert System.load(world["path"]) == studio.system
    assert "hectic" in System.load(world["path"]).groups[1].options


def test_state_survives_a_restart_keyed_by_the_files_fingerprint(world) -> None:
    first = open_studio(world, state_dir=world["tmp"] / "state")
    first.edit({"op": "weight", "group": "mood", "text": "0.5"})
    first.edit({"op": "option", "group": "mood", "index": 0, "text": "serene"})
    first.undo()
    second = open_studio(world, state_dir=world["tmp"] / "state")
    assert second.system == first.system and second.position == 1 and len(second.history) == 3
    world["path"].write_text(yaml.safe_dump({**SYSTEM, "name": "other"}, sort_keys=False).replace("calm", "quiet"), encoding="utf-8")
    third = open_studio(world, state_dir=world["tmp"] / "state")  # another file content: a fresh history
    assert len(third.history) == 1


def test_unlabelled_data_opens_explain_only(world, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, image in enumerate(sorted(world["folder"].rglob("*.png"))[:5]):
        (flat / f"{i}.png").write_bytes(image.read_bytes())
    data = EmbeddingSet.from_samples(collect_samples([flat]), world["encoder"])
    studio = open_studio(world, data=data)
    assert not studio.labelled
    with Background(create_app(studio)) as url, httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/").text
        assert 'id="explain-only"' in page and "Predictions (5 of 5 inputs)" in page
        metrics = client.get("/api/metrics").json()
        assert len(metrics["predictions"]) == 5 and "accuracy" not in metrics
        assert client.get("/api/cell", params={"true": "red-thing", "predicted": "red-thing"}).status_code == 422
        refused = post(client, "/api/propose/induce")
        assert refused.status_code == 422 and "--examples" in refused.json()["error"]["message"]


def test_requests_a_page_on_another_site_could_send_are_refused(served) -> None:
    client, _ = served
    form = client.post("/api/edit", content="tab=x", headers={"content-type": "text/plain"})
    assert form.status_code == 415
    rebound = client.get("/", headers={"host": "evil.example:80"})
    assert rebound.status_code == 421


def test_api_key_is_required_when_set(world) -> None:
    studio = open_studio(world)
    with Background(create_app(studio, api_key="s3cret", loopback_only=False)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/").status_code == 401
            assert client.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
            assert client.get("/api/metrics", headers={"authorization": "Bearer s3cret"}).status_code == 200
            link = client.get("/?key=s3cret")  # the link the CLI prints leaves a cookie
            assert link.status_code == 303
            assert client.get("/").status_code == 200


def _free_port_in_use() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_cli_port_in_use_and_public_host_without_key_are_bad_input(world) -> None:
    busy = _free_port_in_use()
    try:
        port = busy.getsockname()[1]
        base = [sys.executable, "-m", "cotembed.cli", "studio", str(world["path"]), str(world["folder"]), "--no-cache", "-q"]
        run = subprocess.run([*base, "--port", str(port)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and f"--port {port}: already in use" in run.stderr
        run = subprocess.run([*base, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=120,
                             env={**__import__("os").environ, "COTEMBED_API_KEY": ""})
        assert run.returncode == 2 and "--api-key" in run.stderr
    finally:
        busy.close()


def test_strict_json_answers(served) -> None:
    client, _ = served
    text = client.get("/api/state").text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite number {c} in the answer"))


def _wait_for_optimization(client: httpx.Client, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get("/api/optimize").json()["optimization"]
        if not run["running"]:
            return run
        time.sleep(0.1)
    raise AssertionError("the optimisation did not end")


def test_a_bounded_optimize_run_reports_progress_and_proposes_its_best(served) -> None:
    client, studio = served
    post(client, "/api/claim")
    post(client, "/api/edit", op="option", group="colour", index=0, text="scarlet")  # red-thing is lost: room to climb
    started = post(client, "/api/propose/optimize", max_candidates=60, max_seconds=60).json()
    assert started["optimization"]["budget"] == 60
    run = _wait_for_optimization(client)
    assert run["status"].startswith("done") and 0 < run["candidates"] <= 60
    state = client.get("/api/state").json()
    assert 'id="optimize-progress"' in state["fragments"]["proposal"]
    proposal = studio.proposal
    if proposal is not None:  # the search found a better system: accepting every change makes it the current one
        best = proposal.id.removeprefix("optimize-")
        everything = list(range(len(proposal.changes)))
        assert post(client, "/api/proposal/accept", id=proposal.id, accepted=everything).json()["ok"] is True
        assert studio.system.fingerprint == best
    assert post(client, "/api/propose/optimize", max_candidates=0).status_code == 422


def test_an_optimize_run_stops_when_asked(served) -> None:
    client, studio = served
    post(client, "/api/claim")
    post(client, "/api/propose/optimize", max_candidates=100_000, max_seconds=600)
    busy = post(client, "/api/propose/optimize")  # one run at a time; not a matter of tabs
    assert busy.status_code == 409 and busy.json()["error"]["type"] == "busy"
    post(client, "/api/optimize/stop")
    run = _wait_for_optimization(client, timeout=60)
    assert run["status"] == "stopped" and run["candidates"] < 100_000


def test_induce_reads_the_examples_when_given(world) -> None:
    studio = open_studio(world, examples=world["data"])
    studio.edit({"op": "rule", "class": "blue-thing", "group": "colour", "text": "green"})
    proposal = studio.propose_induce()
    assert "--examples" in proposal.effect["measured_on"] and proposal.effect["n_inputs"] == len(world["data"])
    assert any(c["kind"] == "rule" and c["class"] == "blue-thing" and c["after"] == ["blue"] for c in proposal.changes)


def test_a_json_system_is_saved_as_json(world) -> None:
    path = world["tmp"] / "colours.json"
    path.write_text(json.dumps(SYSTEM), encoding="utf-8")
    studio = Studio(path, world["data"], world["bank"].embed, logit_scale=world["encoder"].logit_scale)
    studio.edit({"op": "prompt", "group": "mood", "text": "the mood is {}"})
    assert studio.edit({"op": "prompt", "group": "mood", "text": "no placeholder"}).ok is False
    studio.save(confirm=True)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["groups"]["mood"]["prompt"] == "the mood is {}"
    assert System.load(path) == studio.system

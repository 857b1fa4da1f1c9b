"""classify on Ray Data: same predictions as the in-process engine, resumable Parquet output, clear errors.

Tests marked ``ray`` start a local Ray cluster. They run only inside a network
namespace that has nothing but loopback (``make test-ray``: ``unshare -n``), where Ray
binds to 127.0.0.1; the main ``make test`` run deselects them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support import run_cli

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")

import pyarrow.parquet as pq  # noqa: E402

from cotembed._parquet import part_files  # noqa: E402
from cotembed.distributed.batch import EmbedScoreBatch, ScoreBatch  # noqa: E402
from cotembed.errors import CotembedError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = ROOT / "examples" / "critters" / "system.yaml"


def loopback_only() -> bool:
    """True inside a network namespace with no interface but ``lo`` (the only place Ray may start here)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="module")
def ray_cluster():
    if not loopback_only():
        pytest.fail("Ray tests start a cluster: run them with `make test-ray` (a loopback-only network namespace)")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from cotembed.distributed.ray import connect

    connect(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def critters_split(tmp_path_factory) -> Path:
    from cotembed.cli import main

    out = tmp_path_factory.mktemp("split") / "critters"
    assert main(["critters", "generate", "--species", str(ROOT / "examples/critters/species.yaml"), "--per-class", "2",
                 "--seed", "31", "--out", str(out), "-q"]) == 0
    return out


def _rows(out: Path) -> dict[str, dict]:
    table = pq.read_table(part_files(out))
    return {r["path"]: r for r in table.to_pylist()}


@pytest.mark.ray
def test_ray_predictions_equal_the_in_process_engine_and_resume(ray_cluster, critters_split, tmp_path, capsys):
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, critters_split, "--model", "critters", "--cache", cache, "-q",
                              "--format", "json", "--top-k", "1")
    assert code == 0
    local = {p["input"]: p for p in json.loads(stdout)["predictions"]}
    half = sorted(local)[: len(local) // 2]
    manifest = tmp_path / "half.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{local[p]['label']}\n" for p in half), encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, manifest, "--model", "critters", "--engine", "ray", "--actors", "2",
                              "--out", out, "--cache", cache, "-q", "--format", "json", "--allow-outside-paths")
    assert code == 0 and json.loads(stdout)["written"] == len(half)
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, critters_split, "--model", "critters", "--engine", "ray", "--actors", "2",
                              "--out", out, "--cache", cache, "-q", "--format", "json")
    run = json.loads(stdout)
    assert code == 0 and run["skipped_existing"] == len(half) and run["written"] == len(local) - len(half)
    rows = _rows(out)
    assert set(rows) == set(local)
    for path, p in local.items():
        assert rows[path]["prediction"] == p["prediction"]
        assert rows[path]["score"] == pytest.approx(p["score"], abs=1e-6)
        assert rows[path]["error"] == "" and rows[path]["abstained"] is False
    groups = [k.split(":", 1)[1] for k in next(iter(rows.values())) if k.startswith("answer:")]
    assert len(groups) == 4  # one answer and confidence column per question of the critters system
    assert all(0.0 <= rows[path][f"p:{groups[0]}"] <= 1.0 for path in rows)


@pytest.mark.ray
def test_a_broken_image_is_reported_and_the_run_goes_on(ray_cluster, critters_split, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "Yurmex").mkdir(parents=True)
    good = next(critters_split.rglob("*.png"))
    (data / "Yurmex" / "good.png").write_bytes(good.read_bytes())
    (data / "Yurmex" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, data, "--model", "critters", "--engine", "ray", "--out", out,
                              "--cache", tmp_path / "c.sqlite", "-q", "--format", "json")
    run = json.loads(stdout)
    assert code == 1
    assert [e["input"] for e in run["errors"]] == [str(data / "Yurmex" / "broken.png")]
    rows = _rows(out)
    assert rows[str(data / "Yurmex" / "good.png")]["prediction"] is not None
    assert rows[str(data / "Yurmex" / "broken.png")]["prediction"] is None

    # Repaired, the input is redone on the rerun and its error row is replaced, not kept beside the prediction.
    (data / "Yurmex" / "broken.png").write_bytes(good.read_bytes())
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, data, "--model", "critters", "--engine", "ray", "--out", out,
                              "--cache", tmp_path / "c.sqlite", "-q", "--format", "json")
    run = json.loads(stdout)
    assert code == 0 and run["errors"] == [] and run["skipped_existing"] == 1 and run["written"] == 1 and run["superseded"] == 1
    table = pq.read_table(part_files(out), columns=["path", "prediction", "error"])
    assert sorted(table.column("path").to_pylist()) == sorted(str(data / "Yurmex" / n) for n in ("broken.png", "good.png"))
    assert table.column("error").to_pylist() == ["", ""] and None not in table.column("prediction").to_pylist()


@pytest.mark.ray
def test_classify_dataset_rescoring_stored_embeddings_needs_no_model(ray_cluster, critters_split, tmp_path, capsys):
    from cotembed._parquet import read_embedding_set
    from cotembed.distributed.ray import classify_dataset, prompt_vectors
    from cotembed.scoring import ScoringConfig
    from cotembed.system import System

    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert run_cli(capsys, "embed", critters_split, "--model", "critters", "--out", out, "--cache", cache, "-q")[0] == 0
    stored = read_embedding_set(out)
    system = System.load(SYSTEM)
    config = ScoringConfig(50.0)
    from cotembed.cache import EmbeddingCache

    with EmbeddingCache(cache) as store:
        vectors = prompt_vectors(system, "critters", config, ("cot",), store)
    ds = ray.data.from_items([{"path": s, "embedding": v} for s, v in zip(stored.sources, stored.embeddings)])
    result = classify_dataset(ds, system, None, vectors=vectors, temperature=50.0).to_pandas()
    expected = ScoreBatch(system, vectors, 50.0)({"embedding": stored.embeddings})
    by_path = dict(zip(result["path"], result["prediction"]))
    assert [by_path[s] for s in stored.sources] == list(expected["prediction"])


def test_missing_ray_names_the_extra(monkeypatch):
    from cotembed.distributed import ray as engine

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(CotembedError, match=r"cotembed\[ray\]"):
        engine.require_ray()


def test_an_unreachable_address_fails_clearly_and_quickly(monkeypatch):
    from cotembed.distributed.ray import connect

    if ray.is_initialized():
        pytest.skip("a cluster is already connected in this process")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on this port now
    started = time.monotonic()
    with pytest.raises(CotembedError, match=f"127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}", timeout_s=3)
    assert time.monotonic() - started < 10
    assert not ray.is_initialized()


def test_score_batch_marks_errors_and_abstains():
    from cotembed.system import System

    system = System.load(SYSTEM)
    compiled = system.compile()
    rng = np.random.default_rng(0)
    vectors = {"options": rng.normal(size=(compiled.n_prompts, 16)).astype(np.float32)}
    embeddings = rng.normal(size=(3, 16)).astype(np.float32)
    embeddings[2, 0] = np.nan
    out = ScoreBatch(system, vectors, 50.0, abstain_below=1e9)({"embedding": embeddings, "error": np.array(["", "boom", ""], dtype=object)})
    assert out["prediction"].tolist() == [None, None, None]
    assert out["abstained"].tolist() == [True, False, False]
    assert out["error"][1] == "boom" and "NaN" in out["error"][2]


def test_score_batch_without_answers_predicts_as_with_them():
    from cotembed.system import System

    system = System.load(SYSTEM)
    compiled = system.compile()
    rng = np.random.default_rng(1)
    vectors = {"options": rng.normal(size=(compiled.n_prompts, 16)).astype(np.float32)}
    embeddings = rng.normal(size=(500, 16)).astype(np.float32) * 3  # not unit length: the scorer normalises
    embeddings[7, 3] = np.inf
    full = ScoreBatch(system, vectors, 50.0)({"embedding": embeddings})
    lean = ScoreBatch(system, vectors, 50.0, answers=False)({"embedding": embeddings})
    assert not any(k.startswith(("answer:", "p:")) for k in lean)
    assert any(k.startswith("answer:") for k in full)
    assert lean["prediction"].tolist() == full["prediction"].tolist()
    assert lean["prediction"][7] is None and "infinite" in lean["error"][7]
    np.testing.assert_allclose(lean["score"], full["score"], rtol=1e-5, equal_nan=True)


def dies_once(marker: Path) -> type:
    """An actor class that kills its own worker process on its first call of the run (the
    marker file remembers it across the restart): an actor lost mid-run, as to an
    out-of-memory kill or a lost node. Defined in a function, so Ray ships it by value."""

    class DiesOnce(EmbedScoreBatch):
        def __call__(self, batch):
            if not marker.exists():
                marker.write_text(str(os.getpid()), encoding="utf-8")
                os._exit(1)
            return super().__call__(batch)

    return DiesOnce


@pytest.mark.ray
def test_an_actor_that_dies_mid_run_is_restarted_and_nothing_written_is_lost(ray_cluster, critters_split, tmp_path, capsys):
    from cotembed._classifier import resolve_temperature
    from cotembed.distributed.ray import classify_to_parquet
    from cotembed.encoders import load_encoder
    from cotembed.scoring import ScoringConfig
    from cotembed.system import System

    cache, out = tmp_path / "cache.sqlite", tmp_path / "out"
    code, stdout, _ = run_cli(capsys, "classify", SYSTEM, critters_split, "--model", "critters", "--cache", cache, "-q",
                              "--format", "json", "--top-k", "1")
    local = {p["input"]: p["prediction"] for p in json.loads(stdout)["predictions"]}
    half = sorted(local)[: len(local) // 2]
    manifest = tmp_path / "half.csv"
    manifest.write_text("path\n" + "".join(f"{p}\n" for p in half), encoding="utf-8")
    assert run_cli(capsys, "classify", SYSTEM, manifest, "--model", "critters", "--engine", "ray", "--out", out, "--cache", cache,
                   "-q", "--allow-outside-paths")[0] == 0
    written_before = {p.name: p.read_bytes() for p in part_files(out)}

    system = System.load(SYSTEM)
    encoder = load_encoder("critters", lazy=True)
    config = ScoringConfig(resolve_temperature(None, system, encoder))
    marker = tmp_path / "died"
    run = classify_to_parquet(system, str(SYSTEM), [str(critters_split)], "critters", str(out), config=config, actors=2,
                              batch_size=8, progress=False, encoder=encoder, batch_class=dies_once(marker))
    encoder.close()
    assert marker.exists()  # an actor did die mid-run
    assert run.errors == [] and run.skipped_existing == len(half) and run.written == len(local) - len(half)
    assert all((out / name).read_bytes() == data for name, data in written_before.items())  # the earlier rows untouched
    paths = pq.read_table(part_files(out), columns=["path"]).column("path").to_pylist()
    assert sorted(paths) == sorted(local)  # every input exactly once: none lost, none doubled by the retry
    assert {path: row["prediction"] for path, row in _rows(out).items()} == local

"""Embeddings as a Parquet dataset: `cotembed embed`, --embeddings DIR, cache export/import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from support import COLOUR_SYSTEM, make_image, make_image_folder, run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from cotembed._parquet import METADATA_FILE, iter_batches, part_files, read_embedding_set, read_info  # noqa: E402


@pytest.fixture
def colour_data(tmp_path: Path) -> tuple[Path, Path]:
    system = tmp_path / "system.yaml"
    system.write_text(yaml.safe_dump(COLOUR_SYSTEM), encoding="utf-8")
    return make_image_folder(tmp_path / "data", per_class=3), system


def _embed(capsys, data, out, model, cache, *extra):
    return run_cli(capsys, "embed", data, "--model", model, "--out", out, "--cache", cache, "-q", "--format", "json", *extra)


def test_embed_writes_a_dataset_with_metadata_and_resumes(capsys, tmp_path, colour_model, colour_data):
    data, _ = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    code, stdout, _ = _embed(capsys, data, out, colour_model, cache)
    assert code == 0
    assert json.loads(stdout)["written"] == 12
    info = json.loads((out / METADATA_FILE).read_text())
    assert info["model_key"] == "test:colour" and info["dim"] == 8 and info["cotembed_version"] and info["created"]
    table = pq.read_table(part_files(out))
    assert table.num_rows == 12
    vector_type = table.schema.field("embedding").type  # by default raw float32 bytes: the layout that re-scores fastest
    assert pa.types.is_fixed_size_binary(vector_type) and vector_type.byte_width == 4 * 8 and info["vector_layout"] == "binary"
    assert set(table.column("label").to_pylist()) == {f"{c}-thing" for c in ("red", "green", "blue", "yellow")}
    assert len(set(table.column("content_hash").to_pylist())) == 12

    make_image(data / "red-thing" / "new.png", "red", seed=99)  # one more input: only it is embedded on the rerun
    parts_before = {p.name: p.stat().st_size for p in part_files(out)}
    code, stdout, _ = _embed(capsys, data, out, colour_model, cache)
    payload = json.loads(stdout)
    assert code == 0 and payload["skipped_existing"] == 12 and payload["written"] == 1
    assert read_embedding_set(out).embeddings.shape == (13, 8)
    assert all((out / name).stat().st_size == size for name, size in parts_before.items())  # earlier parts untouched


def test_eval_and_classify_from_embeddings_match_the_data_path(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    code, from_data, _ = run_cli(capsys, "eval", system, data, "--model", colour_model, "--cache", cache, "-q", "--format", "json")
    assert code == 0
    code, from_store, _ = run_cli(capsys, "eval", system, "--embeddings", out, "--cache", cache, "-q", "--format", "json")
    assert code == 0
    a, b = json.loads(from_data), json.loads(from_store)
    for method in a["methods"]:
        assert b["methods"][method]["acc1"] == a["methods"][method]["acc1"]
        assert b["methods"][method]["correct"] == a["methods"][method]["correct"]
    # the decision sections are computed on the stored inputs too (not on an empty list)
    sections = ("--abstain", "-0.2", "--open-set", "1", "--seed", "3")
    code, from_data, _ = run_cli(capsys, "eval", system, data, "--model", colour_model, "--cache", cache, "-q", "--format", "json",
                                 *sections)
    code_store, from_store, _ = run_cli(capsys, "eval", system, "--embeddings", out, "--cache", cache, "-q", "--format", "json",
                                        *sections)
    assert code == code_store == 0
    a, b = json.loads(from_data), json.loads(from_store)
    assert b["abstention"]["cot"]["n_inputs"] == a["abstention"]["cot"]["n_inputs"] == 12
    assert b["abstention"] == a["abstention"] and b["open_set"] == a["open_set"]
    code, stdout, _ = run_cli(capsys, "classify", system, "--embeddings", out, "--model", colour_model, "--cache", cache, "-q", "--format", "json")
    code2, stdout2, _ = run_cli(capsys, "classify", system, data, "--model", colour_model, "--cache", cache, "-q", "--format", "json")
    assert code == code2 == 0
    stored = {p["input"]: (p["prediction"], p["score"]) for p in json.loads(stdout)["predictions"]}
    direct = {p["input"]: (p["prediction"], p["score"]) for p in json.loads(stdout2)["predictions"]}
    assert stored == direct


def test_embeddings_of_another_model_are_refused(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    code, _, err = run_cli(capsys, "eval", system, "--embeddings", out, "--model", "critters", "--cache", cache, "-q")
    assert code == 2
    assert "test:colour" in err and "critters:" in err
    code, _, err = run_cli(capsys, "embed", data, "--model", "critters", "--out", out, "--cache", cache, "-q")
    assert code == 2 and "test:colour" in err
    # classify too, though "critters" is also --model's default: typed, it is checked against the dataset
    code, _, err = run_cli(capsys, "classify", system, "--embeddings", out, "--model", "critters", "--cache", cache, "-q")
    assert code == 2
    assert "test:colour" in err and "critters:" in err


def test_data_and_embeddings_are_exclusive(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    code, _, err = run_cli(capsys, "eval", system, "--model", colour_model)
    assert code == 2 and "--embeddings" in err
    code, _, err = run_cli(capsys, "classify", system, data, "--embeddings", tmp_path, "--model", colour_model)
    assert code == 2 and "not both" in err


def _write_bad_part(out: Path, dim: int) -> None:
    """A part file as another tool might write it: a variable-length vector column with a short and a NaN row."""
    good = [0.1] * dim
    table = pa.table({
        "source": ["ok.png", "short.png", "nan.png"],
        "label": ["red-thing", "red-thing", "red-thing"],
        "kind": ["image"] * 3,
        "content_hash": ["h1", "h2", "h3"],
        "model_key": ["test:colour"] * 3,
        "embedding": pa.array([good, good[:-1], [float("nan")] + good[1:]], type=pa.list_(pa.float32())),
    })
    pq.write_table(table, out / "part-zz-extra.parquet")


def test_wrong_length_and_nan_rows_are_reported_by_source_and_skipped(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    _write_bad_part(out, 8)
    stored = read_embedding_set(out)
    assert len(stored) == 13
    assert {e.source for e in stored.errors} == {"short.png", "nan.png"}
    assert np.isfinite(stored.embeddings).all()
    code, stdout, _ = run_cli(capsys, "eval", system, "--embeddings", out, "--cache", cache, "-q", "--format", "json")
    payload = json.loads(stdout)
    assert code == 1  # the run finishes; the unusable rows make it a partial result
    assert {e["input"] for e in payload["errors"]} == {"short.png", "nan.png"}
    assert payload["n_inputs"] == 13


def test_streaming_reads_are_bounded_by_the_batch(tmp_path, colour_model, capsys, colour_data):
    data, _ = colour_data
    out = tmp_path / "emb"
    assert _embed(capsys, data, out, colour_model, tmp_path / "c.sqlite", "--part-rows", "5")[0] == 0
    assert len(part_files(out)) == 3  # 5 + 5 + 2 rows
    sizes = [len(b.sources) for b in iter_batches(out, batch_rows=2)]
    assert max(sizes) == 2 and sum(sizes) == 12


def test_cache_export_and_import_round_trip(capsys, tmp_path, colour_model, colour_data):
    from cotembed.cache import EmbeddingCache

    data, _ = colour_data
    cache, out = tmp_path / "cache.sqlite", tmp_path / "exported"
    assert _embed(capsys, data, tmp_path / "emb", colour_model, cache)[0] == 0
    code, stdout, _ = run_cli(capsys, "cache", "export", "--model", colour_model, "--out", out, "--cache", cache, "--format", "json")
    assert code == 0 and json.loads(stdout)["written"] == 12
    assert read_info(out).model_key == "test:colour"
    fresh = tmp_path / "fresh.sqlite"
    code, stdout, _ = run_cli(capsys, "cache", "import", out, "--cache", fresh, "--format", "json")
    assert code == 0 and json.loads(stdout)["imported"] == 12
    with EmbeddingCache(cache) as a, EmbeddingCache(fresh) as b:
        original = {k: v for _, k, v in a.iter_vectors("test:colour", "image")}
        copied = {k: v for _, k, v in b.iter_vectors("test:colour", "image")}
    assert original.keys() == copied.keys()
    assert all(np.array_equal(original[k], copied[k]) for k in original)
    # a second export adds nothing: every hash is already there
    code, stdout, _ = run_cli(capsys, "cache", "export", "--model", colour_model, "--out", out, "--cache", cache, "--format", "json")
    assert json.loads(stdout)["written"] == 0


def test_missing_folder_is_a_clear_input_error(capsys, tmp_path, colour_data):
    _, system = colour_data
    code, _, err = run_cli(capsys, "eval", system, "--embeddings", tmp_path / "nothing")
    assert code == 2 and METADATA_FILE in err


def test_list_and_binary_vector_layouts_read_back_the_same_vectors_and_predictions(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    cache = tmp_path / "cache.sqlite"
    assert _embed(capsys, data, tmp_path / "list", colour_model, cache, "--vector-layout", "list")[0] == 0
    assert _embed(capsys, data, tmp_path / "bin", colour_model, cache, "--vector-layout", "binary")[0] == 0
    assert read_info(tmp_path / "bin").vector_layout == "binary" and read_info(tmp_path / "list").vector_layout == "list"
    assert pa.types.is_fixed_size_binary(pq.read_table(part_files(tmp_path / "bin")).schema.field("embedding").type)
    vector_type = pq.read_table(part_files(tmp_path / "list")).schema.field("embedding").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.list_size == 8 and vector_type.value_type == pa.float32()
    as_list, as_bytes = read_embedding_set(tmp_path / "list"), read_embedding_set(tmp_path / "bin")
    order = np.argsort(as_bytes.sources)
    assert sorted(as_list.sources) == [as_bytes.sources[i] for i in order]
    np.testing.assert_array_equal(as_list.embeddings[np.argsort(as_list.sources)], as_bytes.embeddings[order])
    runs = [run_cli(capsys, "classify", system, "--embeddings", tmp_path / d, "--cache", cache, "-q", "--format", "json") for d in ("list", "bin")]
    assert all(code == 0 for code, _, _ in runs), [err for _, _, err in runs]
    a, b = ({p["input"]: p["prediction"] for p in json.loads(out)["predictions"]} for _, out, _ in runs)
    assert a == b and len(a) == 12


def test_binary_rows_of_the_wrong_size_are_reported_by_source(tmp_path, colour_model, capsys, colour_data):
    data, _ = colour_data
    out = tmp_path / "bin"
    assert _embed(capsys, data, out, colour_model, tmp_path / "c.sqlite", "--vector-layout", "binary")[0] == 0
    good = np.full(8, 0.1, dtype="<f4").tobytes()
    table = pa.table({"source": ["ok.png", "short.png", "nan.png"],  # no model_key column: another tool's file
                      "embedding": pa.array([good, good[:-4], np.array([np.nan] + [0.1] * 7, dtype="<f4").tobytes()], type=pa.binary())})
    pq.write_table(table, out / "part-zz-extra.parquet")
    batches = list(iter_batches(out, columns=()))  # no text column asked for: bad rows are still named by source
    errors = {e.source: e.error for b in batches for e in b.errors}
    assert set(errors) == {"short.png", "nan.png"} and "28 bytes" in errors["short.png"]
    assert sum(len(b.embeddings) for b in batches) == 13


def test_prefetched_batches_are_the_same_and_errors_reach_the_caller(tmp_path, colour_model, capsys, colour_data):
    data, _ = colour_data
    out = tmp_path / "emb"
    assert _embed(capsys, data, out, colour_model, tmp_path / "c.sqlite", "--part-rows", "5")[0] == 0
    plain = [b.sources for b in iter_batches(out, batch_rows=2)]
    assert [b.sources for b in iter_batches(out, batch_rows=2, prefetch=True)] == plain
    (out / "part-zz-broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="not a readable Parquet file"):
        list(iter_batches(out, batch_rows=2, prefetch=True))


def _same_run(capsys, args_data: list, args_stored: list) -> tuple[dict, dict]:
    code_a, out_a, err_a = run_cli(capsys, *args_data, "-q", "--format", "json")
    code_b, out_b, err_b = run_cli(capsys, *args_stored, "-q", "--format", "json")
    assert code_a == 0, err_a
    assert code_b == 0, err_b
    return json.loads(out_a), json.loads(out_b)


def test_learning_verbs_read_embeddings_as_they_read_data(capsys, tmp_path, colour_model, colour_data):
    data, system = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    model = ["--model", colour_model, "--cache", cache]
    stored = ["--embeddings", out, "--cache", cache]  # no --model: the dataset's own

    a, b = _same_run(capsys, ["calibrate", system, data, "--out", tmp_path / "a.yaml", *model],
                     ["calibrate", system, *stored, "--out", tmp_path / "b.yaml"])
    assert b["fit"]["temperature"] == pytest.approx(a["fit"]["temperature"])
    assert b["evaluation"]["fit"]["n_inputs"] == a["evaluation"]["fit"]["n_inputs"] == 12

    a, b = _same_run(capsys, ["induce", system, data, "--per-class", "2", "--out", tmp_path / "ia.yaml", *model],
                     ["induce", system, *stored, "--per-class", "2", "--out", tmp_path / "ib.yaml"])
    assert b["evaluation"]["train"]["n_inputs"] == a["evaluation"]["train"]["n_inputs"] == 8
    assert b["evaluation"]["heldout"]["n_inputs"] == a["evaluation"]["heldout"]["n_inputs"] == 4

    a, b = _same_run(capsys, ["optimize", system, data, "--out", tmp_path / "oa.yaml", "--max-candidates", "12", "--no-plot", *model],
                     ["optimize", system, *stored, "--out", tmp_path / "ob.yaml", "--max-candidates", "12", "--no-plot"])
    assert b["data"]["train"]["n_inputs"] == a["data"]["train"]["n_inputs"]
    assert b["data"]["train"]["source"] == str(out)

    a, b = _same_run(capsys, ["inspect", system, "--data", data, *model], ["inspect", system, *stored])
    assert {k: v for k, v in b.items() if k != "path"} == {k: v for k, v in a.items() if k != "path"}


@pytest.mark.parametrize("verb", ["calibrate", "induce", "optimize", "inspect"])
def test_learning_verbs_refuse_embeddings_of_another_model(capsys, tmp_path, colour_model, colour_data, verb):
    data, system = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    extra = {"calibrate": ["--out", tmp_path / "x.yaml"], "induce": ["--per-class", "1", "--out", tmp_path / "x.yaml"],
             "optimize": ["--out", tmp_path / "x.yaml", "--no-plot"], "inspect": []}[verb]
    code, _, err = run_cli(capsys, verb, system, "--embeddings", out, "--model", "critters", "--cache", cache, *extra, "-q")
    assert code == 2
    assert "test:colour" in err and "critters" in err
    if verb != "inspect":
        code, _, err = run_cli(capsys, verb, system, data, "--embeddings", out, "--cache", cache, *extra, "-q")
        assert code == 2 and "not both" in err


def test_images_embedded_by_an_older_decoding_are_redone_and_their_rows_replaced(capsys, tmp_path, colour_model, colour_data):
    """Content hashes carry the decoding version, as the cache's keys do: a dataset written
    before EXIF orientation was applied (bare SHA-256 keys) is not taken as done."""
    import hashlib

    from cotembed._pipeline import image_key

    data, _ = colour_data
    out, cache = tmp_path / "emb", tmp_path / "cache.sqlite"
    assert _embed(capsys, data, out, colour_model, cache)[0] == 0
    table = pq.read_table(part_files(out))
    by_source = dict(zip(table.column("source").to_pylist(), table.column("content_hash").to_pylist()))
    assert all(key == image_key(hashlib.sha256(Path(src).read_bytes()).hexdigest()) for src, key in by_source.items())
    assert all(key.endswith(":d2") for key in by_source.values())
    # The same dataset as the decoding before orientation keyed it: bare digests.
    for path in part_files(out):
        part = pq.read_table(path)
        bare = pa.array([k.split(":", 1)[0] for k in part.column("content_hash").to_pylist()], type=pa.string())
        pq.write_table(part.set_column(part.schema.get_field_index("content_hash"), "content_hash", bare), path)
    code, stdout, _ = _embed(capsys, data, out, colour_model, cache)
    payload = json.loads(stdout)
    assert code == 0 and payload["skipped_existing"] == 0 and payload["written"] == 12 and payload["superseded"] == 12
    after = pq.read_table(part_files(out))
    assert sorted(after.column("content_hash").to_pylist()) == sorted(by_source.values())  # one row per image, none lost
    code, stdout, _ = _embed(capsys, data, out, colour_model, cache)  # and now it is done
    assert code == 0 and json.loads(stdout)["skipped_existing"] == 12 and json.loads(stdout)["written"] == 0

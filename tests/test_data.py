"""Inputs as real machines write them: Excel CSVs, macOS folders, manifests from elsewhere."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from cotembed.data import collect_samples, resolve_labels
from cotembed.errors import InputError
from support import make_image, make_image_folder


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_csv_saved_by_excel_as_csv_utf8_with_a_bom(tmp_path):
    make_image(tmp_path / "img" / "a.png", "red")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffPath,Label\r\nimg/a.png,Pokémon rouge\r\n".encode())
    [sample] = collect_samples([manifest])
    assert sample.label == "Pokémon rouge" and sample.path == tmp_path / "img" / "a.png"
    texts = tmp_path / "t.csv"
    texts.write_bytes("\ufefftext,label\r\na red thing,red-thing\r\n".encode())
    [text] = collect_samples([texts])
    assert text.text == "a red thing" and text.label == "red-thing" and text.source == f"{texts}:2"


def test_csv_with_semicolons_as_excel_writes_in_comma_decimal_locales(tmp_path):
    texts = tmp_path / "t.csv"
    texts.write_text("text;label\n\"one, two\";red-thing\n", encoding="utf-8")
    [sample] = collect_samples([texts])
    assert sample.text == "one, two" and sample.label == "red-thing"


def test_csv_in_a_legacy_encoding_says_how_to_save_it(tmp_path):
    texts = tmp_path / "t.csv"
    texts.write_bytes("text,label\ncafé,red-thing\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"t\.csv: not UTF-8 .*CSV UTF-8"):
        collect_samples([texts])


def test_csv_row_with_more_fields_than_the_header_is_named(tmp_path):
    texts = tmp_path / "t.csv"
    texts.write_text("text,label\na red, thing,red-thing\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"t\.csv:2: 1 more field\(s\) than the header"):
        collect_samples([texts])


def test_hidden_files_and_macos_leftovers_are_not_inputs(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2, classes=("red", "blue"))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red-thing" / "._0.png").write_bytes(b"\0\5\26\7 resource fork")  # AppleDouble
    (root / "._red-thing").write_bytes(b"\0\5\26\7")
    make_image(root / "__MACOSX" / "red-thing" / "1.png", "red")
    make_image(root / "blue-thing" / ".thumbnails" / "0.png", "blue")
    make_image(root / ".trash" / "0.png", "green")
    samples = collect_samples([root])
    names = sorted(str(s.path.relative_to(root)) for s in samples)
    assert names == ["blue-thing/0.png", "blue-thing/1.png", "red-thing/0.png", "red-thing/1.png"]
    assert {s.label for s in samples} == {"red-thing", "blue-thing"}
    flat = tmp_path / "flat"
    make_image(flat / "a.png", "red")
    (flat / "._a.png").write_bytes(b"\0\5\26\7")
    assert [s.path.name for s in collect_samples([flat])] == ["a.png"]


def test_nfd_folder_names_become_nfc_labels(tmp_path):
    folder = tmp_path / "data" / nfd("Flabébé")
    make_image(folder / "0.png", "red")
    [sample] = collect_samples([tmp_path / "data"])
    assert sample.label == "Flabébé" and sample.label != nfd("Flabébé")
    assert sample.path is not None and sample.path.exists()  # the path stays as the disk spells it
    kept, skipped = resolve_labels([sample], {"Flabébé": "Flabébé"}.get)
    assert kept[0].label == "Flabébé" and not skipped


def test_resolve_labels_matches_nfd_labels_given_through_the_api(tmp_path):
    from cotembed.data import Sample

    sample = Sample(source="x", kind="text", text="t", label=nfd("Pokémon"))
    kept, _ = resolve_labels([sample], {"Pokémon": "Pokémon"}.get)
    assert kept[0].label == "Pokémon"


def test_manifest_names_written_in_nfc_find_files_saved_in_nfd(tmp_path):
    make_image(tmp_path / nfd("é.png"), "red")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "é.png", "label": "red-thing"}\n', encoding="utf-8")
    [sample] = collect_samples([manifest])
    assert sample.path is not None and sample.path.exists()


def test_manifest_paths_outside_its_folder_are_refused_unless_allowed(tmp_path):
    data = tmp_path / "data"
    make_image(data / "img" / "a.png", "red")
    make_image(tmp_path / "secret.png", "blue")
    manifest = data / "m.csv"
    manifest.write_text(
        "path,label\n"
        "img/a.png,red-thing\n"
        "img/../img/a.png,red-thing\n"
        f"{data / 'img' / 'a.png'},red-thing\n"  # absolute but inside: fine
        "../secret.png,blue-thing\n"
        "/etc/passwd,blue-thing\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as info:
        collect_samples([manifest])
    message = str(info.value)
    assert str(manifest) in message and "2 path(s)" in message
    assert "line 5: '../secret.png'" in message and "line 6: '/etc/passwd'" in message
    assert "--allow-outside-paths" in message and "img/a.png" not in message
    samples = collect_samples([manifest], allow_outside=True)
    assert [s.path for s in samples] == [data / "img" / "a.png"] * 3 + [tmp_path / "secret.png", Path("/etc/passwd")]
    # normalised: no '..' is left for a symbolic link to redirect


def test_manifest_dotdot_through_a_subfolder_stays_checked(tmp_path):
    manifest = tmp_path / "data" / "m.jsonl"
    manifest.parent.mkdir()
    manifest.write_text('{"path": "img/../../x.png"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"m\.jsonl: 1 path\(s\) point outside.*line 1: 'img/\.\./\.\./x\.png'"):
        collect_samples([manifest])


def test_jsonl_numbers_are_text_and_other_types_are_errors(tmp_path):
    manifest = tmp_path / "t.jsonl"
    manifest.write_text('\ufeff{"text": 42, "label": 3}\n{"text": "a", "label": 2.5}\n{"text": "b", "label": null}\n', encoding="utf-8")
    samples = collect_samples([manifest])
    assert [(s.text, s.label) for s in samples] == [("42", "3"), ("a", "2.5"), ("b", None)]
    cases = {
        '{"text": "a", "label": true}': "field 'label' must be a string, got bool",
        '{"text": ["a"], "label": "x"}': "field 'text' must be a string, got list",
        '{"text": "a", "label": NaN}': "field 'label' is nan, not a finite number",
        '{"path": {"p": 1}}': "field 'path' must be a string, got dict",
    }
    for line, expected in cases.items():
        manifest.write_text('{"text": "fine", "label": "x"}\n' + line + "\n", encoding="utf-8")
        with pytest.raises(InputError) as info:
            collect_samples([manifest])
        assert str(info.value).startswith(f"{manifest}:2: ") and expected in str(info.value)

"""The critters world: renderer, captions, species files, example systems, `cotembed critters generate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cotembed.cli import main
from cotembed.errors import InputError, SpeciesFileError
from cotembed.system import System
from cotembed_critters import caption, render
from cotembed_critters.captions import N_TEMPLATES, allowed_words, caption_words
from cotembed_critters.species import generate_split, image_seed, load_species, system_from_species, validate_species
from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "critters"
SPECIES_FILE = EXAMPLES / "species.yaml"
BASE = {"colour": "red", "form": "bird", "trait": "wings", "scene": "space"}


def _random_attributes(rng: np.random.Generator) -> dict[str, str]:
    return {name: VOCABULARY[name][int(rng.integers(len(VOCABULARY[name])))].key for name in ATTRIBUTE_NAMES}


def _bytes(image: Image.Image) -> bytes:
    return image.tobytes()


# ------------------------------------------------------------------ render
def test_render_is_deterministic_and_seed_dependent():
    a = render(BASE, seed=7)
    assert a.mode == "RGB" and a.size == (64, 64)
    assert _bytes(render(BASE, seed=7)) == _bytes(a)
    assert _bytes(render(BASE, seed=8)) != _bytes(a)
    assert render(BASE, seed=7, size=32).size == (32, 32)


@pytest.mark.parametrize("attribute", ATTRIBUTE_NAMES)
def test_every_value_of_every_attribute_renders(attribute):
    images = []
    for v in VOCABULARY[attribute]:
        image = render({**BASE, attribute: v.key}, seed=3)
        assert image.size == (64, 64) and image.mode == "RGB"
        pixels = np.asarray(image)
        assert pixels.std() > 5, f"{attribute}={v.key} rendered a flat image"
        images.append(_bytes(image))
    assert len(set(images)) == len(images), f"two {attribute} values rendered the same image"


def test_hard_differs_from_easy():
    for seed in range(3):
        assert _bytes(render(BASE, seed, difficulty="hard")) != _bytes(render(BASE, seed, difficulty="easy"))
    assert _bytes(render(BASE, 1, difficulty="hard")) == _bytes(render(BASE, 1, difficulty="hard"))


def test_scenes_have_distinct_backgrounds():
    means = {v.key: np.asarray(render({**BASE, "scene": v.key}, seed=0)).reshape(-1, 3).mean(0) for v in VOCABULARY["scene"]}
    keys = list(means)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert np.abs(means[a] - means[b]).max() > 15, f"{a} and {b} backgrounds look alike"


def test_body_colour_dominates_the_creature():
    """On a neutral scene, the most common non-background colour is near the colour's RGB."""
    from cotembed_critters.render import COLOUR_RGB

    for colour, rgb in COLOUR_RGB.items():
        pixels = np.asarray(render({**BASE, "colour": colour, "form": "blob", "trait": "horn", "scene": "sky"}, seed=2, size=64)).reshape(-1, 3).astype(int)
        near = np.abs(pixels - np.asarray(rgb)).max(axis=1) < 40
        assert near.mean() > 0.08, f"{colour}: too few body-coloured pixels"


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({**BASE, "colour": "mauve"}, "unknown colour 'mauve'; choose one of red, orange"),
        ({**BASE, "form": "dragon"}, "unknown form 'dragon'; choose one of blob, serpent"),
        ({**BASE, "scene": "moon"}, "unknown scene 'moon'"),
        ({k: v for k, v in BASE.items() if k != "trait"}, "missing attribute 'trait'"),
        ({**BASE, "size": "big"}, "unknown attribute 'size'"),
    ],
)
def test_render_rejects_bad_attributes_naming_them(attributes, message):
    with pytest.raises(KeyError, match=message):
        render(attributes, seed=0)


def test_render_rejects_bad_difficulty_and_size():
    with pytest.raises(ValueError, match="difficulty 'medium'"):
        render(BASE, 0, difficulty="medium")
    with pytest.raises(ValueError, match="size"):
        render(BASE, 0, size=4)
    with pytest.raises(ValueError, match="from 8 to 4096, got 20000"):
        render(BASE, 0, size=20000)


def test_drawing_registries_cover_the_vocabulary():
    """A value the vocabulary has but the renderer cannot draw would fail only at render time."""
    from cotembed_critters.drawing.anatomy import BODY_PLANS
    from cotembed_critters.drawing.palette import COLOUR_RGB, INK
    from cotembed_critters.drawing.scenes import GRADIENTS, SCENES
    from cotembed_critters.drawing.traits import LAYERS, TRAITS

    keys = {name: {v.key for v in values} for name, values in VOCABULARY.items()}
    assert set(COLOUR_RGB) == keys["colour"]
    assert set(BODY_PLANS) == keys["form"]
    assert set(TRAITS) == keys["trait"] and {t.layer for t in TRAITS.values()} <= set(LAYERS)
    assert set(SCENES) == set(GRADIENTS) == set(INK) == keys["scene"]


def test_render_is_fast():
    import time

    rng = np.random.default_rng(0)
    attrs = [_random_attributes(rng) for _ in range(60)]
    render(attrs[0], 0)
    start = time.perf_counter()
    for i, a in enumerate(attrs):
        render(a, i, difficulty="hard" if i % 2 else "easy")
    per_image = (time.perf_counter() - start) / len(attrs)
    assert per_image < 0.02, f"{per_image * 1000:.1f} ms per image"  # ~1-1.5 ms on a laptop core; generous for CI


# ---------------------------------------------------------------- captions
def _many_captions(n: int = 3000) -> list[str]:
    rng = np.random.default_rng(123)
    return [caption(_random_attributes(rng), rng) for _ in range(n)]


def test_captions_never_name_a_species():
    names = [n.lower() for n in load_species(SPECIES_FILE)]
    assert len(names) >= 24
    for text in _many_captions():
        low = text.lower()
        assert not [n for n in names if n in low], text


def test_captions_use_only_caption_phrases_and_glue_words():
    allowed = allowed_words()
    paraphrase_only = {
        w
        for values in VOCABULARY.values()
        for v in values
        for p in v.paraphrases
        for w in caption_words(p)
    } - allowed
    assert "crimson" in paraphrase_only and "quadruped" in paraphrase_only
    seen: set[str] = set()
    for text in _many_captions():
        words = set(caption_words(text))
        assert words <= allowed, (text, words - allowed)
        assert not words & paraphrase_only
        seen |= words
    # every caption phrase is used somewhere
    for values in VOCABULARY.values():
        for v in values:
            assert set(caption_words(v.caption)) <= seen, v.caption


def test_captions_vary_partial_and_full():
    texts = _many_captions(2000)
    assert len(set(texts)) > 1500
    assert N_TEMPLATES >= 8
    rng = np.random.default_rng(0)
    attrs = {"colour": "red", "form": "bird", "trait": "wings", "scene": "space"}
    phrases = {"red", "a bird", "wings", "outer space"}
    counts = set()
    for _ in range(400):
        text = caption(attrs, rng)
        counts.add(sum(p.split()[-1] in text for p in phrases))
    assert counts >= {1, 2, 3, 4}


def test_caption_is_deterministic_and_rejects_unknown_keys():
    a = caption(BASE, np.random.default_rng(5))
    assert a == caption(BASE, np.random.default_rng(5))
    with pytest.raises(KeyError, match="unknown colour 'mauve'"):
        caption({**BASE, "colour": "mauve"}, np.random.default_rng(0))


# ----------------------------------------------------------------- species
def test_example_species_file_design():
    table = load_species(SPECIES_FILE)
    names = list(table)
    assert len(names) >= 24
    combos = [tuple(a[k] for k in ATTRIBUTE_NAMES) for a in table.values()]
    assert len(set(combos)) == len(combos)
    for attr in ATTRIBUTE_NAMES:
        used = [a[attr] for a in table.values()]
        for v in VOCABULARY[attr]:
            assert used.count(v.key) >= 2, f"{attr} {v.key} used by fewer than two species"
    one_apart = [
        (x, y) for i, x in enumerate(names) for y in names[i + 1:]
        if sum(table[x][k] != table[y][k] for k in ATTRIBUTE_NAMES) == 1
    ]
    assert len(one_apart) >= 6
    creatures_text = yaml.safe_load((EXAMPLES.parent / "creatures-text" / "system.yaml").read_text())["rules"]
    assert not set(names) & set(creatures_text)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "species.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("species:\n  Zorblat: {colour: mauve, form: bird, trait: wings, scene: sky}\n",
         "species.Zorblat.colour: unknown colour 'mauve' (choose one of red, orange"),
        ("species:\n  Zorblat: {colour: red, form: bird, trait: wings}\n", "species.Zorblat: missing scene"),
        ("species:\n  Zorblat: {colour: red, form: bird, trait: wings, scene: sky, size: big}\n",
         "species.Zorblat.size: unknown field"),
        ("species:\n  Zorblat: {colour: [red], form: bird, trait: wings, scene: sky}\n", "species.Zorblat.colour: expected one colour key"),
        ("species:\n  Aa: {colour: red, form: bird, trait: wings, scene: sky}\n  Bb: {colour: red, form: bird, trait: wings, scene: sky}\n",
         "species.Bb: same attributes as species.Aa"),
        ("species:\n  Aa: {colour: red, form: bird, trait: wings, scene: sky}\n  Aa: {colour: blue, form: bird, trait: wings, scene: sky}\n",
         "duplicate key 'Aa'"),
        ("species:\n  a/b: {colour: red, form: bird, trait: wings, scene: sky}\n", "species.a/b: name cannot be used as a folder name"),
        ("species: []\n", "species: expected a non-empty mapping"),
        ("rules: {}\n", "expected a mapping with a 'species' key"),
        ("species: {Aa: {colour: red\n", "malformed YAML"),
    ],
)
def test_species_file_errors_name_file_and_field(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(SpeciesFileError) as info:
        load_species(path)
    assert isinstance(info.value, InputError)
    assert f"{path}: " in str(info.value) and expected in str(info.value)


def test_species_file_lists_every_problem(tmp_path):
    path = _write(tmp_path, "species:\n  Aa: {colour: mauve, form: dragon, trait: wings, scene: sky}\n  Bb: {colour: red}\n")
    with pytest.raises(SpeciesFileError) as info:
        load_species(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 5 and all(line.startswith(f"{path}: species.") for line in lines)


def test_missing_species_file(tmp_path):
    with pytest.raises(SpeciesFileError, match="cannot read file"):
        load_species(tmp_path / "nope.yaml")


def test_image_seed_is_stable():
    assert image_seed(0, 0, 0) == image_seed(0, 0, 0)
    seeds = {image_seed(s, k, i) for s in range(2) for k in range(5) for i in range(5)}
    assert len(seeds) == 50
    assert image_seed(1, 2, 3) == 12997252459554536576  # fixed forever: changing it changes every dataset


def test_generate_split_writes_image_folder(tmp_path):
    species = _write(tmp_path, "species:\n  Aa: {colour: red, form: bird, trait: wings, scene: sky}\n  Bb: {colour: blue, form: fish, trait: spots, scene: water}\n")
    summary = generate_split(species, tmp_path / "out", per_class=2, seed=1, difficulty="hard", size=32, progress=False)
    assert summary["n_images"] == 4 and summary["species"] == ["Aa", "Bb"]
    files = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert files == ["Aa/0000.png", "Aa/0001.png", "Bb/0000.png", "Bb/0001.png"]
    with Image.open(tmp_path / "out" / "Bb" / "0001.png") as im:
        assert im.size == (32, 32) and im.mode == "RGB"
        expected = render({"colour": "blue", "form": "fish", "trait": "spots", "scene": "water"}, image_seed(1, 1, 1), size=32, difficulty="hard")
        assert im.tobytes() == expected.tobytes()
    with pytest.raises(InputError, match="not an empty folder"):
        generate_split(species, tmp_path / "out", per_class=1, seed=1, progress=False)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"size": 20000}, "size (--size) must be an integer from 16 to 1024 pixels, got 20000"),
        ({"size": 8}, "size (--size) must be an integer from 16 to 1024"),
        ({"per_class": 100_001}, "per_class (--per-class) must be an integer from 1 to 100000, got 100001"),
        ({"per_class": 0}, "per_class (--per-class)"),
        ({"per_class": True}, "per_class (--per-class)"),
        ({"seed": -1}, "seed (--seed) must be an integer >= 0"),
        ({"difficulty": "medium"}, "difficulty (--difficulty) 'medium' is unknown"),
    ],
)
def test_generate_split_bounds_settings_before_writing(tmp_path, settings, expected):
    args = {"per_class": 1, "seed": 0, "difficulty": "easy", "size": 32, **settings}
    with pytest.raises(InputError) as info:
        generate_split(SPECIES_FILE, tmp_path / "out", progress=False, **args)
    assert expected in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_generate_split_reports_every_bad_setting_at_once(tmp_path):
    with pytest.raises(InputError) as info:
        generate_split(SPECIES_FILE, tmp_path / "out", per_class=0, seed=0, size=5000, progress=False)
    assert "--per-class" in str(info.value) and "--size" in str(info.value)


def test_generate_split_into_an_existing_empty_folder_and_new_parents(tmp_path):
    species = _write(tmp_path, "species:\n  Aa: {colour: red, form: bird, trait: wings, scene: sky}\n")
    (tmp_path / "empty").mkdir()
    generate_split(species, tmp_path / "empty", per_class=1, seed=0, size=16, progress=False)
    generate_split(species, tmp_path / "a" / "b" / "c", per_class=1, seed=0, size=16, progress=False)
    assert (tmp_path / "empty" / "Aa" / "0000.png").read_bytes() == (tmp_path / "a" / "b" / "c" / "Aa" / "0000.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty", "species.yaml"]  # no staging folders left


def test_interrupted_generate_leaves_nothing_and_the_rerun_works(tmp_path):
    """Ctrl-C half way: no partial split (visible or staged) remains, stderr says so, the same --out works again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    species = _write(tmp_path, "species:\n  Aa: {colour: red, form: bird, trait: wings, scene: sky}\n")
    out = tmp_path / "nested" / "split"
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "  # even if started with SIGINT ignored
            f"from cotembed_critters.species import generate_split; "
            f"generate_split({str(species)!r}, {str(out)!r}, per_class=100000, seed=0, size=16, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    try:
        while not list((tmp_path / "nested").glob(".split.*.partial/Aa/*.png")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "generate never started writing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "interrupted after" in err and f"removed the partial output, nothing was written to {out}" in err
    assert not (tmp_path / "nested").exists()  # the staging folder and the parent it created are gone

    summary = generate_split(species, out, per_class=2, seed=0, size=16, progress=False)
    assert summary["n_images"] == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["Aa/0000.png", "Aa/0001.png"]
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["split"]


# ----------------------------------------------------------------- systems
@pytest.mark.parametrize(("filename", "paraphrased"), [("system.yaml", False), ("system_paraphrased.yaml", True)])
def test_example_systems_match_species_file(filename, paraphrased):
    system = System.load(EXAMPLES / filename)
    expected = System.from_dict(system_from_species(load_species(SPECIES_FILE), paraphrased=paraphrased))
    assert system.to_dict()["groups"] == expected.to_dict()["groups"]
    assert system.to_dict()["rules"] == expected.to_dict()["rules"]
    assert system.identical_rules() == []
    assert len(system.class_names) == len(load_species(SPECIES_FILE))


def test_systems_use_caption_words_or_paraphrases():
    table = load_species(SPECIES_FILE)
    easy = system_from_species(table)
    hard = system_from_species(table, paraphrased=True)
    for attr in ATTRIBUTE_NAMES:
        assert easy["groups"][attr]["options"] == [v.caption for v in VOCABULARY[attr]]
        assert hard["groups"][attr]["options"] == [v.paraphrases[0] for v in VOCABULARY[attr]]
        assert "{}" in easy["groups"][attr]["prompt"]
    with pytest.raises(SpeciesFileError, match="unknown colour 'mauve'"):
        system_from_species({"Aa": {"colour": "mauve", "form": "bird", "trait": "wings", "scene": "sky"}})


def test_validate_species_accepts_a_dict():
    table = validate_species({"species": {"Aa": dict(BASE)}})
    assert table == {"Aa": BASE}


# --------------------------------------------------------------------- CLI
def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_generate_is_deterministic(capsys, tmp_path):
    table = load_species(SPECIES_FILE)
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        code, stdout, err = _run(capsys, "critters", "generate", "--species", SPECIES_FILE, "--per-class", 3, "--seed", 11, "--out", out, "-q")
        assert code == 0, err
        assert f"wrote {3 * len(table)} images ({len(table)} species x 3)" in stdout
        files = sorted(p for p in out.rglob("*") if p.is_file())
        assert len(files) == 3 * len(table)
        assert sorted(p.name for p in out.iterdir()) == sorted(table)
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    code, stdout, _ = _run(capsys, "critters", "generate", "--species", SPECIES_FILE, "--per-class", 1, "--seed", 12, "--out", tmp_path / "c", "--format", "json", "-q")
    summary = json.loads(stdout)
    assert code == 0 and summary["n_images"] == len(table) and summary["difficulty"] == "easy" and summary["size"] == 64
    assert (tmp_path / "c" / "Drovnak" / "0000.png").read_bytes() != outputs[0]["Drovnak/0000.png"]


def test_cli_generate_bad_species_file_exits_2(capsys, tmp_path):
    path = _write(tmp_path, "species:\n  Zorblat: {colour: mauve, form: bird, trait: wings, scene: sky}\n")
    code, out, err = _run(capsys, "critters", "generate", "--species", path, "--per-class", 3, "--seed", 0, "--out", tmp_path / "o")
    assert code == 2 and out == ""
    assert f"{path}: species.Zorblat.colour: unknown colour 'mauve'" in err
    assert not (tmp_path / "o").exists()


def test_cli_generate_usage_errors_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "critters", "generate", "--species", SPECIES_FILE, "--per-class", 0, "--seed", 0, "--out", tmp_path / "o")
    assert code == 2 and "--per-class" in err
    code, _, err = _run(capsys, "critters", "generate", "--species", SPECIES_FILE, "--per-class", 1, "--seed", 0, "--out", tmp_path / "o", "--difficulty", "medium")
    assert code == 2 and "--difficulty" in err
    code, _, err = _run(capsys, "critters")
    assert code == 2

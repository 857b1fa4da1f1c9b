"""Species of the critters world: named attribute combinations.

A species file is YAML::

    species:
      Drovnak: {colour: black, form: biped, trait: antennae, scene: volcano}
      Pelquiz: {colour: blue, form: biped, trait: antennae, scene: volcano}

:func:`load_species` validates it (every problem names the file and the field,
e.g. ``species.yaml: species.Zorblat.colour: unknown colour 'mauve' (choose one
of ...)``), :func:`generate_split` renders an ImageFolder split from it, and
:func:`system_from_species` builds the matching chain-of-thought system.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cotembed.errors import InputError, SpeciesFileError, SystemValidationError
from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY, value

__all__ = [
    "MAX_PER_CLASS",
    "PROMPTS",
    "SIZE_RANGE",
    "SpeciesFileError",
    "generate_split",
    "image_seed",
    "load_species",
    "redundant_system_from_species",
    "system_from_species",
    "system_yaml",
    "validate_species",
]

SpeciesTable = dict[str, dict[str, str]]
"""Species name -> {colour, form, trait, scene} keys, in file order."""

_TOP_LEVEL = ("species", "name", "description")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f:*?\"<>|]")

PROMPTS: dict[str, str] = {
    "colour": "The creature's body is mainly {}.",
    "form": "It looks like {}.",
    "trait": "Its most notable feature is {}.",
    "scene": "The background looks like {}.",
}
"""The question each attribute group asks, in the style of the Jina AI article's system."""


# ------------------------------------------------------------------ loading
def validate_species(data: Any, source: str = "<species>") -> SpeciesTable:
    """Check a parsed species file and return its table; raise :class:`SpeciesFileError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, Mapping) or "species" not in data:
        raise SpeciesFileError(source, ["expected a mapping with a 'species' key: species: {Name: {colour: ..., form: ..., trait: ..., scene: ...}}"])
    for key in data:
        if key not in _TOP_LEVEL:
            problems.append(f"{key}: unknown top-level key (allowed: {', '.join(_TOP_LEVEL)})")
    raw = data["species"]
    if not isinstance(raw, Mapping) or not raw:
        raise SpeciesFileError(source, problems + ["species: expected a non-empty mapping of species name -> attributes"])

    table: SpeciesTable = {}
    seen_combo: dict[tuple[str, ...], str] = {}
    seen_folder: dict[str, str] = {}
    for name, spec in raw.items():
        where = f"species.{name}"
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: species names must be non-empty text")
            continue
        if name != name.strip() or name in (".", "..") or name.startswith(".") or _BAD_NAME.search(name):
            problems.append(f"{where}: name cannot be used as a folder name (no leading dot or surrounding spaces, no / \\ : * ? \" < > |)")
        folded = name.casefold()
        if folded in seen_folder:
            problems.append(f"{where}: same folder name as species.{seen_folder[folded]} on case-insensitive file systems")
        seen_folder.setdefault(folded, name)
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: expected a mapping with {', '.join(ATTRIBUTE_NAMES)}, got {type(spec).__name__}")
            continue
        attrs: dict[str, str] = {}
        for field in spec:
            if field not in ATTRIBUTE_NAMES:
                problems.append(f"{where}.{field}: unknown field (fields are {', '.join(ATTRIBUTE_NAMES)})")
        for attr in ATTRIBUTE_NAMES:
            keys = [v.key for v in VOCABULARY[attr]]
            if attr not in spec:
                problems.append(f"{where}: missing {attr} (choose one of {', '.join(keys)})")
                continue
            val = spec[attr]
            if not isinstance(val, str):
                problems.append(f"{where}.{attr}: expected one {attr} key, got {type(val).__name__} (choose one of {', '.join(keys)})")
            elif val not in keys:
                problems.append(f"{where}.{attr}: unknown {attr} {val!r} (choose one of {', '.join(keys)})")
            else:
                attrs[attr] = val
        if len(attrs) == len(ATTRIBUTE_NAMES):
            combo = tuple(attrs[a] for a in ATTRIBUTE_NAMES)
            if combo in seen_combo:
                problems.append(f"{where}: same attributes as species.{seen_combo[combo]}; every species needs its own combination")
            seen_combo.setdefault(combo, name)
            table[name] = attrs
    if problems:
        raise SpeciesFileError(source, problems)
    return table


def load_species(path: str | Path) -> SpeciesTable:
    """Read and validate a species YAML file (duplicate keys are reported, not silently merged)."""
    from cotembed.system import parse_system_text

    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpeciesFileError(source, [f"cannot read file: {reason}"]) from exc
    try:
        data = parse_system_text(text, source, json_format=path.suffix.lower() == ".json")
    except SystemValidationError as exc:
        raise SpeciesFileError(source, exc.problems) from exc
    return validate_species(data, source)


# --------------------------------------------------------------- rendering
def image_seed(seed: int, species_index: int, i: int) -> int:
    """The render seed of image ``i`` of the ``species_index``-th species: stable across
    runs, processes and platforms (numpy SeedSequence, not Python's ``hash``)."""
    state = np.random.SeedSequence([int(seed), int(species_index), int(i)]).generate_state(1, dtype=np.uint64)
    return int(state[0])


SIZE_RANGE = (16, 1024)
"""Image sides :func:`generate_split` writes: 16 px is the least a critter is legible at;
1024 px keeps one render's supersampled canvas (4096 px square) well inside memory."""
MAX_PER_CLASS = 100_000


def _check_split_settings(per_class: Any, seed: Any, difficulty: Any, size: Any) -> None:
    """Every bad setting in one :class:`InputError`, each named as the argument and its flag."""
    from cotembed_critters.render import DIFFICULTIES

    def whole(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    problems = []
    if not whole(per_class) or not 1 <= per_class <= MAX_PER_CLASS:
        problems.append(f"per_class (--per-class) must be an integer from 1 to {MAX_PER_CLASS}, got {per_class!r}")
    if not whole(seed) or seed < 0:
        problems.append(f"seed (--seed) must be an integer >= 0, got {seed!r}")
    if difficulty not in DIFFICULTIES:
        problems.append(f"difficulty (--difficulty) {difficulty!r} is unknown; choose one of {', '.join(DIFFICULTIES)}")
    lo, hi = SIZE_RANGE
    if not whole(size) or not lo <= size <= hi:
        problems.append(f"size (--size) must be an integer from {lo} to {hi} pixels, got {size!r}")
    if problems:
        raise InputError("; ".join(problems))


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return the ones created, deepest first."""
    created = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        created.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def generate_split(
    species_path: str | Path,
    out_dir: str | Path,
    per_class: int,
    seed: int = 0,
    difficulty: str = "easy",
    size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``per_class`` images of every species into ``out_dir/<Species>/<i>.png``.

    Deterministic: image ``i`` of the species at position ``k`` in the file is
    rendered with :func:`image_seed` ``(seed, k, i)``, so the same arguments
    write byte-identical files. ``out_dir`` must not exist or be empty.

    All or nothing: images go to a hidden sibling folder that is renamed to
    ``out_dir`` once complete, so an interrupted or failed run leaves no partial
    split behind to block the rerun (it says so on stderr). Returns a summary
    (counts, paths, settings, seconds).
    """
    from tqdm import tqdm

    from cotembed_critters.render import render

    _check_split_settings(per_class, seed, difficulty, size)
    table = load_species(species_path)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder; choose a new --out or delete it first")

    width = max(4, len(str(per_class - 1)))
    start = time.perf_counter()
    total = len(table) * per_class
    created = _make_parents(out.parent)
    staging = out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    staging.mkdir()  # not mkdtemp: the split keeps the usual permissions (umask), not 0700
    done = 0
    try:
        with tqdm(total=total, desc="critters", unit="img", file=sys.stderr, disable=not progress) as bar:
            for k, (name, attrs) in enumerate(table.items()):
                folder = staging / name
                folder.mkdir()
                for i in range(per_class):
                    image = render(attrs, image_seed(seed, k, i), size=size, difficulty=difficulty)
                    image.save(folder / f"{i:0{width}d}.png", format="PNG")
                    done += 1
                    bar.update(1)
        if out.exists():
            out.rmdir()  # checked empty above; a folder can only be renamed onto a missing name everywhere
        staging.rename(out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed ({type(exc).__name__})"
        print(f"critters generate {why} after {done} of {total} images: removed the partial output, "
              f"nothing was written to {out}", file=sys.stderr)
        raise
    return {
        "species_file": str(species_path),
        "out": str(out),
        "n_species": len(table),
        "per_class": per_class,
        "n_images": total,
        "seed": seed,
        "difficulty": difficulty,
        "size": size,
        "seconds": round(time.perf_counter() - start, 3),
        "species": list(table),
    }


# ------------------------------------------------------------------ systems
def system_from_species(
    species: Mapping[str, Mapping[str, str]],
    paraphrased: bool = False,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """A chain-of-thought system dict (canonical ``groups``/``rules`` keys) for the species.

    One group per attribute, asking :data:`PROMPTS`; its options are the values
    some species uses, in vocabulary order, worded as the caption phrase
    (``paraphrased=False``: the words the model was trained on) or as the first
    paraphrase (``paraphrased=True``: words it never saw in a caption). Each
    species' rule names its own value in every group.
    """
    table = validate_species({"species": dict(species)}, "<species>")

    def text(attr: str, key: str) -> str:
        v = value(attr, key)
        return v.paraphrases[0] if paraphrased else v.caption

    used = {attr: {attrs[attr] for attrs in table.values()} for attr in ATTRIBUTE_NAMES}
    groups = {
        attr: {"prompt": PROMPTS[attr], "options": [text(attr, v.key) for v in VOCABULARY[attr] if v.key in used[attr]]}
        for attr in ATTRIBUTE_NAMES
    }
    rules = {sp: {attr: text(attr, attrs[attr]) for attr in ATTRIBUTE_NAMES} for sp, attrs in table.items()}
    wording = "paraphrases the model never saw in a caption" if paraphrased else "the caption phrases the model was trained on"
    return {
        "name": name or ("critters-paraphrased" if paraphrased else "critters"),
        "description": description
        or f"{len(table)} made-up critter species, told apart by four attribute questions worded with {wording}.",
        "baseline_prompt": "{}",
        "groups": groups,
        "rules": rules,
    }


def redundant_system_from_species(
    species: Mapping[str, Mapping[str, str]],
    name: str = "critters-redundant",
    description: str | None = None,
) -> dict[str, Any]:
    """A system that asks every attribute in every wording: the caption phrase and each paraphrase.

    Group ``colour`` uses the caption words, ``colour~1`` the first paraphrases,
    ``colour~2`` the second, and so on, all with the same question; rules match.
    The answers of one attribute's groups are strongly dependent, so asking all of
    them mostly repeats evidence: a test bed for adaptive questioning, which should
    need only a few of them.
    """
    table = validate_species({"species": dict(species)}, "<species>")
    wordings = min(1 + len(v.paraphrases) for values in VOCABULARY.values() for v in values)
    used = {attr: {attrs[attr] for attrs in table.values()} for attr in ATTRIBUTE_NAMES}

    def text(attr: str, key: str, wording: int) -> str:
        v = value(attr, key)
        return v.caption if wording == 0 else v.paraphrases[wording - 1]

    def group_name(attr: str, wording: int) -> str:
        return attr if wording == 0 else f"{attr}~{wording}"

    groups = {
        group_name(attr, w): {"prompt": PROMPTS[attr],
                              "options": [text(attr, v.key, w) for v in VOCABULARY[attr] if v.key in used[attr]]}
        for attr in ATTRIBUTE_NAMES
        for w in range(wordings)
    }
    rules = {
        sp: {group_name(attr, w): text(attr, attrs[attr], w) for attr in ATTRIBUTE_NAMES for w in range(wordings)}
        for sp, attrs in table.items()
    }
    return {
        "name": name,
        "description": description
        or f"{len(table)} made-up critter species; each of the four attributes asked in {wordings} wordings "
        "(the caption phrase and each paraphrase).",
        "baseline_prompt": "{}",
        "groups": groups,
        "rules": rules,
    }


def system_yaml(system: Mapping[str, Any]) -> str:
    """A system dict from :func:`system_from_species` as readable YAML: options one per
    line, each rule on one line with its species name aligned."""
    import yaml

    def scalar(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True, sort_keys=False).strip().removesuffix("...").strip()

    lines = [f"{key}: {scalar(system[key])}" for key in ("name", "description", "baseline_prompt", "temperature") if key in system]
    lines += ["", "groups:"]
    for gname, group in system["groups"].items():
        lines += [f"  {gname}:", f"    prompt: {scalar(group['prompt'])}", "    options:"]
        lines += [f"      - {scalar(option)}" for option in group["options"]]
        if "weight" in group:
            lines.append(f"    weight: {scalar(group['weight'])}")
    lines += ["", "rules:"]
    width = max(len(scalar(name)) for name in system["rules"]) + 1
    for name, rule in system["rules"].items():
        lines.append(f"  {(scalar(name) + ':').ljust(width)} {scalar(dict(rule))}")
    return "\n".join(lines) + "\n"

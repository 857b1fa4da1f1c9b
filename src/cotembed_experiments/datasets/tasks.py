"""The real-data tasks: which source, which items, which labels. Chosen before any result was seen.

Two regimes, reported separately because chain-of-thought helps in one and not the other:
- ``plant-families``: WordNet glosses of plant species labelled by their botanical family's
  Latin name (Compositae, Cruciferae, ...). A text model has little idea what "Ericaceae"
  looks like, so the bare class name (the baseline) is close to a guess.
- ``emoji-subgroups``: CLDR emoji names ("grapes", "roller skate") labelled by their subgroup
  under an everyday name ("fruit", "sport"): names any text model knows well.
Animal taxonomy is left out on purpose (kept for independent checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cotembed_experiments.datasets import emoji, wordnet
from cotembed_experiments.datasets.sources import DebianSource, stable_order

Rows = list[tuple[str, str, str]]  # (id, text, label)


@dataclass(frozen=True)
class Task:
    name: str
    regime: str
    description: str
    sources: tuple[DebianSource, ...]
    rows: Callable[[], Rows]
    min_per_class: int  # classes with fewer items are dropped (named in the manifest)
    per_class: int | None = 30  # default cap, so large classes do not swamp the accuracy


PLANT_FAMILIES = ("Compositae", "Leguminosae", "Orchidaceae", "Liliaceae", "Cruciferae", "Gramineae", "Labiatae",
                  "Rosaceae", "Solanaceae", "Ericaceae", "Cactaceae", "Palmae", "Salicaceae", "Fagaceae",
                  "Cupressaceae", "Umbelliferae")
"""Sixteen families with many species in WordNet and traits a gloss tends to mention."""


def _plant_rows() -> Rows:
    synsets = wordnet.read_nouns()
    wanted = set(PLANT_FAMILIES)
    seen: set[str] = set()
    rows = []
    for offset, definition, family in wordnet.plant_families(synsets):
        if family in wanted and wordnet.informative(definition) and definition not in seen:
            seen.add(definition)
            rows.append((f"wn:{offset}", definition, family))
    return rows


EMOJI_SUBGROUPS = {
    "food-fruit": "fruit", "food-vegetable": "vegetable", "food-sweet": "sweets", "drink": "drink",
    "food-asian": "Asian food", "food-prepared": "prepared food", "clothing": "clothing",
    "household": "household item", "tool": "tool", "office": "office supply", "musical-instrument": "musical instrument",
    "sport": "sport", "game": "game", "transport-ground": "land vehicle", "transport-air": "aircraft",
    "place-building": "building", "computer": "computer", "sky & weather": "sky and weather",
}
"""CLDR subgroup -> the everyday class name used as the label."""


def _emoji_rows() -> Rows:
    rows = []
    for _group, subgroup, name in emoji.emoji_names():
        label = EMOJI_SUBGROUPS.get(subgroup)
        if label:
            rows.append((f"emoji:{subgroup}:{name}", name, label))
    return rows


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("plant-families", "unknown names",
             "WordNet 3.0 glosses of plant species, labelled by their family's Latin name (16 families)",
             (wordnet.SOURCE,), _plant_rows, 15),
        Task("emoji-subgroups", "well-known names",
             "Unicode CLDR emoji names, labelled by their subgroup's everyday name (18 subgroups)",
             (emoji.SOURCE,), _emoji_rows, 7),
    )
}


def sample(rows: Rows, per_class: int | None, seed: int) -> Rows:
    """At most ``per_class`` rows of each label, picked by a seeded hash; sorted by label then id."""
    by_label: dict[str, Rows] = {}
    for row in sorted(rows, key=lambda r: stable_order(seed, r[0])):
        by_label.setdefault(row[2], []).append(row)
    picked = [r for label_rows in by_label.values() for r in (label_rows[:per_class] if per_class else label_rows)]
    return sorted(picked, key=lambda r: (r[2], r[0]))

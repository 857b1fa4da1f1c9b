"""WordNet 3.0 (Debian ``wordnet-base``): a reader for ``data.noun`` and the plant-families task.

``data.noun`` holds one synset per line: offset, lexicographer file, words, pointers and a
gloss. Plant species point to their genus and the genus to its family with a *member
holonym* pointer (``#m``); following the two gives each species its family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cotembed_experiments.datasets.sources import DebianSource

DATA_NOUN = "/usr/share/wordnet/data.noun"
SOURCE = DebianSource("wordnet-base", (DATA_NOUN,), "/usr/share/doc/wordnet-base/copyright")
NOUN_PLANT = 20  # lexicographer file noun.plant


@dataclass(frozen=True)
class Synset:
    offset: str
    lexfile: int
    words: tuple[str, ...]
    pointers: tuple[tuple[str, str, str], ...]  # (symbol, target offset, part of speech)
    gloss: str

    @property
    def definition(self) -> str:
        """The gloss without its quoted usage examples."""
        return self.gloss.split('; "')[0].split(' "')[0].strip().rstrip(";").strip()

    def targets(self, symbol: str) -> list[str]:
        return [offset for sym, offset, pos in self.pointers if sym == symbol and pos == "n"]


def read_nouns(path: str = DATA_NOUN) -> dict[str, Synset]:
    """Every noun synset by offset (the licence header lines start with two spaces)."""
    synsets = {}
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        if line.startswith("  ") or not line.strip():
            continue
        synset = _parse(line)
        synsets[synset.offset] = synset
    return synsets


def _parse(line: str) -> Synset:
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    n_words = int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(n_words))
    at = 4 + 2 * n_words
    n_pointers = int(fields[at])
    pointers = tuple((fields[at + 1 + 4 * k], fields[at + 2 + 4 * k], fields[at + 3 + 4 * k]) for k in range(n_pointers))
    return Synset(fields[0], int(fields[1]), words, pointers, gloss.strip())


GENUS_ONLY = re.compile(r"\b(of|in) the genus [A-Z]\w+", re.IGNORECASE)


def informative(definition: str, min_words: int = 6) -> bool:
    """Drop glosses that say little more than "any plant of the genus X"."""
    return len(GENUS_ONLY.sub("", definition).split()) >= min_words


def plant_families(synsets: dict[str, Synset]) -> Iterator[tuple[str, str, str]]:
    """(species offset, definition, family's first word) for plant species whose genus
    belongs directly to a family (subfamilies are left out)."""
    for synset in synsets.values():
        if synset.lexfile != NOUN_PLANT:
            continue
        for genus in synset.targets("#m"):
            for family in synsets[genus].targets("#m"):
                words = synsets[family].words
                if any(w.startswith("family ") for w in words):
                    yield synset.offset, synset.definition, words[0]

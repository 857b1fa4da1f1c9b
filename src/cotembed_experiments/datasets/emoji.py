"""Unicode emoji (Debian ``unicode-data``): emoji names labelled by their CLDR subgroup.

``emoji-test.txt`` lists every emoji under ``# group:`` and ``# subgroup:`` headers with
its CLDR short name (``1F347 ; fully-qualified # 🍇 E0.6 grapes``). Skin-tone and hair
variants are left out: they repeat a name with a modifier.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from cotembed_experiments.datasets.sources import DebianSource

EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
SOURCE = DebianSource("unicode-data", (EMOJI_TEST,), "/usr/share/doc/unicode-data/copyright")
LINE = re.compile(r"^[0-9A-F ]+;\s*fully-qualified\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$")
VARIANT = re.compile(r"skin tone|hair|: (man|woman|person)\b")


def emoji_names(path: str = EMOJI_TEST) -> Iterator[tuple[str, str, str]]:
    """(group, subgroup, name) for every fully-qualified emoji without a modifier."""
    group = subgroup = ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := LINE.match(line)) and not VARIANT.search(match["name"]):
            yield group, subgroup, match["name"]


def unicode_version(path: str = EMOJI_TEST) -> str | None:
    for line in Path(path).read_text(encoding="utf-8").splitlines()[:20]:
        if line.startswith("# Version:"):
            return line.split(":", 1)[1].strip()
    return None

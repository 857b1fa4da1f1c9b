"""The card table: ``TheFusion21/PokemonCards`` (or any table with its columns) as cards.

The dataset has one split, ``train``, with the columns ``id``, ``image_url``, ``caption``,
``name``, ``hp`` and ``set_name``; the harness needs ``id``, ``image_url`` and ``name``.
``datasets`` is imported only when a table is loaded by name, so the rest of the harness
(and a caller who passes a table of their own) works without the ``pokemon`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from cotembed.data import nfc
from cotembed.errors import CotembedError, HarnessDependencyError, InputError

DATASET_ID = "TheFusion21/PokemonCards"
DATASET_SPLIT = "train"
COLUMNS = ("id", "image_url", "caption", "name", "hp", "set_name")
"""The dataset's columns, in its own order."""
REQUIRED_COLUMNS = ("id", "image_url", "name")
TABLE_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
"""Local files ``--dataset`` accepts besides a hub id (loaded by ``datasets``' own builders)."""



@dataclass(frozen=True)
class Card:
    """One row of the table: where its image is and whose card it is."""

    id: str
    image_url: str
    name: str
    set_name: str = ""


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise HarnessDependencyError("datasets") from exc
    return datasets


def load_table(source: str = DATASET_ID, split: str = DATASET_SPLIT, revision: str | None = None) -> Any:
    """The card table: a hub dataset id (needs network the first time; ``datasets``
    caches it), or a local ``.csv``/``.json(l)``/``.parquet`` file with the same columns."""
    datasets = _datasets()
    path = Path(source).expanduser()
    try:
        if path.suffix.lower() in TABLE_SUFFIXES and path.is_file():
            return datasets.load_dataset(TABLE_SUFFIXES[path.suffix.lower()], data_files=str(path), split="train")
        return datasets.load_dataset(source, split=split, revision=revision)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"dataset {source!r} (split {split!r}) could not be loaded: {exc}") from exc
    except (OSError, ConnectionError) as exc:
        raise CotembedError(f"dataset {source!r} could not be loaded ({type(exc).__name__}: {exc}); "
                            "it needs network access the first time, after that datasets' cache is used") from exc


def cards_from_table(table: Any, source: str = "dataset") -> list[Card]:
    """Rows -> cards. ``table`` is a ``datasets.Dataset`` or anything with ``column_names``
    and column access by name (``table["name"]``); every missing column is named at once."""
    columns = list(getattr(table, "column_names", None) or (table.keys() if isinstance(table, Mapping) else []))
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, columns)) or 'none'}; "
                         f"expected the columns of {DATASET_ID}: {', '.join(COLUMNS)})")
    ids, urls, names = (list(table[c]) for c in REQUIRED_COLUMNS)
    sets = list(table["set_name"]) if "set_name" in columns else [""] * len(ids)
    cards, problems = [], []
    for row, (card_id, url, name, set_name) in enumerate(zip(ids, urls, names, sets)):
        if not isinstance(url, str) or not url.strip():
            problems.append(f"row {row} (id {card_id!r}): image_url is empty")
            continue
        if not isinstance(name, str) or not name.strip():
            problems.append(f"row {row} (id {card_id!r}): name is empty")
            continue
        cards.append(Card(str(card_id), url.strip(), nfc(name.strip()), str(set_name or "")))
    if problems and not cards:
        raise InputError(f"{source}: no usable rows; " + "; ".join(problems[:5]))
    seen: set[str] = set()
    duplicates: set[str] = set()
    for card in cards:
        (duplicates if card.id in seen else seen).add(card.id)
    if duplicates:
        raise InputError(f"{source}: column id must be unique; repeated: {', '.join(sorted(set(duplicates))[:5])}")
    return cards


def keep_classes(cards: Iterable[Card], resolve: Callable[[str], str | None]) -> tuple[list[tuple[Card, str]], dict[str, int]]:
    """Cards whose name is a class (or alias) of the system, with that class; and how many
    cards each other name had (trainer cards, other Pokémon), for the report."""
    kept: list[tuple[Card, str]] = []
    others: dict[str, int] = {}
    for card in cards:
        label = resolve(card.name)
        if label is None:
            others[card.name] = others.get(card.name, 0) + 1
        else:
            kept.append((card, label))
    return kept, others


def class_counts(pairs: Sequence[tuple[Card, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, label in pairs:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["COLUMNS", "Card", "DATASET_ID", "DATASET_SPLIT", "HarnessDependencyError", "cards_from_table", "class_counts",
           "keep_classes", "load_table"]

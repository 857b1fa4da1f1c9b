"""The article's experiment end to end: cards -> seeded test set -> crops -> baseline / cot / hybrid per model.

:func:`draw_test_set` keeps the cards whose name is a class of the system, shuffles them
with a seed, and walks that order downloading and cropping until it has ``size`` usable
images (a card whose image cannot be fetched or decoded is reported and the next one
taken), so the same seed gives the same test set for as long as the same URLs answer.
It also writes ``testset-....csv`` (``path,label``) next to the crops, for ``cotembed eval``.
:func:`evaluate_models` scores every method on one encoding pass per model, and
:func:`compare_with_article` sets the figures beside the article's.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cotembed._io import atomic_write
from cotembed.data import Sample
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import EvalReport
from cotembed.system import System
from cotembed_experiments.pokemon.cards import Card, class_counts, keep_classes
from cotembed_experiments.pokemon.crop import DEFAULT_ART_BOX, ArtBox, crop_artwork
from cotembed_experiments.pokemon.download import ImageDownloader

DEFAULT_SIZE = 117
"""Test images, as the article states (its percentages are multiples of 1/118, though)."""
DEFAULT_SEED = 0
DEFAULT_MODELS = ("jina:jinaai/jina-clip-v1", "jina:jinaai/jina-clip-v2")
ARTICLE_ACC1: dict[str, dict[str, float]] = {
    "jina:jinaai/jina-clip-v1": {"baseline": 0.3136, "cot": 0.4661},
    "jina:jinaai/jina-clip-v2": {"baseline": 0.1610, "cot": 0.3814},
}
"""Top-1 accuracy the article reports (baseline -> CoT), by model spec."""
ARTICLE_NOTE = ("the article reports 117 test images of 13 Pokémon; its four percentages are exactly "
                "37, 55, 19 and 45 correct out of 118")


def default_data_dir() -> Path:
    """Where card images and crops go by default: ``$COTEMBED_HOME/pokemon``, else
    ``$XDG_CACHE_HOME/cotembed/pokemon``, else ``~/.cache/cotembed/pokemon`` (they can
    always be downloaded again)."""
    home = os.environ.get("COTEMBED_HOME")
    if home:
        return Path(home).expanduser() / "pokemon"
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "cotembed" / "pokemon"


@dataclass
class Failure:
    """A card left out of the test set, and why."""

    card: Card
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.card.id, "name": self.card.name, "url": self.card.image_url, "error": self.error}


@dataclass
class TestSet:
    """The drawn cards, their cropped artwork as labelled samples, and what happened on the way."""

    __test__ = False  # not a pytest class

    samples: list[Sample]
    cards: list[Card]
    seed: int
    size: int
    box: ArtBox
    candidates: int
    """Cards whose name is a class of the system."""
    other_names: dict[str, int]
    fetched: int = 0
    """Images transferred in this run (0 when every image was already in the folder)."""
    reused: int = 0
    failures: list[Failure] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def classes(self) -> dict[str, int]:
        return class_counts([(c, s.label or "") for c, s in zip(self.cards, self.samples)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": len(self.samples),
            "requested": self.size,
            "seed": self.seed,
            "art_box": self.box.text(),
            "candidates": self.candidates,
            "classes": self.classes,
            "cards": [{"id": c.id, "name": c.name, "label": s.label, "image": str(s.path)} for c, s in zip(self.cards, self.samples)],
            "downloads": {"fetched": self.fetched, "reused": self.reused, "failed": len(self.failures)},
            "failures": [f.to_dict() for f in self.failures],
            "manifest": str(self.manifest) if self.manifest else None,
            "names_not_in_system": len(self.other_names),
        }


def draw_test_set(cards: Iterable[Card], system: System, folder: str | Path, *, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                  box: ArtBox = DEFAULT_ART_BOX, downloader: ImageDownloader | None = None, progress: bool = False,
                  on_failure: Callable[[Failure], None] | None = None) -> TestSet:
    """Seeded test set of ``size`` cropped card images whose names are classes of ``system``.

    Images are downloaded into ``folder/images`` and cropped into ``folder/art-<box tag>``;
    both are reused by later runs. ``downloader`` defaults to an :class:`ImageDownloader`
    on ``folder/images`` (closed on return); ``on_failure`` hears each skipped card at once.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"test set size must be a whole number >= 1, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"seed must be a whole number in [0, 2**32), got {seed!r}")
    folder = Path(folder).expanduser()
    kept, others = keep_classes(cards, system.resolve_label)
    if not kept:
        raise InputError(f"no card is named after a class of system {system.name!r} "
                         f"(classes: {', '.join(system.compile().class_names)}); check the dataset's name column or add aliases")
    order = np.random.default_rng(seed).permutation(len(kept))
    own = downloader is None
    loader = downloader or ImageDownloader(folder / "images")
    art_dir = folder / f"art-{box.tag}"
    chosen: list[tuple[Card, str, Path]] = []
    failures: list[Failure] = []
    fetched = reused = 0
    position = 0
    try:
        while len(chosen) < size and position < len(order):
            batch = [kept[i] for i in order[position : position + size - len(chosen)]]
            position += len(batch)
            outcomes = loader.fetch_all([card for card, _ in batch], progress=progress)
            for (card, label), outcome in zip(batch, outcomes):
                failure = None
                if outcome.path is None:
                    failure = Failure(card, outcome.error or "download failed")
                else:
                    fetched += outcome.fetched
                    reused += not outcome.fetched
                    art = art_dir / f"{outcome.path.stem}.png"
                    try:
                        if not art.is_file():
                            crop_artwork(outcome.path, art, box)
                    except (ValueError, OSError) as exc:
                        failure = Failure(card, str(exc))
                    else:
                        chosen.append((card, label, art))
                if failure is not None:
                    failures.append(failure)
                    if on_failure is not None:
                        on_failure(failure)
    finally:
        if own:
            loader.close()
    if not chosen:
        raise InputError(f"none of the {len(kept)} matching cards could be downloaded and cropped; first error: "
                         f"{failures[0].error if failures else 'none'}")
    samples = [Sample(source=str(path), kind="image", path=path, label=label) for _, label, path in chosen]
    test_set = TestSet(samples, [card for card, _, _ in chosen], seed, size, box, len(kept), others, fetched, reused, failures)
    test_set.manifest = _write_manifest(art_dir / f"testset-seed{seed}-n{size}.csv", samples)
    return test_set


def _write_manifest(path: Path, samples: Sequence[Sample]) -> Path:
    """``path,label`` rows relative to the manifest, so ``cotembed eval`` can rerun the set."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path", "label"])
    for sample in samples:
        writer.writerow([os.path.relpath(str(sample.path), path.parent), sample.label])
    atomic_write(path, buf.getvalue())
    return path


def evaluate_models(test_set: TestSet, system: System, models: Sequence[str], make_classifier: Callable[[str], Any],
                    methods: Sequence[str] = ("baseline", "cot", "hybrid")) -> list[tuple[str, EvalReport]]:
    """``(spec, report)`` per model: one encoding pass each, every method scored on it.
    ``make_classifier(spec)`` returns a :class:`cotembed._classifier.CoTClassifier` for the
    system (the CLI passes one built on its cache and lazily loaded encoder)."""
    results = []
    for spec in dict.fromkeys(models):
        clf = make_classifier(spec)
        report = clf.evaluate(test_set.samples, tuple(methods))
        results.append((spec, report))
    return results


def compare_with_article(results: Sequence[tuple[str, EvalReport]]) -> list[dict[str, Any]]:
    """One row per (model, method): our top-1 accuracy beside the article's, where it gave one."""
    rows = []
    for spec, report in results:
        article = ARTICLE_ACC1.get(spec, {})
        for method, result in report.methods.items():
            acc1 = float(result.to_dict()["acc1"])
            reported = article.get(method)
            rows.append({"model": spec, "method": method, "acc1": acc1, "article_acc1": reported,
                         "difference": None if reported is None else acc1 - reported, "n_inputs": report.n_inputs})
    return rows


__all__ = ["ARTICLE_ACC1", "ARTICLE_NOTE", "DEFAULT_MODELS", "DEFAULT_SEED", "DEFAULT_SIZE", "Failure", "TestSet",
           "compare_with_article", "default_data_dir", "draw_test_set", "evaluate_models"]

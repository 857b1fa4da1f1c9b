"""The article's Pokémon experiment, reproducible: ``cotembed reproduce pokemon``.

Loads ``TheFusion21/PokemonCards`` (through ``datasets``, the ``pokemon`` extra), keeps
the cards named after a class of ``examples/pokemon/system.yaml``, downloads and caches
their images (:mod:`.download`), crops the artwork so no printed text remains
(:mod:`.crop`), draws a seeded test set and evaluates baseline / cot / hybrid per model
beside the article's figures (:mod:`.harness`). Of the core, only the CLI verb
``reproduce`` imports this package.
"""

from __future__ import annotations

from cotembed_experiments.pokemon.cards import COLUMNS, DATASET_ID, Card, cards_from_table, keep_classes, load_table
from cotembed_experiments.pokemon.crop import DEFAULT_ART_BOX, ArtBox, crop_artwork
from cotembed_experiments.pokemon.download import Downloaded, ImageDownloader
from cotembed_experiments.pokemon.harness import (
    ARTICLE_ACC1,
    DEFAULT_MODELS,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    Failure,
    TestSet,
    compare_with_article,
    draw_test_set,
    evaluate_models,
)

__all__ = [
    "ARTICLE_ACC1",
    "COLUMNS",
    "DATASET_ID",
    "DEFAULT_ART_BOX",
    "DEFAULT_MODELS",
    "DEFAULT_SEED",
    "DEFAULT_SIZE",
    "ArtBox",
    "Card",
    "Downloaded",
    "Failure",
    "ImageDownloader",
    "TestSet",
    "cards_from_table",
    "compare_with_article",
    "crop_artwork",
    "draw_test_set",
    "evaluate_models",
    "keep_classes",
    "load_table",
]

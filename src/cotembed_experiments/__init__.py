"""Experiments beside the library: the article's Pokémon experiment as a reproducible
harness (:mod:`.pokemon`) and real-data benchmark tasks built from public sources
(:mod:`.datasets`).

A guest of ``cotembed``: it imports the library, never the other way round (only the CLI
verbs ``reproduce`` and ``datasets`` reach it).
"""

"""Experiments beside the library: real-data benchmark tasks built from public sources.

A guest of ``cotembed``: it imports the library, never the other way round (the CLI
reaches it by import string).
"""

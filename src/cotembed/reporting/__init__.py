"""Presentation of results: text tables for the CLI (``_text``), and later plots and HTML."""

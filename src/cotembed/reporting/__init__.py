"""Presentation of results: text tables for the CLI (``text``), and later plots and HTML."""

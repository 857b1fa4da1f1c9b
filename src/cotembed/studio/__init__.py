"""The studio: a local web page to see why a system fails, edit it, and watch accuracy move.

One system file and one data set: the data is embedded once (through the cache), and
every edit is validated and re-scored on those embeddings by the library's own
evaluation, inspection and induction code. Modules:

- :mod:`~cotembed.studio._state`: :class:`Studio`, the system's history, edits, proposals and saving
- :mod:`~cotembed.studio._edits`: the named edits the page sends, each one System edit
- :mod:`~cotembed.studio._proposals`: a proposed system split into changes, and an optimise run's progress
- :mod:`~cotembed.studio._rendering`: the page's HTML from Jinja2 templates (autoescaped)
- :mod:`~cotembed.studio._app`: the FastAPI app (loopback by default, API key elsewhere)

Needs the ``serve`` extra (FastAPI, uvicorn, Jinja2).
"""

from cotembed.studio._state import ConflictError, EditOutcome, Figures, Proposal, Studio

__all__ = ["ConflictError", "EditOutcome", "Figures", "Proposal", "Studio"]

"""The studio's LLM revision: the current system, how the model answers it on the labelled data
(per-question accuracy, the costliest confusions), and the person's notes go to a chat model;
a revised system comes back, validated.

The request is the optimiser's ``llm-system`` request
(:func:`~cotembed.optimize._llm_proposers.revision_messages`) with the notes added, and the
answer is read and checked by :mod:`cotembed.authoring._drafting` as ``build`` reads its drafts:
an invalid answer goes back once with its problems; one still invalid is an error, never a
proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cotembed.authoring._llm import ChatModel
from cotembed.errors import LLMBadResponse
from cotembed.system import System

MAX_NOTES_CHARS = 20_000
"""Notes longer than this are refused: they are for a person's words, not pasted files."""
REPAIR_ROUNDS = 1
"""Times an invalid answer is sent back with its problems before the revision fails."""


@dataclass(frozen=True)
class Revision:
    """A valid revised system and what asking for it cost."""

    system: System
    requests: int
    model: str
    elapsed_s: float


def revise(llm: ChatModel, system: System, diagnostics: Mapping[str, Any], notes: str = "", modality: str = "image",
           repair_rounds: int = REPAIR_ROUNDS) -> Revision:
    """Ask ``llm`` for a revision of ``system``; LLM errors propagate, an answer still invalid after the repairs is LLMBadResponse."""
    from cotembed.authoring._drafting import extract_system, refused_answer, repair_message, review_draft
    from cotembed.errors import DraftParseError
    from cotembed.optimize._llm_proposers import revision_messages

    messages = revision_messages(system, diagnostics, modality, notes=notes)
    elapsed, model = 0.0, ""
    problems: list[str] = []
    for attempt in range(1 + repair_rounds):
        reply = llm.complete(messages)
        elapsed += reply.elapsed_s
        model = reply.model or model
        echoed = reply.content
        try:
            review = review_draft(extract_system(reply.content), system.class_names, "LLM revision")
            problems = list(review.problems)
        except DraftParseError as exc:
            review, problems = None, [f"the answer could not be read as a system: {exc.reason}"]
            echoed = refused_answer(reply.content, exc.reason)
        if review is not None and review.system is not None:
            return Revision(review.system, attempt + 1, model, elapsed)
        messages = [*messages, {"role": "assistant", "content": echoed}, {"role": "user", "content": repair_message(problems)}]
    shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
    raise LLMBadResponse(f"the LLM's revision is not a valid system after {1 + repair_rounds} answer(s): {shown}")


__all__ = ["MAX_NOTES_CHARS", "REPAIR_ROUNDS", "Revision", "revise"]

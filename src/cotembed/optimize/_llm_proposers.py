"""LLM proposers: the current system and its diagnostics go to a chat model, edits come back.

* ``llm-wordings`` lists the options of the weakest questions and asks for other
  wordings; they join the run's vocabulary and are tried like any other wording
  (each reword with its group's rules refitted).
* ``llm-system`` shows the whole system with per-question accuracy and the
  confusions that cost most, and asks for a revised system; a valid answer with the
  same classes is one candidate (an invalid one is sent back once with its problems).

Both speak to any OpenAI-compatible endpoint through :mod:`cotembed.authoring._llm`
(shared retries and errors). Every request counts against the run's LLM budget; a
service that stays unavailable ends LLM proposals for the run, and the search goes on
offline. Wrong settings (a rejected key, an unknown model) stop the run: they are the
caller's to fix.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from cotembed.errors import InputError
from cotembed.evaluation._objective import Objective
from cotembed.optimize._edits import Edit, ReplaceSystem
from cotembed.optimize._proposers import ProposalContext, Proposer, reword_with_refit
from cotembed.system import System

MAX_WORDINGS = 4
"""Wordings asked for per option."""
WEAK_GROUPS = 2
"""Questions whose options ``llm-wordings`` asks about in one request (the weakest by skill)."""


def describe_diagnostics(diagnostics: Mapping[str, Any], max_confusions: int = 8) -> str:
    """Per-question accuracy and the costliest confusions, as lines an LLM (or a person) can act on."""
    lines = [f"Accuracy on {diagnostics['n_inputs']} labelled training inputs: {100 * diagnostics['accuracy']:.1f}% "
             f"(chance {100 * diagnostics['chance']:.1f}%).", "", "How often each question's top answer fits the true class's rule:"]
    for q in diagnostics["questions"]:
        shares = sorted(diagnostics["answer_shares"].get(q["group"], ()), key=lambda o: -o["answered"])[:3]
        top = ", ".join(f"{o['option']!r} {100 * o['answered']:.0f}%" for o in shares)
        lines.append(f"- {q['group']}: {100 * q['accuracy']:.1f}% (chance {100 * q['chance']:.1f}%); most answered: {top}")
    confusions = diagnostics.get("confusions", [])[:max_confusions]
    if confusions:
        lines += ["", "Confusions that cost most (true -> predicted, inputs):"]
        lines += [f"- {c['true']} -> {c['predicted']} ({c['count']}): {c.get('suggestion', '')}" for c in confusions]
    if diagnostics.get("attractors"):
        lines += ["", "Options that draw answers from others:"]
        lines += [f"- {a['group']}: {a['option']!r} answered for {100 * a['answered']:.0f}% of inputs (rules expect {100 * a['expected']:.0f}%)"
                  for a in diagnostics["attractors"][:6]]
    return "\n".join(lines)


def training_diagnostics(objective: Objective, system: System, max_confusions: int = 8) -> dict[str, Any]:
    """Per-question accuracy and the costliest confusions on the objective's training rows (what an LLM proposer sees)."""
    from cotembed.inspection import data_report

    report = data_report(system, objective.embed, objective.train, objective.config(system), objective.method, max_confusions=max_confusions)
    return report.to_dict()


def system_json(system: System) -> str:
    return json.dumps(system.to_dict(), ensure_ascii=False, indent=1)


def revision_messages(system: System, diagnostics: Mapping[str, Any], modality: str = "image", notes: str = "") -> list[dict[str, str]]:
    """The request for a revised system: the current one, how the model answers it, what to change (and a person's ``notes``)."""
    from cotembed.authoring._drafting import system_prompt

    text = [
        "Here is a classification system and how the frozen model answers its questions on labelled training data.",
        "", "Current system (JSON):", system_json(system), "", describe_diagnostics(diagnostics), "",
    ]
    if notes.strip():
        text += ["A person who reviewed the system and its mistakes notes (follow these where they apply):", notes.strip(), ""]
    text += [
        "Revise the system to raise accuracy. Reword options the model misreads (plain, common words often work best), "
        "fix rules the model's answers contradict, and drop questions that only add noise. Keep every class name exactly "
        "as it is, and give every class a rule for every group.",
        "Answer with the whole revised system as one JSON object only.",
    ]
    return [{"role": "system", "content": system_prompt(modality)}, {"role": "user", "content": "\n".join(text)}]


def wording_messages(system: System, diagnostics: Mapping[str, Any], groups: Sequence[str], k: int = MAX_WORDINGS) -> list[dict[str, str]]:
    """The request for other wordings of the options of ``groups``."""
    accuracy = {q["group"]: q for q in diagnostics["questions"]}
    lines = [
        "A frozen image-text embedding model answers these multiple-choice questions about images by comparing the image "
        "with each filled-in sentence. It answers them poorly: it may not know the words used.",
        f"For every option below, give up to {k} other short wordings that mean the same thing and that a model trained on "
        "plain image captions is likely to know. Each wording must fit the sentence in place of {}.", "",
    ]
    for name in groups:
        group = system.groups[system.group_names.index(name)]
        q = accuracy.get(name)
        score = f" (answered right {100 * q['accuracy']:.0f}% of the time, chance {100 * q['chance']:.0f}%)" if q else ""
        lines.append(f"Question {name!r}: {group.prompt!r}{score}; options: {json.dumps(list(group.options), ensure_ascii=False)}")
    lines += ["", 'Answer with one JSON object only: {"<question>": {"<option>": ["<wording>", ...], ...}, ...}']
    return [{"role": "user", "content": "\n".join(lines)}]


def _ask(ctx: ProposalContext, proposer: str, messages: list[dict[str, str]]) -> str | None:
    """One request within the budget; LLM failures become history notes (unavailable: LLM proposals end)."""
    from cotembed.errors import LLMError, LLMSettingsError, LLMUnavailable

    if ctx.llm is None or not ctx.llm_budget.take():
        return None
    try:
        reply = ctx.llm.complete(messages)
    except LLMSettingsError:
        raise
    except LLMError as exc:
        ctx.events.append({"proposer": proposer, "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, LLMUnavailable):
            ctx.llm_budget.disabled = str(exc)
            ctx.log(f"LLM unavailable, going on without it: {exc}")
        return None
    return reply.content


class _LLMProposer(Proposer):
    needs_llm = True

    def __init__(self) -> None:
        self._asked: set[str] = set()

    def due(self, ctx: ProposalContext) -> bool:
        """Once per system, every ``llm_budget.every`` rounds, while the budget lasts."""
        budget = ctx.llm_budget
        if ctx.llm is None or budget.disabled or budget.remaining <= 0 or (ctx.round - 1) % max(1, budget.every):
            return False
        if ctx.system.fingerprint in self._asked:
            return False
        self._asked.add(ctx.system.fingerprint)
        return True


class LLMWordings(_LLMProposer):
    name = "llm-wordings"
    description = "an LLM proposes other wordings for the options of the weakest questions (added to the vocabulary)"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        from cotembed.authoring._drafting import extract_system
        from cotembed.errors import DraftParseError

        if not self.due(ctx):
            return []
        diagnostics = training_diagnostics(ctx.objective, ctx.system)
        weakest = [q["group"] for q in sorted(diagnostics["questions"], key=lambda q: q["skill"])[:WEAK_GROUPS]]
        answer = _ask(ctx, self.name, wording_messages(ctx.system, diagnostics, weakest))
        if answer is None:
            return []
        try:
            data = extract_system(answer)
        except DraftParseError as exc:
            ctx.events.append({"proposer": self.name, "error": f"unreadable answer: {exc.reason}"})
            return []
        added = 0
        answered: list[tuple[str, str]] = []
        for gname, entry in data.items():
            if gname not in ctx.system.group_names or not isinstance(entry, Mapping):
                continue
            options = ctx.system.groups[ctx.system.group_names.index(gname)].options
            for option, words in entry.items():
                if option in options and isinstance(words, list):
                    before = ctx.vocabulary.n_wordings
                    ctx.vocabulary = ctx.vocabulary.extended(gname, option, [w for w in words[:MAX_WORDINGS] if isinstance(w, str)])
                    added += ctx.vocabulary.n_wordings - before
                    answered.append((gname, option))
        ctx.events.append({"proposer": self.name, "added_wordings": added, "groups": weakest})
        triples = []
        for gname, option in answered:  # every new wording is tried now; the reword proposers keep them for later rounds
            taken = ctx.system.groups[ctx.system.group_names.index(gname)].options
            triples += [(gname, option, w) for w in ctx.vocabulary.alternatives(gname, option) if w not in taken]
        return reword_with_refit(ctx, ctx.sample(triples)) if triples else []


class LLMSystem(_LLMProposer):
    name = "llm-system"
    description = "an LLM sees the system and its diagnostics and proposes a revised system"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        from cotembed.authoring._drafting import extract_system, refused_answer, repair_message, review_draft
        from cotembed.errors import DraftParseError

        if not self.due(ctx):
            return []
        messages = revision_messages(ctx.system, training_diagnostics(ctx.objective, ctx.system), ctx.modality)
        for attempt in range(2):
            answer = _ask(ctx, self.name, messages)
            if answer is None:
                return []
            echoed = answer
            try:
                review = review_draft(extract_system(answer), ctx.system.class_names, "LLM revision")
                problems = list(review.problems)
            except DraftParseError as exc:
                review, problems = None, [f"the answer could not be read as a system: {exc.reason}"]
                echoed = refused_answer(answer, exc.reason)  # a runaway answer is not sent back whole
            if review is not None and review.system is not None:
                return [ReplaceSystem.of(review.system, note="LLM revision")]
            ctx.events.append({"proposer": self.name, "error": "invalid revision", "problems": problems[:20], "attempt": attempt + 1})
            messages = [*messages, {"role": "assistant", "content": echoed}, {"role": "user", "content": repair_message(problems)}]
        return []


def check_llm_answerable(names: Sequence[str], llm: Any) -> None:
    """LLM proposers chosen without a chat model: an input error naming them."""
    from cotembed.optimize._proposers import proposer_class

    needing = [n for n in names if proposer_class(n).needs_llm]
    if needing and llm is None:
        raise InputError(f"proposer(s) {', '.join(needing)} need an LLM; configure one or leave them out")


__all__ = ["LLMSystem", "LLMWordings", "describe_diagnostics", "revision_messages", "system_json", "training_diagnostics",
           "wording_messages"]

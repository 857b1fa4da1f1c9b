"""Suggestions: each finding of an inspection as one concrete thing to change, in words.

The static and data reports compute figures; this module turns them into
sentences (and ranks their kinds, most harmful first), so the wording lives in
one place and the reports stay numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

SUGGESTION_ORDER = ("identical-rules", "inseparable", "weak-question", "attractor", "near-duplicate", "rule-disagreement",
                    "confusion", "no-information", "unused-option", "redundant", "fragile")
"""Kinds of suggestion, most harmful first: the order a report lists them in."""


@dataclass(frozen=True)
class Suggestion:
    """One concrete thing to change, in words, with the classes and groups it concerns."""

    kind: str
    text: str
    classes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "classes": list(self.classes), "groups": list(self.groups)}


# What the suggestions read of the reports, as protocols: the reports call this module,
# so it names their shape instead of importing them (no import cycle).
class _GroupFigures(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def entropy_bits(self) -> float: ...


class StaticFigures(Protocol):
    """The figures of a :class:`~cotembed.inspection._static.StaticReport` the suggestions use."""

    @property
    def identical(self) -> Sequence[Sequence[str]]: ...
    @property
    def inseparable(self) -> Sequence[tuple[str, str]]: ...
    @property
    def fragile_by_group(self) -> Mapping[str, int]: ...
    @property
    def unused_options(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def groups(self) -> Sequence[_GroupFigures]: ...
    @property
    def redundant_pairs(self) -> Sequence[Mapping[str, Any]]: ...


class _QuestionFigures(Protocol):
    @property
    def group(self) -> str: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def chance(self) -> float: ...
    @property
    def weak(self) -> bool: ...
    @property
    def at_chance(self) -> bool: ...


class DataFigures(Protocol):
    """The figures of a :class:`~cotembed.inspection._data.DataReport` the suggestions use."""

    @property
    def questions(self) -> Sequence[_QuestionFigures]: ...
    @property
    def answer_shares(self) -> Mapping[str, Sequence[Mapping[str, Any]]]: ...
    @property
    def attractors(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def rule_disagreements(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def confusions(self) -> Sequence[Mapping[str, Any]]: ...


def quoted(items: Sequence[str]) -> str:
    return " or ".join(repr(x) for x in items)


def and_list(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def static_suggestions(r: StaticFigures) -> list[Suggestion]:
    out: list[Suggestion] = []
    for tie in r.identical:
        out.append(Suggestion(
            "identical-rules",
            f"add a question that separates {and_list(tie)} (they differ in no group; cot can only guess among them, "
            f"hybrid only by their names)",
            tuple(tie)))
    for a, b in r.inseparable[:20]:
        out.append(Suggestion("inseparable", f"{a} and {b} share an option in every group, so no answer tells them apart: "
                                             "narrow one of their rules or add a question that separates them", (a, b)))
    for group, n in sorted(r.fragile_by_group.items(), key=lambda kv: -kv[1]):
        out.append(Suggestion("fragile", f"{n} pair(s) of classes differ only in {group!r}: one wrong answer there confuses them; "
                                         f"add a second question that separates them (see fragile_pairs)", groups=(group,)))
    for group, options in r.unused_options.items():
        out.append(Suggestion("unused-option", f"no rule uses {quoted(options)} in {group!r}: give it to the classes it describes "
                                               "or remove it (it only takes probability from the others)", groups=(group,)))
    for info in r.groups:
        if info.entropy_bits == 0:
            out.append(Suggestion("no-information", f"every class gives the same answer to {info.name!r}: it cannot help; "
                                                    "drop it or split its option", groups=(info.name,)))
    if r.redundant_pairs:
        pairs = ", ".join(f"{p['a']!r}/{p['b']!r} ({p['nmi']:.2f})" for p in r.redundant_pairs)
        groups = tuple(dict.fromkeys(g for p in r.redundant_pairs for g in (p["a"], p["b"])))
        out.append(Suggestion("redundant", f"these groups split the classes almost the same way (normalised mutual information): {pairs}; "
                                           "together they tell little more than one of them (they only guard against a wrong answer): "
                                           "replace one of each pair with a question about something else", groups=groups))
    return out


def data_suggestions(r: DataFigures) -> list[Suggestion]:
    out: list[Suggestion] = []
    for q in r.questions:
        if not (q.weak or q.at_chance):
            continue
        level = "no better than chance" if q.at_chance else "barely above chance"
        never = [o["option"] for o in r.answer_shares[q.group] if o["answered"] == 0 and o["expected"] > 0]
        extra = f"; the model never answers {and_list([repr(o) for o in never])}" if never else ""
        out.append(Suggestion("weak-question", f"group {q.group!r} answered at {100 * q.accuracy:.1f}% vs chance {100 * q.chance:.1f}% "
                                               f"({level}{extra}): reword its options or drop it", groups=(q.group,)))
    for a in r.attractors:
        drawn = a["drawn_from"]
        listed = ", ".join(drawn[:8]) + (f" and {len(drawn) - 8} more" if len(drawn) > 8 else "")
        out.append(Suggestion("attractor", f"the model answers {a['group']!r} with {a['option']!r} for {100 * a['answered']:.0f}% of inputs "
                                           f"(the rules expect {100 * a['expected']:.0f}%), including a quarter or more of the inputs of "
                                           f"{len(drawn)} classes whose rules say otherwise ({listed}): it draws answers from the other options; "
                                           "reword it or the options it takes answers from", tuple(drawn), (a["group"],)))
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for d in r.rule_disagreements:
        if not d["attractor"]:
            by_group.setdefault(d["group"], []).append(d)
    for group, items in by_group.items():
        listed = "; ".join(f"{d['class']} (rule {quoted(d['rule'])}, answered {d['answer']!r} on {100 * d['share']:.0f}%)" for d in items[:8])
        more = f" and {len(items) - 8} more" if len(items) > 8 else ""
        out.append(Suggestion("rule-disagreement", f"in {group!r} the model's answers disagree with {len(items)} rule(s): {listed}{more}: "
                                                   "check those rules (cotembed induce sets them from labelled examples)",
                              tuple(d["class"] for d in items), (group,)))
    for c in r.confusions:
        out.append(Suggestion("confusion", f"{c['true']} -> {c['predicted']} ({c['count']} inputs, {100 * c['share_of_errors']:.0f}% of errors): "
                                           f"{c['suggestion']}", (c["true"], c["predicted"]),
                              tuple(c.get("separating_groups", ()))))
    return out

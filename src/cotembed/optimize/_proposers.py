"""Proposers: where candidate edits come from. One registry entry per proposer.

Each round the search asks every chosen proposer for edits of the current system
(at most ``ctx.limit`` each), then scores the union. Offline proposers need only the
cached embeddings and, for rewording, a :class:`~cotembed.optimize.vocabulary.Vocabulary`;
LLM proposers (``llm-wordings``, ``llm-system``, in :mod:`cotembed.optimize._llm_proposers`)
also need a chat model and run only when one is configured.

=================  ==============================================================
``reinduce``       refit every rule (and temperature, weights) from the training rows
                   with :class:`~cotembed.authoring.induce.RuleInducer`
``reword``         give an option another wording from the vocabulary; rules kept
``reword-refit``   reword, and refit that group's rules from the model's answers
``drop-group``     remove one question
``merge-groups``   ask two questions as one softmax
``prune``          remove an unused option, or fold an option into its nearest neighbour
``reweight``       halve or double one group's weight
``temperature``    scale the softmax temperature
=================  ==============================================================
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, TypeVar

import numpy as np

from cotembed.errors import InputError
from cotembed.optimize._edits import (
    Compound,
    DropGroup,
    Edit,
    MergeGroups,
    MergeOptions,
    RemoveOption,
    RewordOption,
    SetGroupWeight,
    SetRules,
    SetTemperature,
)
from cotembed.optimize.vocabulary import Vocabulary
from cotembed.scoring import l2_normalize
from cotembed.system import System

if TYPE_CHECKING:
    from cotembed.authoring._llm import ChatModel
    from cotembed.evaluation._objective import Objective, Score

T = TypeVar("T")


@dataclass
class LLMBudget:
    """Requests an LLM proposer may still make in this run (shared by every LLM proposer)."""

    remaining: int
    every: int = 1
    used: int = 0
    disabled: str = ""
    """Why LLM proposals stopped early (the service stayed unavailable), or empty."""

    def take(self) -> bool:
        if self.disabled or self.remaining <= 0:
            return False
        self.remaining -= 1
        self.used += 1
        return True


@dataclass
class ProposalContext:
    """What a proposer may read: the current system and its score, the data, the vocabulary, the seeded RNG."""

    system: System
    score: "Score"
    objective: "Objective"
    rng: np.random.Generator
    round: int
    limit: int
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    llm: "ChatModel | None" = None
    llm_budget: LLMBudget = field(default_factory=lambda: LLMBudget(0))
    modality: str = "image"
    events: list[dict[str, Any]] = field(default_factory=list)
    """Notes for the history (an LLM answer that was not a valid system, a failed request)."""
    log: Callable[[str], None] = lambda _line: None

    def sample(self, items: list[T]) -> list[T]:
        """At most ``limit`` of ``items``, drawn with the run's RNG (all of them, in order, when they fit)."""
        if len(items) <= self.limit:
            return items
        chosen = self.rng.choice(len(items), size=self.limit, replace=False)
        return [items[i] for i in sorted(chosen)]


class Proposer:
    """Base of every proposer: ``propose(ctx) -> [Edit]``. Instances live for one run (they may remember)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_llm: ClassVar[bool] = False

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        raise NotImplementedError


PROPOSERS: dict[str, "str | type[Proposer]"] = {
    "reinduce": "cotembed.optimize._proposers:Reinduce",
    "reword": "cotembed.optimize._proposers:Reword",
    "reword-refit": "cotembed.optimize._proposers:RewordRefit",
    "reword-group": "cotembed.optimize._proposers:RewordGroup",
    "drop-group": "cotembed.optimize._proposers:DropGroupProposer",
    "merge-groups": "cotembed.optimize._proposers:MergeGroupsProposer",
    "prune": "cotembed.optimize._proposers:Prune",
    "reweight": "cotembed.optimize._proposers:Reweight",
    "temperature": "cotembed.optimize._proposers:Temperature",
    "llm-wordings": "cotembed.optimize._llm_proposers:LLMWordings",
    "llm-system": "cotembed.optimize._llm_proposers:LLMSystem",
}
"""Registered proposers: name -> ``"module:Class"`` (imported on first use), or a class defined where no
import string reaches it (a test's local class). Offline ones first: the default order of a search."""


def register_proposer(name: str, target: "str | type[Proposer]") -> None:
    """Add a proposer: ``target`` is ``"module:Class"`` (nothing is imported now) or the class."""
    if not name or name in PROPOSERS:
        raise ValueError(f"proposer name {name!r} is empty or already registered")
    if isinstance(target, type) and "<locals>" not in target.__qualname__:
        target = f"{target.__module__}:{target.__qualname__}"
    PROPOSERS[name] = target


@contextmanager
def registered_proposer(name: str, target: "str | type[Proposer]") -> Iterator[None]:
    """:func:`register_proposer` for the duration of a ``with`` block (tests, experiments)."""
    register_proposer(name, target)
    try:
        yield
    finally:
        PROPOSERS.pop(name, None)


def proposer_class(name: str) -> type[Proposer]:
    target = PROPOSERS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cls: type[Proposer] = getattr(import_module(module), attr)
        return cls
    return target


def proposer_names(llm: bool | None = None) -> tuple[str, ...]:
    """Registered names; ``llm=False`` only the offline ones, ``llm=True`` only those that need an LLM."""
    return tuple(n for n in PROPOSERS if llm is None or proposer_class(n).needs_llm == llm)


def parse_proposers(text: str | None, llm: bool) -> tuple[str, ...]:
    """``"reword,reinduce"`` -> names (default: every offline proposer, plus the LLM ones when ``llm``)."""
    if text is None:
        return proposer_names(False) + (proposer_names(True) if llm else ())
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in PROPOSERS]
    if unknown or not names:
        raise InputError(f"unknown proposer(s) {', '.join(map(repr, unknown)) or '(none given)'}: choose from {', '.join(PROPOSERS)}")
    needing = [n for n in names if proposer_class(n).needs_llm]
    if needing and not llm:
        raise InputError(f"proposer(s) {', '.join(needing)} need an LLM: pass --llm-model NAME (or --llm with $COTEMBED_LLM_MODEL set)")
    return names


# ------------------------------------------------------------------ rules
def refit_group(ctx: ProposalContext, system: System, group: str) -> SetRules | None:
    """Each class's option in ``group`` set to the one the model answers most on its training rows."""
    evidence = ctx.objective.class_evidence(system, group)
    best = evidence.argmax(axis=1)
    options = system.groups[system.group_names.index(group)].options
    changes = tuple((c, group, (options[int(j)],)) for c, j in zip(system.class_names, best)
                    if tuple(system.rules[c][group]) != (int(j),))
    return SetRules(changes, note=f"refit {group}") if changes else None


class Reinduce(Proposer):
    name = "reinduce"
    description = "refit every rule (and temperature and group weights) from the training rows"
    VARIANTS: ClassVar[tuple[tuple[str, dict[str, Any]], ...]] = (
        ("re-induce rules", {"calibrate": False}),
        ("re-induce rules + calibrate", {}),
    )

    def __init__(self) -> None:
        self._done: set[str] = set()

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        from cotembed.authoring.induce import RuleInducer

        system = ctx.system
        if system.fingerprint in self._done:
            return []
        self._done.add(system.fingerprint)
        temperature = ctx.objective.config(system).temperature
        out: list[Edit] = []
        for note, params in self.VARIANTS:
            try:
                inducer = RuleInducer(system, ctx.objective.embed, temperature=temperature, hybrid_weights=(0.0,), **params)
                inducer.fit(ctx.objective.train)
            except InputError as exc:
                ctx.events.append({"proposer": self.name, "error": str(exc)})
                return out
            edits: list[Edit] = []
            rules = tuple((c["class"], c["group"], tuple(c["after"])) for c in inducer.rule_changes_)
            if rules:
                edits.append(SetRules(rules, note=f"{len(rules)} rule(s)"))
            for group in system.groups:
                weight = inducer.group_weights_[group.name]
                if weight > 0 and weight != group.weight:
                    edits.append(SetGroupWeight(group.name, weight))
            edits += [DropGroup(g) for g in inducer.dropped_groups_ if len(inducer.dropped_groups_) < len(system.groups)]
            if params.get("calibrate", True) and not math.isclose(inducer.temperature_, temperature, rel_tol=1e-9):
                edits.append(SetTemperature(round(inducer.temperature_, 6)))
            if edits:
                out.append(Compound(tuple(edits), note=note))
        return out


# ---------------------------------------------------------------- wording
def _reword_targets(ctx: ProposalContext, free: bool) -> list[tuple[str, str, str]]:
    """(group, option, wording) triples the vocabulary offers for the current system."""
    out = []
    for group in ctx.system.groups:
        taken = set(group.options)
        for option in group.options:
            words = list(ctx.vocabulary.alternatives(group.name, option))
            if free:
                words += ctx.vocabulary.free_words(group.name)
            out += [(group.name, option, w) for w in dict.fromkeys(words) if w not in taken]
    return out


def reword_with_refit(ctx: ProposalContext, triples: list[tuple[str, str, str]]) -> list[Edit]:
    """Each reword followed by the refit of its group's rules (new wordings embedded in one batch)."""
    system = ctx.system
    groups = {g.name: g for g in system.groups}
    ctx.objective.embed([groups[g].prompt.replace("{}", w, 1) for g, _, w in triples])
    out: list[Edit] = []
    for g, option, word in triples:
        reword = RewordOption(g, option, word)
        refit = refit_group(ctx, reword.apply(system), g)
        out.append(Compound((reword, refit), note="reword + refit") if refit is not None else reword)
    return out


class Reword(Proposer):
    name = "reword"
    description = "another wording for one option, from the vocabulary (rules kept)"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        return ctx.sample([RewordOption(g, o, w) for g, o, w in _reword_targets(ctx, free=False)])


class RewordRefit(Proposer):
    name = "reword-refit"
    description = "another wording for one option (the vocabulary's free words too), then that group's rules refitted"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        triples = ctx.sample(_reword_targets(ctx, free=True))
        return reword_with_refit(ctx, triples) if triples else []


class RewordGroup(Proposer):
    name = "reword-group"
    description = "every option of one group reworded at once (each with its j-th alternative), with and without a refit"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        out: list[Edit] = []
        system = ctx.system
        for group in system.groups:
            alternatives = {o: ctx.vocabulary.alternatives(group.name, o) for o in group.options}
            for j in range(max((len(a) for a in alternatives.values()), default=0)):
                taken = set(group.options)
                rewords = []
                for option, words in alternatives.items():
                    if j < len(words) and words[j] not in taken:
                        taken.add(words[j])
                        rewords.append(RewordOption(group.name, option, words[j]))
                if len(rewords) < 2:  # one reword is the reword proposers' job
                    continue
                plain = Compound(tuple(rewords), note=f"reword {group.name} (alternative {j + 1})")
                out.append(plain)
                refit = refit_group(ctx, plain.apply(system), group.name)
                if refit is not None:
                    out.append(Compound((*rewords, refit), note=f"reword {group.name} (alternative {j + 1}) + refit"))
        return ctx.sample(out)


# ---------------------------------------------------------------- structure
class DropGroupProposer(Proposer):
    name = "drop-group"
    description = "remove one question"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        groups = ctx.system.groups
        return [DropGroup(g.name) for g in groups] if len(groups) > 1 else []


class MergeGroupsProposer(Proposer):
    name = "merge-groups"
    description = "ask two questions as one (one softmax over both groups' sentences)"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        names = ctx.system.group_names
        return ctx.sample([MergeGroups(a, b) for a, b in itertools.combinations(names, 2)])


class Prune(Proposer):
    name = "prune"
    description = "remove an option no rule uses, or fold an option into the one whose prompt is nearest"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        system = ctx.system
        out: list[Edit] = []
        for group in system.groups:
            used = {i for rule in system.rules.values() for i in rule[group.name]}
            if len(group.options) < 3:
                continue
            vectors = l2_normalize(np.asarray(ctx.objective.embed(group.prompts()), dtype=np.float32))
            cos = vectors @ vectors.T
            np.fill_diagonal(cos, -np.inf)
            for i, option in enumerate(group.options):
                if i not in used:
                    out.append(RemoveOption(group.name, option))
                else:
                    out.append(MergeOptions(group.name, keep=group.options[int(cos[i].argmax())], drop=option))
        return ctx.sample(out)


WEIGHT_FACTORS = (0.5, 2.0)
WEIGHT_RANGE = (1 / 16, 16.0)
TEMPERATURE_FACTORS = (0.5, 0.7, 1.4, 2.0)
TEMPERATURE_RANGE = (1e-2, 1e4)


class Reweight(Proposer):
    name = "reweight"
    description = "halve or double one group's weight"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        low, high = WEIGHT_RANGE
        return [SetGroupWeight(g.name, round(g.weight * f, 6)) for g in ctx.system.groups for f in WEIGHT_FACTORS
                if low <= g.weight * f <= high and len(ctx.system.groups) > 1]


class Temperature(Proposer):
    name = "temperature"
    description = "scale the softmax temperature"

    def propose(self, ctx: ProposalContext) -> list[Edit]:
        low, high = TEMPERATURE_RANGE
        current = ctx.objective.config(ctx.system).temperature
        return [SetTemperature(round(current * f, 6)) for f in TEMPERATURE_FACTORS if low <= current * f <= high]


__all__ = [
    "LLMBudget",
    "PROPOSERS",
    "Proposer",
    "ProposalContext",
    "parse_proposers",
    "proposer_names",
    "proposer_class",
    "refit_group",
    "register_proposer",
    "registered_proposer",
    "reword_with_refit",
]

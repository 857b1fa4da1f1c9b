"""Compilation: a system's groups and rules as the arrays scoring multiplies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cotembed.system._parts import Group, row_of


@dataclass(frozen=True)
class CompiledSystem:
    """A system as arrays, so a batch scores with two matrix products.

    ``prompts`` holds the Q filled-in option prompts, grouped contiguously;
    group ``g`` owns ``prompts[offsets[g]:offsets[g + 1]]``. ``rule_matrix``
    is Q x N: entry (q, n) is the group weight when class n accepts option q.
    The arrays are read-only: a system compiles once and shares the result.
    ``templates`` are the system's own prompt-ensembling templates (empty when
    it has none), so scoring methods need no System object.
    """

    prompts: tuple[str, ...]
    offsets: np.ndarray
    rule_matrix: np.ndarray
    class_names: tuple[str, ...]
    group_names: tuple[str, ...]
    baseline_prompts: tuple[str, ...]
    templates: tuple[str, ...] = ()

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def compile_system(groups: tuple[Group, ...], rules: Mapping[str, Mapping[str, tuple[int, ...]]], baseline_prompt: str,
                   templates: tuple[str, ...]) -> CompiledSystem:
    """The arrays of a valid system (its parts as :class:`~cotembed.system.System` holds them)."""
    prompts: list[str] = []
    offsets = [0]
    for g in groups:
        prompts.extend(g.prompts())
        offsets.append(len(prompts))
    classes = tuple(rules)
    q_index: list[int] = []
    n_index: list[int] = []
    starts = offsets[:-1]
    for n, rule in enumerate(rules.values()):
        for start, chosen in zip(starts, row_of(rule)):
            for i in chosen:
                q_index.append(start + i)
                n_index.append(n)
    q_weight = np.repeat(np.asarray([g.weight for g in groups], dtype=np.float32), np.diff(offsets))
    rule_matrix = np.zeros((len(prompts), len(classes)), dtype=np.float32)
    q = np.asarray(q_index, dtype=np.int64)
    rule_matrix[q, np.asarray(n_index, dtype=np.int64)] = q_weight[q]
    offsets_array = np.asarray(offsets, dtype=np.int64)
    rule_matrix.setflags(write=False)
    offsets_array.setflags(write=False)
    return CompiledSystem(
        prompts=tuple(prompts),
        offsets=offsets_array,
        rule_matrix=rule_matrix,
        class_names=classes,
        group_names=tuple(g.name for g in groups),
        baseline_prompts=tuple(baseline_prompt.replace("{}", c, 1) for c in classes),
        templates=templates,
    )

"""The System's edits: each returns a new, validated system and re-checks only what it touches.

Kept apart from :mod:`~cotembed.system._model` (loading, saving, identity) as a mixin that
:class:`~cotembed.system.System` inherits; every edit ends in the system's ``_derive``,
which shares the unchanged parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Self, Sequence

from cotembed.errors import InputError, SystemValidationError
from cotembed.system._parts import (
    Group,
    OptionRef,
    Row,
    bounded,
    check_template,
    listing,
    positive_number,
    row_of,
    shown,
    trusted_group,
)
from cotembed.system._validate import build_templates, edit_options


class SystemEdits:
    """The ``with_*`` / ``*_option`` edits of :class:`~cotembed.system.System`."""

    if TYPE_CHECKING:
        groups: tuple[Group, ...]
        rules: Mapping[str, Mapping[str, tuple[int, ...]]]
        name: str
        _cache: dict[str, Any]

        def _derive(self, *, groups: tuple[Group, ...] | None = None, rows: Mapping[str, Row] | None = None,
                    regroup: bool = False, **fields: Any) -> Self: ...

    def replace_option(self, group: str, option: OptionRef, new_text: str) -> Self:
        """Change one option's text; rules keep pointing at the same index.

        Parameters
        ----------
        group : str
            The group's name.
        option : int or str
            The option, by index or text.
        new_text : str
            Its new text.
        """
        gi, g = self._group_at(group, "replace_option")
        i = self._option_at(g, option, "replace_option")
        none = new_text if g.none_index == i else g.none_option  # the "none of these" option keeps its role
        new_group = self._changed_group(g, "replace_option", options=g.options[:i] + (new_text,) + g.options[i + 1:],
                                        none_option=none)
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:])

    def add_option(self, group: str, text: str) -> Self:
        """Append an option to a group; no class accepts it until a rule says so.

        Parameters
        ----------
        group : str
            The group's name.
        text : str
            The new option's text.
        """
        gi, g = self._group_at(group, "add_option")
        new_group = self._changed_group(g, "add_option", options=g.options + (text,))
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:])

    def remove_option(self, group: str, option: OptionRef) -> Self:
        """Drop an option; rules are re-indexed, and a class left with no option in the group is an error.

        Parameters
        ----------
        group : str
            The group's name.
        option : int or str
            The option, by index or text.
        """
        gi, g = self._group_at(group, "remove_option")
        removed = self._option_at(g, option, "remove_option")
        none = None if g.none_index == removed else g.none_option
        new_group = self._changed_group(g, "remove_option", options=g.options[:removed] + g.options[removed + 1:],
                                        none_option=none)
        remap: dict[tuple[int, ...], tuple[int, ...]] = {}
        orphans: list[str] = []
        rows: dict[str, Row] = {}
        for cls_name, rule in self.rules.items():
            row = row_of(rule)
            chosen = row[gi]
            if chosen not in remap:
                remap[chosen] = tuple(i - (i > removed) for i in chosen if i != removed)
            new = remap[chosen]
            if not new:
                orphans.append(f"rules.{cls_name}.{g.name}: {shown(g.options[removed])} is the class's only option in this group; "
                               "give it another option first")
            elif new != chosen:
                rows[cls_name] = row[:gi] + (new,) + row[gi + 1:]
        if orphans:
            raise SystemValidationError(self._edit_source("remove_option"), orphans)
        return self._derive(groups=self.groups[:gi] + (new_group,) + self.groups[gi + 1:], rows=rows)

    def with_rule(self, class_name: str, group: str, options: OptionRef | Sequence[OptionRef]) -> Self:
        """Set which option(s) one class accepts in one group.

        Parameters
        ----------
        class_name : str
            The class.
        group : str
            The group's name.
        options : int, str or a list of them
            The option(s), by index or text.
        """
        return self._set_rules({class_name: {group: options}}, "with_rule")

    def with_rules(self, rules: Mapping[str, Mapping[str, OptionRef | Sequence[OptionRef]]]) -> Self:
        """Set options for several classes and groups at once; groups not named keep their options.

        Parameters
        ----------
        rules : Mapping[str, Mapping[str, option(s)]]
            class -> group -> option(s), by index or text.
        """
        return self._set_rules(rules, "with_rules")

    def _set_rules(self, rules: Mapping[str, Mapping[str, Any]], edit: str) -> Self:
        index = self._group_index()
        unknown: list[str] = []
        problems: list[str] = []
        rows: dict[str, Row] = {}
        for cls_name, changes in rules.items():
            rule = self.rules.get(cls_name)
            if rule is None:
                unknown.append(f"unknown class {shown(cls_name)}")
                continue
            if not isinstance(changes, Mapping):
                problems.append(f"rules.{cls_name}: must map each group to an option")
                continue
            row = list(row_of(rule))
            for gname, value in changes.items():
                gi = index.get(gname)
                if gi is None:
                    unknown.append(f"unknown group {shown(gname)} (groups are: {listing(index)})")
                    continue
                chosen = edit_options(self.groups[gi], value, f"rules.{cls_name}.{gname}", unknown, problems)
                if chosen is not None:
                    row[gi] = chosen
            rows[cls_name] = tuple(row)
        self._raise_edit_problems(edit, unknown, problems)
        return self._derive(rows=rows)

    def with_group_weights(self, weights: Mapping[str, float]) -> Self:
        """Change the weight of one or more groups (how much each answer counts).

        Parameters
        ----------
        weights : Mapping[str, float]
            group name -> positive weight.
        """
        groups = list(self.groups)
        index = self._group_index()
        unknown = [f"unknown group {shown(name)} (groups are: {listing(index)})" for name in weights if name not in index]
        self._raise_edit_problems("with_group_weights", unknown, [])
        problems: list[str] = []
        for name, weight in weights.items():
            gi = index[name]
            value = positive_number(weight, f"groups.{name}.weight", problems)
            if value is not None:
                groups[gi] = trusted_group(groups[gi].name, groups[gi].prompt, groups[gi].options, value, groups[gi].description,
                                           groups[gi].none_option)
        self._raise_edit_problems("with_group_weights", [], problems)
        return self._derive(groups=tuple(groups))

    def with_temperature(self, temperature: float | None) -> Self:
        """Set the softmax temperature stored in the system (None: use the model's logit scale).

        Parameters
        ----------
        temperature : float or None
            A positive temperature, or None.
        """
        if temperature is not None:
            problems: list[str] = []
            temperature = positive_number(temperature, "temperature", problems)
            self._raise_edit_problems("with_temperature", [], problems)
        return self._derive(temperature=temperature)

    def with_baseline_prompt(self, prompt: str) -> Self:
        """Set the template the baseline method fills with each class name.

        Parameters
        ----------
        prompt : str
            A template with one ``{}``.
        """
        problems: list[str] = []
        check_template(prompt, "baseline_prompt", problems)
        self._raise_edit_problems("with_baseline_prompt", [], problems)
        return self._derive(baseline_prompt=prompt)

    def with_templates(self, templates: Sequence[str] | None) -> Self:
        """Set the ``ensemble`` method's templates (None: back to the method's defaults).

        Parameters
        ----------
        templates : sequence of str or None
            Templates with one ``{}`` each, or None.
        """
        problems: list[str] = []
        checked = build_templates(templates, problems)
        self._raise_edit_problems("with_templates", [], problems)
        return self._derive(templates=checked)

    def without_group(self, name: str) -> Self:
        """Drop a group and every rule's entry for it.

        Parameters
        ----------
        name : str
            The group's name.
        """
        gi, _ = self._group_at(name, "without_group")
        if len(self.groups) == 1:
            raise SystemValidationError(self._edit_source("without_group"), [f"groups.{name}: a system needs at least one group"])
        groups = self.groups[:gi] + self.groups[gi + 1:]
        rows = {cls_name: row_of(rule)[:gi] + row_of(rule)[gi + 1:] for cls_name, rule in self.rules.items()}
        return self._derive(groups=groups, rows=rows, regroup=True)

    def with_group(
        self,
        group: Group,
        rules_for_group: Mapping[str, OptionRef | Sequence[OptionRef]],
        position: int | None = None,
    ) -> Self:
        """Add a group at ``position`` (default: last), with every class's option(s) in it.

        Parameters
        ----------
        group : Group
            The new group.
        rules_for_group : Mapping[str, option(s)]
            Every class -> its option(s) in the new group.
        position : int or None, default None
            Index among the groups; None appends.
        """
        if not isinstance(group, Group):
            raise InputError(f"with_group: expected a Group, got {type(group).__name__}")
        index = self._group_index()
        source = self._edit_source("with_group")
        if group.name in index:
            raise SystemValidationError(source, [f"groups.{group.name}: the system already has a group with this name"])
        at = len(self.groups) if position is None else position
        if isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= len(self.groups):
            raise InputError(f"with_group: position must be between 0 and {len(self.groups)}, got {shown(position)}")
        unknown = [f"unknown class {shown(c)}" for c in rules_for_group if c not in self.rules]
        problems: list[str] = []
        chosen: dict[str, tuple[int, ...]] = {}
        for cls_name in self.rules:
            if cls_name not in rules_for_group:
                problems.append(f"rules.{cls_name}: missing group {shown(group.name)}")
                continue
            value = edit_options(group, rules_for_group[cls_name], f"rules.{cls_name}.{group.name}", unknown, problems)
            if value is not None:
                chosen[cls_name] = value
        self._raise_edit_problems("with_group", unknown, problems)
        groups = self.groups[:at] + (group,) + self.groups[at:]
        rows = {cls_name: row_of(rule)[:at] + (chosen[cls_name],) + row_of(rule)[at:] for cls_name, rule in self.rules.items()}
        return self._derive(groups=groups, rows=rows, regroup=True)

    # ------------------------------------------------------------ edit helpers
    def _group_index(self) -> Mapping[str, int]:
        index = self._cache.get("group_index")
        if index is None:
            index = self._cache["group_index"] = {g.name: i for i, g in enumerate(self.groups)}
        return index

    def _group_at(self, name: str, edit: str) -> tuple[int, Group]:
        index = self._group_index()
        gi = index.get(name) if isinstance(name, str) else None
        if gi is None:
            raise InputError(f"{edit} on {self._label()}: unknown group {shown(name)} (groups are: {listing(index)})")
        return gi, self.groups[gi]

    def _option_at(self, group: Group, option: OptionRef, edit: str) -> int:
        index = group._find(option)
        if index is None:
            raise InputError(f"{edit} on {self._label()}: group {shown(group.name)}: {group._unknown(option)}")
        return index

    def _changed_group(self, group: Group, edit: str, **changes: Any) -> Group:
        try:
            return group._with(**changes)
        except SystemValidationError as exc:
            raise SystemValidationError(self._edit_source(edit), exc.problems) from None

    def _label(self) -> str:
        return repr(self.name) if self.name else "<unnamed system>"

    def _edit_source(self, edit: str) -> str:
        return f"{self._label()} after {edit}"

    def _raise_edit_problems(self, edit: str, unknown: list[str], problems: list[str]) -> None:
        if unknown:
            raise InputError(f"{edit} on {self._label()}: " + "; ".join(unknown))
        if problems:
            raise SystemValidationError(self._edit_source(edit), bounded(problems))


__all__ = ["SystemEdits"]

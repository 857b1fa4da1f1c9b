"""What drafting a system with an LLM shares between ``cotembed build`` and the optimiser's
LLM proposers: the system prompt, reading a system out of an answer, reviewing a draft,
and the repair message that sends its problems back.

* :func:`system_prompt` tells the LLM what a system is (per input modality);
* :func:`extract_system` finds the system in an answer (JSON, a Python dict such as the
  article's ``pokemon_system = {...}``, YAML; in a code fence or in prose);
* :func:`refused_answer` stands for an unreadable answer when it goes back to the LLM;
* :func:`review_draft` validates a draft against the requested classes and lists the static findings;
* :func:`repair_message` writes every problem and finding back for the next round.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from cotembed.errors import DraftParseError
from cotembed.system import GROUP_KEYS, RULE_KEYS, System, SystemValidationError, parse_system_text

MAX_ANSWER_CHARS = 4_000_000
"""An answer longer than this is not read (a system for 10,000 classes is far shorter)."""


# -------------------------------------------------------------------- prompting
@dataclass(frozen=True)
class Modality:
    """How the prompts speak of the inputs: the model, what it sees, what attributes to use."""

    model: str
    input: str
    features: str
    example_prompt: str


MODALITIES: dict[str, Modality] = {
    "image": Modality(
        model="an image-text embedding model (such as CLIP)",
        input="an image",
        features="visual features: what can be seen in a picture (colours, shapes, body parts, textures, the background scene)",
        example_prompt="This animal's body is mainly {} in color.",
    ),
    "text": Modality(
        model="a text embedding model",
        input="a text",
        features="features of the text: its topic, the things it mentions, its tone and its form",
        example_prompt="This text is mainly about {}.",
    ),
}


def system_prompt(modality: str = "image") -> str:
    m = MODALITIES[modality]
    return (
        f"You design classification systems for {m.model} that stays frozen. The model cannot reliably say which "
        f"class {m.input} shows, but it can compare {m.input} with short sentences. A system splits the decision into "
        "attribute questions: each group has a prompt template with exactly one {} and a list of short options that "
        "fill it; each class has a rule naming the option (or options) it matches in every group. The input is "
        "compared with every filled-in prompt, each group's similarities become probabilities, and a class scores "
        "the sum over the groups of the probability of its options. Good systems ask about features the model can "
        "see, keep options short and concrete, and give every class a different combination of options. "
        "You answer with one JSON object and nothing else."
    )


def repair_message(problems: Sequence[str], findings: Sequence[str] = ()) -> str:
    """What goes back to the LLM after a draft: every problem (the draft is invalid) and every finding."""
    lines: list[str] = []
    if problems:
        lines += [f"Your system has {len(problems)} problem(s); it is invalid until every one is fixed:"]
        lines += [f"- {p}" for p in problems]
    if findings:
        lines += ["", "Weaknesses to fix where you can:"] if problems else ["Your system is valid, but automatic checks found weaknesses to fix where you can:"]
        lines += [f"- {f}" for f in findings]
    lines += ["", "Keep everything that is not mentioned unchanged. Answer with the whole corrected system as one JSON object only."]
    return "\n".join(lines)


# ---------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def extract_system(text: str) -> dict[str, Any]:
    """The system in an LLM answer, as a dict.

    Tried in order: each fenced code block, the whole answer, then each balanced ``{...}``
    in the prose. Each is read as JSON, then as a Python literal (``# comments``, a leading
    ``name =`` as in the article's ``pokemon_system = {...}``, trailing commas, single
    quotes; ``//`` comments are dropped), then as YAML for fenced YAML. The first mapping
    with groups or rules wins (also when wrapped, as in ``{"system": {...}}``). Duplicate keys
    are reported, never silently merged.
    """
    if len(text) > MAX_ANSWER_CHARS:
        raise DraftParseError(f"the answer is {len(text):,} characters long, more than the {MAX_ANSWER_CHARS:,} read")
    first_error = ""
    fallback: dict[str, Any] | None = None
    for candidate, yaml_ok in _candidates(text):
        try:
            data = _load_mapping(candidate, yaml_ok)
        except DraftParseError as exc:
            first_error = first_error or exc.reason
            continue
        if data is None:
            continue
        if len(data) == 1 and isinstance(inner := next(iter(data.values())), dict) and _looks_like_system(inner):
            data = inner  # {"system": {...}} or {"pokemon_system": {...}}
        if _looks_like_system(data):
            return data
        fallback = fallback or data
    if fallback is not None:
        return fallback
    if "{" not in text:
        raise DraftParseError("the answer contains no system (no JSON object): " + _quote(text))
    raise DraftParseError(first_error or "no complete JSON object found in the answer")


ECHO_LIMIT = 2_000
"""A refused answer longer than this goes back to the LLM, and into the transcript, as a summary."""


def refused_answer(text: str, reason: str, limit: int = ECHO_LIMIT) -> str:
    """What stands for an answer that held no readable system: the answer itself when short,
    else its length, its first and last characters and why it was refused, so a runaway
    answer (megabytes of text) is not sent back on every repair round."""
    if len(text) <= limit:
        return text
    edge = limit // 4
    return (f"[An answer of {len(text):,} characters, not repeated here. It began {text[:edge]!r} and ended "
            f"{text[-edge:]!r}. It was refused: {reason}]")


def _looks_like_system(data: Mapping[str, Any]) -> bool:
    return any(k in data for k in (*GROUP_KEYS, *RULE_KEYS))


def _quote(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


def _candidates(text: str) -> Iterator[tuple[str, bool]]:
    for match in _FENCE.finditer(text):
        yield match.group(2), match.group(1).lower() in ("yaml", "yml")
    yield text, False
    for start, end in _brace_spans(text):
        yield text[start:end], False


def _load_mapping(text: str, yaml_ok: bool) -> dict[str, Any] | None:
    """A mapping read from ``text``; None when it is some other value; DraftParseError when unreadable."""
    stripped = text.strip()
    if not stripped:
        return None
    errors = []
    if stripped.startswith("{"):
        try:
            data = parse_system_text(stripped, "answer", json_format=True)
        except SystemValidationError as exc:
            if any(p.startswith("duplicate key") for p in exc.problems):
                raise DraftParseError("; ".join(exc.problems) + " (each class, group and field may appear once)") from None
            errors.append(f"not JSON: {exc.problems[0]}")
        else:
            return data if isinstance(data, dict) else None
    body = _ASSIGNMENT.sub("", stripped, count=1)
    if body.startswith("{"):
        try:
            data = _python_literal(body)
        except DraftParseError as exc:
            errors.append(exc.reason)
        else:
            return data if isinstance(data, dict) else None
    if yaml_ok:
        try:
            data = parse_system_text(stripped, "answer")
        except SystemValidationError as exc:
            errors.append(f"not YAML: {'; '.join(exc.problems)}")
        else:
            return data if isinstance(data, dict) else None
    if errors:
        raise DraftParseError("; ".join(errors))
    return None


_ASSIGNMENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\s*(?::[^=\n]*)?=\s*")


def _python_literal(text: str) -> Any:
    """A Python literal (dicts, lists, strings, numbers; JSON's true/false/null too), comments dropped."""
    source = _strip_comments(text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise DraftParseError(f"not JSON or a Python dict: line {exc.lineno}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise DraftParseError("not JSON or a Python dict: nested too deeply or too large") from None
    duplicates: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            counts = Counter(k.value for k in node.keys if isinstance(k, ast.Constant))
            duplicates.extend(sorted(repr(k) for k, n in counts.items() if n > 1))
    if duplicates:
        raise DraftParseError(f"duplicate key(s) {', '.join(duplicates)} (each class, group and field may appear once)")
    tree = _Literals().visit(tree)
    try:
        return ast.literal_eval(tree)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise DraftParseError(f"not JSON or a Python dict: only literal values are allowed ({exc})") from None


class _Literals(ast.NodeTransformer):
    """``true``/``false``/``null`` (JSON spellings inside a Python-style answer) as constants."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _LITERALS:
            return ast.copy_location(ast.Constant(_LITERALS[node.id]), node)
        return node


_STRING = r""""(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?"""
_COMMENT = r"\#[^\n]*|//[^\n]*"
_NOT_CODE = re.compile(f"{_STRING}|{_COMMENT}")
_BRACE_TOKENS = re.compile(f"{_STRING}|{_COMMENT}|[{{}}]")


def _strip_comments(text: str) -> str:
    """``#`` and ``//`` comments dropped; strings (single or double quotes) kept as they are."""
    return _NOT_CODE.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else "", text)


def _brace_spans(text: str, limit: int = 50) -> Iterator[tuple[int, int]]:
    """Balanced ``{...}`` spans (braces in strings and comments do not count), in order, at most ``limit``."""
    pos = 0
    for _ in range(limit):
        start = text.find("{", pos)
        if start < 0:
            return
        depth, end = 0, -1
        for match in _BRACE_TOKENS.finditer(text, start):
            token = match.group(0)
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
                if depth == 0:
                    end = match.end()
                    break
        if end < 0:
            return  # unbalanced to the end: a cut-off answer
        yield start, end
        pos = end


# ----------------------------------------------------------------------- review
@dataclass(frozen=True)
class Review:
    """A draft checked: the valid system (or None), the problems that make it invalid, and
    the static findings of a valid system (identical rules, unused options)."""

    system: System | None
    problems: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.system is not None


def review_draft(data: Any, class_names: Sequence[str], source: str = "LLM draft", description: str = "") -> Review:
    """Validate a draft dict: the system's own validation plus the class list (names exactly
    as requested, none missing, none extra). The rules are put in the requested order and a
    missing ``description`` is filled with ``description``."""
    problems: list[str] = []
    if isinstance(data, Mapping):
        data = dict(data)
        rules_key = next((k for k in RULE_KEYS if k in data), None)
        if rules_key is not None and isinstance(data[rules_key], Mapping):
            class_problems = class_name_problems(list(map(str, data[rules_key])), class_names)
            problems += class_problems
            if not class_problems:
                rules = {str(k): v for k, v in data[rules_key].items()}
                data[rules_key] = {name: rules[name] for name in class_names}
        if description and not (isinstance(data.get("description"), str) and data["description"].strip()):
            data["description"] = description
    try:
        system = System.from_dict(data, source=source)
    except SystemValidationError as exc:
        problems = list(exc.problems) + problems
        system = None
    if problems:
        return Review(None, tuple(problems))
    assert system is not None
    return Review(system, (), tuple(static_findings(system)))


def class_name_problems(found: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Missing and extra classes, with the nearest requested name for each extra one."""
    wanted_set, found_set = set(wanted), set(found)
    missing = [n for n in wanted if n not in found_set]
    folded = {w.casefold().strip(): w for w in missing}
    problems = []
    for name in found:
        if name in wanted_set:
            continue
        near = folded.get(name.casefold().strip()) or next(iter(difflib.get_close_matches(name, missing, n=1, cutoff=0.75)), None)
        hint = f"; write it exactly as {near!r}" if near else ""
        problems.append(f"rules.{name}: not one of the requested classes{hint}")
    if missing:
        problems.append(f"rules: missing class(es) {', '.join(repr(n) for n in missing)}: every requested class needs a rule")
    return problems


REPAIR_FINDINGS = ("identical-rules", "inseparable", "unused-option", "no-information")
"""Kinds of :mod:`cotembed.inspection` suggestion sent back for repair: what a valid system
gets wrong outright. Softer ones (fragile pairs, redundant groups) are left to a person."""


def static_findings(system: System) -> list[str]:
    """What weakens a valid system, as ``kind: suggestion`` sentences an LLM (or a person) can
    act on: classes no question tells apart, options no class uses, groups that tell nothing."""
    from cotembed.inspection import static_report

    return [f"{s.kind}: {s.text}" for s in static_report(system).suggestions if s.kind in REPAIR_FINDINGS]


__all__ = [
    "DraftParseError",
    "ECHO_LIMIT",
    "MAX_ANSWER_CHARS",
    "MODALITIES",
    "Modality",
    "REPAIR_FINDINGS",
    "Review",
    "class_name_problems",
    "extract_system",
    "refused_answer",
    "repair_message",
    "review_draft",
    "static_findings",
    "system_prompt",
]

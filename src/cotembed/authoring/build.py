"""Drafting a system with an LLM, as the article recommends: the LLM proposes attribute
groups, prompt templates, options and one rule per class; cotembed validates the answer
and sends every problem back until the draft is valid (or the rounds run out); a person
reviews it and can send feedback the same way.

The pieces are separate so each can be used and tested on its own:

* :func:`load_class_names` reads the classes (a list file, a folder of class folders, a manifest);
* :func:`draft_messages` / :func:`feedback_messages` write the prompts;
* :mod:`cotembed.authoring._drafting` (shared with the optimiser's LLM proposers) reads a
  system out of an answer, reviews it and writes the repair message;
* :func:`build_system` runs the bounded draft -> review -> repair loop;
* :func:`write_system` writes a reviewed system atomically, with a provenance header.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from cotembed._io import atomic_write
from cotembed.authoring._drafting import (
    MAX_ANSWER_CHARS,
    MODALITIES,
    REPAIR_FINDINGS,
    Modality,
    Review,
    class_name_problems,
    extract_system,
    refused_answer,
    repair_message,
    review_draft,
    static_findings,
    system_prompt,
)
from cotembed.authoring._llm import ChatModel, ChatReply
from cotembed.errors import BuildFailed, CotembedError, DraftParseError, InputError, LLMError, SystemValidationError
from cotembed.system import RULE_KEYS, System, parse_system_text

DEFAULT_ROUNDS = 3
"""Repair rounds after the first answer: most drafts are valid after one or two."""
MAX_HEADER_FINDINGS = 20


# ------------------------------------------------------------------ class lists
@dataclass(frozen=True)
class ClassList:
    """The classes to draft a system for, where they came from, and optional notes per class."""

    names: tuple[str, ...]
    source: str
    notes: Mapping[str, str] = field(default_factory=dict)


def load_class_names(path: str | Path) -> ClassList:
    """Classes from a folder (its class sub-folders, ImageFolder style), a CSV/JSONL manifest
    (its labels), a YAML/JSON list (or a mapping of class name -> a note on it), a system file
    (its classes), or a text file with one name per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if path.is_dir():
        names = sorted(_nfc(p.name) for p in path.iterdir() if p.is_dir() and not _hidden(p.name))
        if not names:
            raise InputError(f"{path}: no class folders inside (expected one sub-folder per class)")
        return make_class_list(names, f"{path}/ (class folders)", {})
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder (give a class list file, a data folder or a manifest)")
    reader = _CLASS_READERS.get(path.suffix.lower(), _lines_file)
    names, notes = reader(path)
    return make_class_list(names, str(path), notes)


def _nfc(text: str) -> str:
    from cotembed.data import nfc

    return nfc(text)


def _hidden(name: str) -> bool:
    from cotembed.data import is_hidden

    return is_hidden(name)


def _manifest_labels(path: Path) -> tuple[list[str], dict[str, str]]:
    from cotembed.data import collect_samples

    samples = collect_samples([path], allow_outside=True)  # only labels are read, never the files
    labels = list(dict.fromkeys(s.label for s in samples if s.label))
    if not labels:
        raise InputError(f"{path}: the manifest has no labels (a 'label' column gives each row its class)")
    return labels, {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _structured_list(path: Path) -> tuple[list[str], dict[str, str]]:
    try:
        data = parse_system_text(_read_text(path), str(path), json_format=path.suffix.lower() == ".json")
    except SystemValidationError as exc:
        raise InputError(f"{path}: cannot read the class list: {'; '.join(exc.problems)}") from exc
    if isinstance(data, Mapping) and "classes" in data and len(data) == 1:
        data = data["classes"]
    rules = next((data[k] for k in RULE_KEYS if k in data), None) if isinstance(data, Mapping) else None
    if isinstance(rules, Mapping):  # a system file: its classes
        return [str(k) for k in rules], {}
    if isinstance(data, list) and all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in data):
        return [str(n) for n in data], {}
    if isinstance(data, Mapping) and all(isinstance(v, (str, type(None))) for v in data.values()):
        return [str(k) for k in data], {str(k): v.strip() for k, v in data.items() if isinstance(v, str) and v.strip()}
    raise InputError(f"{path}: expected a list of class names, or a mapping of class name to a short note on it")


def _lines_file(path: Path) -> tuple[list[str], dict[str, str]]:
    lines = (line.strip() for line in _read_text(path).splitlines())
    return [line for line in lines if line and not line.startswith("#")], {}


_CLASS_READERS: dict[str, Callable[[Path], tuple[list[str], dict[str, str]]]] = {
    ".csv": _manifest_labels,
    ".jsonl": _manifest_labels,
    ".json": _structured_list,
    ".yaml": _structured_list,
    ".yml": _structured_list,
}
"""Suffix -> reader; anything else is a text file with one name per line."""


def make_class_list(raw: Sequence[str], source: str, notes: Mapping[str, str] | None = None) -> ClassList:
    """A checked ClassList: names stripped and NFC, at least two, none repeated (ignoring case)."""
    names = [_nfc(n.strip()) for n in raw if n.strip()]
    seen: dict[str, str] = {}
    duplicates = []
    for name in names:
        key = name.casefold()
        if key in seen:
            duplicates.append(name if seen[key] == name else f"{name} (same as {seen[key]})")
        seen.setdefault(key, name)
    if duplicates:
        raise InputError(f"{source}: duplicate class name(s): {', '.join(duplicates[:10])}; class names must differ beyond case")
    if len(names) < 2:
        raise InputError(f"{source}: found {len(names)} class name(s); a classifier needs at least 2")
    return ClassList(tuple(names), source, {_nfc(k.strip()): v for k, v in (notes or {}).items()})


# -------------------------------------------------------------------- prompting
@dataclass(frozen=True)
class BuildRequest:
    """What to draft: the classes, and optional hints (domain, attribute ideas, number of groups, free notes)."""

    classes: ClassList
    domain: str = ""
    attributes: tuple[str, ...] = ()
    n_groups: int | None = None
    hints: tuple[str, ...] = ()
    modality: str = "image"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise InputError(f"unknown modality {self.modality!r}; choose one of {', '.join(MODALITIES)}")
        if self.n_groups is not None and not 1 <= self.n_groups <= 64:
            raise InputError(f"the number of groups must be from 1 to 64, got {self.n_groups}")


_SHAPE_EXAMPLE = """{
  "name": "short_snake_case_name",
  "description": "One sentence: what this system classifies and from which cues.",
  "groups": {
    "dominant_color": {
      "prompt": "%(prompt)s",
      "options": ["white", "gray", "brown", "green"]
    },
    "body_shape": {
      "prompt": "The body shape can be described as {}.",
      "options": ["wolf-like on four legs", "bulky and armored", "long and worm-like"]
    }
  },
  "rules": {
    "<first class>": {"dominant_color": "white", "body_shape": "wolf-like on four legs"},
    "<second class>": {"dominant_color": ["gray", "brown"], "body_shape": "bulky and armored"}
  }
}"""


def draft_messages(request: BuildRequest) -> list[dict[str, str]]:
    """The conversation that asks for a first draft (the article's prompt, made precise)."""
    return [{"role": "system", "content": system_prompt(request.modality)}, {"role": "user", "content": task_prompt(request)}]


def task_prompt(request: BuildRequest) -> str:
    m = MODALITIES[request.modality]
    classes = request.classes
    domain = f" ({request.domain.strip()})" if request.domain.strip() else ""
    n_groups = f"{request.n_groups}" if request.n_groups else "4 to 6"
    lines = [
        f"I need a classification system for these {len(classes.names)} classes{domain}, given as a JSON list:",
        json.dumps(list(classes.names), ensure_ascii=False),
    ]
    if classes.notes:
        lines += ["", "Notes on some classes:"] + [f"- {name}: {note}" for name, note in classes.notes.items()]
    lines += [
        "",
        "Create:",
        f"1. {n_groups} attribute groups based on {m.features}, chosen to tell these classes apart.",
    ]
    if request.attributes:
        lines.append("   Consider these attributes: " + "; ".join(a.strip() for a in request.attributes if a.strip()) + ".")
    lines += [
        "2. For each group:",
        f'   - a natural-language prompt template with exactly one "{{}}" where the option goes, e.g. "{m.example_prompt}"',
        "   - a list of options: short phrases that are mutually exclusive (no two describe the same thing) and together "
        "cover every class.",
        "3. A rule for every class: for each group, the option it matches, written exactly as in the group's options "
        "(or a list of options when several apply).",
        "",
        "Requirements:",
        "- Use the class names exactly as given (same spelling, case and punctuation), every one of them, and no others.",
        "- Every rule names an option for every group.",
        "- Every option is used by at least one class.",
        "- No two classes have the same rule: two classes with the same options in every group cannot be told apart.",
        '- Include "description": one sentence on what the system classifies.',
    ]
    if request.hints:
        lines += ["", "More guidance:"] + [f"- {h.strip()}" for h in request.hints if h.strip()]
    lines += ["", "Answer with the system as one JSON object only, in this shape:", _SHAPE_EXAMPLE % {"prompt": m.example_prompt}]
    return "\n".join(lines)


def feedback_messages(request: BuildRequest, current: Mapping[str, Any], feedback: Sequence[str],
                      problems: Sequence[str] = (), findings: Sequence[str] = ()) -> list[dict[str, str]]:
    """The conversation that asks to revise ``current`` (a system as a dict) after a person's feedback.

    The current system stands as the assistant's earlier answer, so the model revises its
    own work, as in the article's human-in-the-loop cycle; its open problems and findings
    are listed after the feedback.
    """
    text = ["A reviewer checked this system and asks for these changes:"]
    text += [f"- {f.strip()}" for f in feedback if f.strip()]
    if problems:
        text += ["", "The system is also invalid until these problems are fixed:"] + [f"- {p}" for p in problems]
    if findings:
        text += ["", "Automatic checks also found (fix them where you can):"] + [f"- {f}" for f in findings]
    text += ["", "Revise the system accordingly. Keep whatever the feedback does not touch. "
             "Answer with the whole revised system as one JSON object only."]
    return [*draft_messages(request),
            {"role": "assistant", "content": json.dumps(current, ensure_ascii=False, indent=1, default=str)},
            {"role": "user", "content": "\n".join(text)}]


# ------------------------------------------------------------------------- loop
@dataclass(frozen=True)
class Exchange:
    """One request and its answer, checked."""

    round: int
    kind: str  # "draft", "feedback" or "repair"
    messages: tuple[Mapping[str, str], ...]
    reply: ChatReply | None
    problems: tuple[str, ...]
    findings: tuple[str, ...]
    valid: bool
    error: str = ""
    time: str = field(default_factory=lambda: timestamp())
    summary: str = ""
    """When set, the reply was a long refused answer: the transcript holds this summary instead."""

    def to_dict(self) -> dict[str, Any]:
        reply = self.reply.to_dict() if self.reply else None
        if reply is not None and self.summary:
            content = reply["content"]
            reply.update(content=self.summary, content_chars=len(content),
                         content_sha256=hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest())
        return {"type": "exchange", "round": self.round, "kind": self.kind, "time": self.time,
                "request": {"messages": [dict(m) for m in self.messages]},
                "reply": reply,
                "valid": self.valid, "problems": list(self.problems), "findings": list(self.findings),
                **({"error": self.error} if self.error else {})}


@dataclass
class BuildResult:
    """The outcome: the best valid system (fewest findings; the later one on a tie) or None,
    its findings, the last answer's problems when none was valid, the last answer that held
    a readable draft (and that draft's own problems), and the exchanges."""

    system: System | None
    findings: list[str]
    problems: list[str]
    last_draft: dict[str, Any] | None
    last_answer: str
    exchanges: list[Exchange]
    answered_by: str = ""
    draft_problems: list[str] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        """LLM calls made."""
        return len(self.exchanges)


def default_description(request: BuildRequest) -> str:
    domain = f" ({request.domain.strip()})" if request.domain.strip() else ""
    return f"Attribute questions for {len(request.classes.names)} classes{domain}, drafted with an LLM."


def build_system(
    model: ChatModel,
    request: BuildRequest,
    *,
    rounds: int = DEFAULT_ROUNDS,
    current: Mapping[str, Any] | None = None,
    feedback: Sequence[str] = (),
    record: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildResult:
    """Ask for a draft (or, with ``current`` and ``feedback``, a revision), then send every
    problem and finding back for at most ``rounds`` repairs; stop early at a valid system
    without findings. ``record`` receives each exchange as a dict (the transcript); ``log``
    short progress lines. LLM errors (network, refusal, ...) propagate after being recorded.
    """
    if not 0 <= rounds <= 20:
        raise InputError(f"repair rounds must be from 0 to 20, got {rounds}")
    say = log or (lambda _line: None)
    if current is not None:
        start = review_draft(current, request.classes.names, "the current system")
        base, kind = feedback_messages(request, current, feedback, start.problems, start.findings), "feedback"
    else:
        base, kind = draft_messages(request), "draft"
    messages = base
    description = default_description(request)
    best: Review | None = None
    exchanges: list[Exchange] = []
    last_draft: dict[str, Any] | None = None
    draft_problems: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    answer, answered_by = "", ""
    for n in range(1, rounds + 2):
        say(f"round {n}: asking {model.settings.model} at {model.settings.host} for a {kind}")
        try:
            reply = model.complete(messages)
        except LLMError as exc:
            exchange = Exchange(n, kind, tuple(messages), None, (), (), False, error=str(exc))
            exchanges.append(exchange)
            if record:
                record(exchange.to_dict())
            raise
        answer, answered_by = reply.content, reply.model or answered_by
        echoed = reply.content
        try:
            draft = extract_system(reply.content)
        except DraftParseError as exc:
            cut = " (the answer was cut off at the token limit: raise --max-tokens, or ask for fewer, shorter options)" if reply.truncated else ""
            review = Review(None, (f"the answer could not be read as a system: {exc.reason}{cut}",))
            echoed = refused_answer(reply.content, exc.reason)
        else:
            review = review_draft(draft, request.classes.names, f"LLM draft (round {n})", description)
            last_draft, draft_problems = draft, review.problems
        problems = review.problems
        exchange = Exchange(n, kind, tuple(messages), reply, review.problems, review.findings, review.valid,
                            summary=echoed if echoed is not reply.content else "")
        exchanges.append(exchange)
        if record:
            record(exchange.to_dict())
        if review.valid:
            if best is None or len(review.findings) <= len(best.findings):
                best = review
            say(f"round {n}: valid" + (f", {len(review.findings)} finding(s)" if review.findings else ", no findings"))
            if not review.findings:
                break
        else:
            say(f"round {n}: {len(review.problems)} problem(s), e.g. {review.problems[0]}")
        if n == rounds + 1:
            break
        messages = [*base, {"role": "assistant", "content": echoed},
                    {"role": "user", "content": repair_message(review.problems, review.findings)}]
        kind = "repair"
    if best is not None:
        return BuildResult(best.system, list(best.findings), [], last_draft, answer, exchanges, answered_by)
    return BuildResult(None, [], list(problems), last_draft, answer, exchanges, answered_by, list(draft_problems))


# ---------------------------------------------------------------------- writing
def timestamp() -> str:
    """Now, in UTC, to the second (ISO 8601): when a draft was made."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def provenance_header(*, model: str, host: str, classes: ClassList, rounds: int, feedback: Sequence[str] = (),
                      based_on: str | None = None, findings: Sequence[str] = (), when: str | None = None) -> str:
    """YAML comment lines saying how the system was drafted; every value is kept on one line."""
    lines = [
        f"Drafted by `cotembed build` on {when or timestamp()}",
        f"LLM: {model} at {host}; {rounds} round(s)",
        f"Classes: {len(classes.names)} from {classes.source}",
    ]
    if based_on:
        lines.append(f"Revised from: {based_on}")
    lines += [f"Feedback: {f}" for f in feedback]
    lines += [f"Open finding: {f}" for f in findings[:MAX_HEADER_FINDINGS]]
    if len(findings) > MAX_HEADER_FINDINGS:
        lines.append(f"... and {len(findings) - MAX_HEADER_FINDINGS} more findings (see `cotembed validate`)")
    lines.append("An LLM draft: review the groups, options and rules, then `cotembed validate` and `cotembed eval`.")
    return "".join(f"# {_one_line(line)}\n" for line in lines)


def render_system(system: System, suffix: str, header: str = "") -> str:
    """The canonical text of ``system`` for a ``.json`` or YAML file (JSON has no comments: no header)."""
    return system.render(suffix, header)


def write_system(system: System, path: str | Path, header: str = "") -> None:
    """Write atomically with :meth:`System.save`, read back and compared with ``system``
    before it replaces ``path``; on any failure ``path`` is untouched."""
    try:
        system.save(path, header, verify=True)
    except OSError as exc:
        raise CotembedError(f"{path}: cannot write the system ({exc.strerror or exc}); nothing was written") from exc


def rejected_path(out: str | Path) -> Path:
    """Where the last invalid draft goes: beside OUT, clearly named, never OUT itself."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejected.yaml")


def write_rejected(result: BuildResult, out: str | Path) -> Path | None:
    """Save the last readable draft with its own problems as comments, for a person to fix
    (or, when no answer held a readable draft, the last answer as comments). None when
    there is nothing to save or it cannot be written."""
    body = None
    if result.last_draft is not None:
        try:
            body = yaml.safe_dump(result.last_draft, sort_keys=False, allow_unicode=True, width=100)
        except yaml.YAMLError:  # a Python answer may hold values YAML cannot write (sets, complex numbers)
            body = None
    problems = result.draft_problems if body is not None else result.problems
    if body is None:
        if not result.last_answer.strip():
            return None
        body = "".join(f"# {line}\n" for line in result.last_answer.splitlines())
    later = result.last_draft is not None and body is not None and result.problems != result.draft_problems
    header = "".join(f"# {_one_line(line)}\n" for line in [
        "REJECTED: an LLM draft that is NOT a valid system. Fix these problems, then `cotembed validate` it:",
        *(f"- {p}" for p in problems),
        *(["(Later answers held no readable draft.)"] if later else []),
    ])
    path = rejected_path(out)
    try:
        atomic_write(path, header + body)
    except OSError:
        return None
    return path


__all__ = [
    "BuildFailed",
    "BuildRequest",
    "BuildResult",
    "ClassList",
    "DraftParseError",
    "MODALITIES",
    "Review",
    "build_system",
    "class_name_problems",
    "draft_messages",
    "extract_system",
    "feedback_messages",
    "load_class_names",
    "MAX_ANSWER_CHARS",
    "Modality",
    "make_class_list",
    "provenance_header",
    "refused_answer",
    "rejected_path",
    "render_system",
    "repair_message",
    "system_prompt",
    "review_draft",
    "REPAIR_FINDINGS",
    "static_findings",
    "timestamp",
    "write_rejected",
    "write_system",
]

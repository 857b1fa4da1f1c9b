"""Verbs that write systems with help: ``build`` (an LLM drafts, cotembed validates and repairs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from cotembed.cli._common import EXIT_OK, add_format, add_output, add_quiet, bounded_float, bounded_int, emit, guarded_path
from cotembed.errors import InputError, SystemValidationError

SYSTEM_SUFFIXES = (".yaml", ".yml", ".json")


def add_llm_options(p: argparse.ArgumentParser) -> None:
    """The LLM endpoint flags (any verb that talks to an LLM); read them back with :func:`llm_settings`."""
    from cotembed.authoring._llm import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S, ENV_API_KEYS, ENV_BASE_URL, ENV_MODEL

    llm = p.add_argument_group("LLM endpoint")
    llm.add_argument("--llm-base-url", metavar="URL", help=f"OpenAI-compatible base URL (default: ${ENV_BASE_URL}, else https://api.openai.com/v1)")
    llm.add_argument("--llm-model", metavar="NAME", help=f"model name (default: ${ENV_MODEL})")
    llm.add_argument("--llm-api-key", metavar="KEY",
                     help=f"API key (default: ${' or $'.join(ENV_API_KEYS)}; prefer the environment: flags end up in shell history)")
    llm.add_argument("--llm-temperature", type=bounded_float(0.0, 2.0, low_inclusive=True), default=None, metavar="T",
                     help="sampling temperature, 0 to 2 (default: the server's)")
    llm.add_argument("--max-tokens", type=bounded_int(1, 1_000_000), default=None, metavar="N", help="cap on the answer's tokens (default: the server's)")
    llm.add_argument("--timeout", type=bounded_float(0.0, 3600.0), default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                     help=f"seconds to wait for one answer (default: {DEFAULT_TIMEOUT_S:g}; connecting: {DEFAULT_CONNECT_TIMEOUT_S:g})")
    llm.add_argument("--max-attempts", type=bounded_int(1, 20), default=None, metavar="N",
                     help="tries per request on 429/5xx/timeouts, with backoff (default: 5)")


def llm_settings(args: argparse.Namespace) -> Any:
    """LLMSettings from the flags of :func:`add_llm_options`, then the environment."""
    from dataclasses import replace

    from cotembed.authoring._llm import DEFAULT_RETRY, LLMSettings

    retry = DEFAULT_RETRY if args.max_attempts is None else replace(DEFAULT_RETRY, max_attempts=args.max_attempts)
    return LLMSettings.resolve(args.llm_base_url, args.llm_model, args.llm_api_key, timeout_s=args.timeout,
                               temperature=args.llm_temperature, max_tokens=args.max_tokens, retry=retry)


def register(sub: Any) -> None:
    from cotembed.authoring.build import DEFAULT_ROUNDS, MODALITIES

    p = sub.add_parser(
        "build",
        help="draft a system with an LLM (any OpenAI-compatible chat-completions endpoint)",
        description="Draft a system for a list of classes with an LLM, validate it, and send every problem back for "
                    "repair; or revise an existing system with --from and --feedback. The file is written only when "
                    "the system is valid.",
    )
    src = p.add_argument_group("what to draft")
    src.add_argument("--classes", metavar="PATH",
                     help="class names: a text file (one per line), a YAML/JSON list (or name -> note mapping), "
                          "a data folder (its class sub-folders), a CSV/JSONL manifest (its labels) or a system file (its classes)")
    src.add_argument("--from", dest="from_system", metavar="SYSTEM",
                     help="revise this system (its classes, unless --classes is given) with --feedback")
    src.add_argument("--feedback", action="append", default=[], metavar="TEXT",
                     help="what to change in the --from system, in words; repeat for several points")
    src.add_argument("--domain", default="", metavar="TEXT", help="what the classes are, e.g. 'Pokémon cards' or 'garden birds'")
    src.add_argument("--attributes", action="append", default=[], metavar="LIST",
                     help="attribute ideas, comma-separated (e.g. 'main colour,body shape,background'); repeatable")
    src.add_argument("--groups", type=bounded_int(1, 64), default=None, metavar="N", help="number of attribute groups (default: 4 to 6)")
    src.add_argument("--hint", action="append", default=[], metavar="TEXT", help="more guidance for the LLM; repeatable")
    src.add_argument("--modality", choices=tuple(MODALITIES), default="image", help="what is classified (default: image)")
    src.add_argument("--name", default=None, help="the system's name (default: the LLM's)")
    out = p.add_argument_group("output")
    add_output(out, "--out", required=True, metavar="PATH", replaces=("from_system",),
               help="where to write the system (.yaml, .yml or .json); it may be the --from file (revised in place, "
                    "replaced only by a valid system), never another input")
    out.add_argument("--force", action="store_true", help="replace --out if it exists (not needed when it is the --from file)")
    add_output(out, "--transcript", metavar="FILE.jsonl", help="record every request and answer, one JSON line each")
    out.add_argument("--rounds", type=bounded_int(0, 20), default=DEFAULT_ROUNDS, metavar="N",
                     help=f"repair rounds after the first answer (default: {DEFAULT_ROUNDS})")
    add_llm_options(p)
    add_format(p)
    add_quiet(p)
    p.set_defaults(func=cmd_build)


def _output_path(args: argparse.Namespace) -> Path:
    """--out checked before any request is made, so a bad path costs no tokens."""
    out = Path(args.out)
    if out.suffix.lower() not in SYSTEM_SUFFIXES:
        raise InputError(f"--out {out}: a system file ends in {', '.join(SYSTEM_SUFFIXES)}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--out {out}: folder {folder} is not writable")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder")
    from cotembed.authoring.build import rejected_path

    guarded_path(args, "--out", out, "out")
    guarded_path(args, "--out", rejected_path(out), "out")  # where an invalid last draft would go
    same_as_from = args.from_system and out.exists() and Path(args.from_system).exists() and out.resolve() == Path(args.from_system).resolve()
    if out.exists() and not args.force and not same_as_from:
        raise InputError(f"--out {out}: the file exists; pass --force to replace it")
    return out


def _current_system(path: str) -> dict[str, Any]:
    """The --from system as a dict: it may be invalid (the LLM is then asked to fix it too), but it must parse."""
    from cotembed.system import parse_system_text

    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise InputError(f"--from {path}: cannot read: {exc.strerror or exc}") from exc
    data = parse_system_text(raw, path, json_format=file.suffix.lower() == ".json")
    if not isinstance(data, dict):
        raise SystemValidationError(path, ["top level: expected a mapping with groups and rules"])
    return data


def _classes_of(data: dict[str, Any], path: str) -> Any:
    from cotembed.authoring.build import make_class_list
    from cotembed.system import RULE_KEYS

    rules = next((data[k] for k in RULE_KEYS if k in data), None)
    if not isinstance(rules, dict):
        raise SystemValidationError(path, ["rules: missing or not a mapping, so its classes are unknown; pass --classes"])
    return make_class_list([str(k) for k in rules], f"{path} (its classes)")


class _Transcript:
    """``--transcript``: one JSON object a line, flushed as it goes, so a failed run keeps its record."""

    def __init__(self, path: str | None):
        self.path = path
        self._fh: TextIO | None = None
        if path:
            try:
                self._fh = open(path, "w", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"--transcript {path}: cannot write ({exc.strerror or exc})") from exc

    def __call__(self, record: dict[str, Any]) -> None:
        if self._fh:
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()


def _logger(args: argparse.Namespace) -> Callable[[str], None]:
    if args.quiet:
        return lambda _line: None
    return lambda line: print(f"cotembed build: {line}", file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from cotembed.authoring._llm import ChatClient
    from cotembed.authoring.build import BuildRequest, build_system, load_class_names, provenance_header, timestamp, write_rejected, write_system
    from cotembed.errors import BuildFailed

    if not args.classes and not args.from_system:
        raise InputError("build: give the classes (--classes PATH) or a system to revise (--from SYSTEM)")
    if args.feedback and not args.from_system:
        raise InputError("build: --feedback revises an existing system: add --from SYSTEM")
    if args.from_system and not any(f.strip() for f in args.feedback):
        raise InputError("build: --from needs --feedback saying what to change")
    out = _output_path(args)
    current = _current_system(args.from_system) if args.from_system else None
    classes = load_class_names(args.classes) if args.classes else _classes_of(current or {}, args.from_system)
    attributes = tuple(a.strip() for item in args.attributes for a in item.split(",") if a.strip())
    request = BuildRequest(classes, domain=args.domain, attributes=attributes, n_groups=args.groups,
                           hints=tuple(args.hint), modality=args.modality)
    log = _logger(args)
    settings = llm_settings(args)
    transcript = _Transcript(str(guarded_path(args, "--transcript", args.transcript, "transcript")) if args.transcript else None)

    def on_retry(attempt: int, delay: float, problem: str) -> None:
        log(f"attempt {attempt} failed ({problem}); retrying in {delay:.1f} s")

    try:
        transcript({"type": "start", "time": timestamp(), "llm": {"model": settings.model, "host": settings.host},
                    "classes": list(classes.names), "class_source": classes.source, "out": str(out),
                    "from": args.from_system, "feedback": args.feedback, "rounds": args.rounds})
        with ChatClient(settings, on_retry=on_retry) as client:
            result = build_system(client, request, rounds=args.rounds, current=current,
                                  feedback=[f for f in args.feedback if f.strip()], record=transcript, log=log)
        transcript({"type": "end", "time": timestamp(), "valid": result.system is not None, "rounds": result.rounds,
                    "problems": result.problems, "findings": result.findings})
    finally:
        transcript.close()

    if result.system is None:
        rejected = write_rejected(result, out)
        saved = f"; the last draft is in {rejected} (not a valid system)" if rejected else ""
        lines = "\n".join(f"  - {p}" for p in result.problems)
        raise BuildFailed(f"no valid system after {result.rounds} round(s), nothing written to {out}{saved}; "
                          f"remaining problem(s):\n{lines}", result.problems, f"LLM draft (round {result.rounds})",
                          str(rejected) if rejected else None)
    system = result.system
    if args.name:
        from cotembed.system import System

        system = System.from_dict({**system.to_dict(), "name": args.name}, source="--name")
    header = provenance_header(model=settings.model, host=settings.host, classes=classes, rounds=result.rounds,
                               feedback=args.feedback, based_on=args.from_system, findings=result.findings)
    write_system(system, guarded_path(args, "--out", out, "out"), header)
    payload = {
        "path": str(out),
        "written": True,
        **system.summary(),
        "description": system.description,
        "classes": {"source": classes.source, "count": len(classes.names)},
        "llm": {"model": settings.model, "host": settings.host, "answered_by": result.answered_by or None},
        "rounds": result.rounds,
        "findings": result.findings,
        "transcript": args.transcript,
    }
    emit(args, payload, lambda: _build_table(payload))
    return EXIT_OK


def _build_table(payload: dict[str, Any]) -> str:
    lines = [
        f"wrote {payload['path']}: {payload['n_classes']} classes, {payload['n_groups']} groups, "
        f"{payload['n_prompts']} prompts (hash {payload['hash']})",
        f"  {payload['description']}",
        f"LLM: {payload['llm']['model']} at {payload['llm']['host']}, {payload['rounds']} round(s)",
    ]
    lines += [f"  {g['name']}: {g['prompt']!r}, {g['n_options']} options" for g in payload["groups"]]
    if payload["findings"]:
        lines.append(f"{len(payload['findings'])} finding(s) to review:")
        lines += [f"  - {f}" for f in payload["findings"]]
    if payload.get("transcript"):
        lines.append(f"transcript: {payload['transcript']}")
    lines.append(f"next: review it, then `cotembed validate {payload['path']}` and `cotembed eval {payload['path']} DATA --model SPEC`")
    return "\n".join(lines)

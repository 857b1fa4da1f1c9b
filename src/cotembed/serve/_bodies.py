"""A system sent over HTTP -> a :class:`~cotembed.system.System`, with the checks a body
from an untrusted client needs before and after parsing.

YAML anchors and aliases (``&a`` / ``*a``) are refused before the document is composed:
a few hundred bytes of nested aliases ("billion laughs") expand to gigabytes, and a
system file has no need of them. The token scan that finds them is linear in the body
and expands nothing. After parsing, the system's size is held to the service's caps
(Q prompts, N classes: 413). Runs on a worker thread, never on the event loop.
"""

from __future__ import annotations

from typing import Any

import yaml

from cotembed.errors import SystemValidationError
from cotembed.serve._errors import invalid, too_large
from cotembed.serve._settings import Limits
from cotembed.system import System, parse_system_text

SOURCE = "request body"


def refuse_yaml_aliases(raw: bytes) -> None:
    """422 at the first anchor or alias; a body that does not scan is left to the parser,
    whose message names the line."""
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for token in yaml.scan(raw, Loader=loader):
            if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
                kind = "anchor" if isinstance(token, yaml.AnchorToken) else "alias"
                line = token.start_mark.line + 1
                raise invalid(f"{SOURCE}, line {line}: a YAML {kind} ({'&' if kind == 'anchor' else '*'}{str(token.value)[:40]}); "
                              "anchors and aliases are not accepted over HTTP: write the values out", "body")
    except yaml.YAMLError:
        return


def system_from_body(raw: bytes, json_format: bool, limits: Limits) -> System:
    """The system a ``POST /v1/systems`` body holds; every failure is an ApiError."""
    if not json_format:
        refuse_yaml_aliases(raw)
    try:
        system = System.from_dict(parse_system_text(raw, SOURCE, json_format=json_format), source=SOURCE)
    except SystemValidationError as exc:
        raise invalid(str(exc), "body", problems=exc.problems) from None
    if system.n_prompts > limits.max_prompts:
        raise too_large(f"the system has {system.n_prompts:,} prompts (Q), above the service's limit of "
                        f"{limits.max_prompts:,} (--max-prompts)", "body")
    if len(system.class_names) > limits.max_classes:
        raise too_large(f"the system has {len(system.class_names):,} classes (N), above the service's limit of "
                        f"{limits.max_classes:,} (--max-classes)", "body")
    return system

"""Classification systems: attribute groups, options and per-class rules.

A system is the knowledge that turns a frozen embedding model into a
chain-of-thought classifier. It loads from YAML or JSON, accepts the seed
article's own keys unchanged (``classification_cot`` / ``classification_groups``
and ``pokemon_rules``), validates everything up front so an invalid system
never runs, and compiles to the matrices the scoring functions need.

The package, one job per module, each importing only the ones above it:

- :mod:`~cotembed.system._parts`: :class:`Group`, :class:`Rule` and the checks of their fields
- :mod:`~cotembed.system._parse`: UTF-8, strict JSON and the streaming YAML reader
- :mod:`~cotembed.system._validate`: a parsed dict to a system's parts, every problem with its path
- :mod:`~cotembed.system._compile`: :class:`CompiledSystem`, the arrays scoring multiplies
- :mod:`~cotembed.system._model`: :class:`System`, its edits, fingerprint and ``save``
"""

from cotembed.errors import SystemValidationError
from cotembed.system._compile import CompiledSystem
from cotembed.system._model import System
from cotembed.system._parse import ALIAS_BUDGET, parse_system_text
from cotembed.system._parts import GROUP_KEYS, QUOTE_LIMIT, RULE_KEYS, SCALE_RANGE, Group, OptionRef, Row, Rule

__all__ = [
    "ALIAS_BUDGET",
    "CompiledSystem",
    "GROUP_KEYS",
    "Group",
    "OptionRef",
    "QUOTE_LIMIT",
    "RULE_KEYS",
    "Row",
    "Rule",
    "SCALE_RANGE",
    "System",
    "SystemValidationError",
    "parse_system_text",
]


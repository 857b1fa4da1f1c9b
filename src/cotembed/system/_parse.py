"""Reading system files: UTF-8 checks, strict JSON and a streaming YAML reader.

YAML goes through libyaml's event stream when it is available, so a large file
never exists as a tree of nodes in memory; duplicate keys are reported with
their line instead of silently keeping the last value; YAML aliases may add at
most :data:`ALIAS_BUDGET` nodes, so a few hundred bytes of nested aliases
("billion laughs") are refused instead of expanding to 10^9 values.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Callable, cast

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from cotembed.errors import SystemValidationError
from cotembed.system._parts import bounded, shown


def parse_system_text(text: str | bytes, source: str, json_format: bool = False) -> Any:
    """Parse YAML (a superset of JSON) or strict JSON, naming line numbers on failure.

    Duplicate mapping keys are reported (with their line in YAML) instead of
    silently keeping the last value; bytes that are not UTF-8 are reported as
    such. YAML goes through libyaml's event stream when it is available, so a
    large file never exists as a tree of nodes in memory.
    """
    if isinstance(text, bytes):
        check_utf8(text, source)
    if json_format:
        return parse_json(text.decode("utf-8-sig") if isinstance(text, bytes) else text, source)
    return parse_yaml(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text, source)


def check_utf8(data: bytes, source: str) -> None:
    """Raise a SystemValidationError naming the first byte that no UTF-8 text file holds.

    That is an invalid UTF-8 sequence or a NUL (valid UTF-8, but only binary
    files and UTF-16 have them). Decodes in chunks to keep memory flat.
    """
    nul = data.find(b"\x00")
    end = nul if nul >= 0 else len(data)
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)[:end]
    step = 1 << 20
    for start in range(0, max(end, 1), step):
        pending = len(decoder.getstate()[0])  # bytes of a character cut by the previous chunk
        try:
            decoder.decode(view[start:start + step], final=start + step >= end)
        except UnicodeDecodeError as exc:
            offset = start - pending + exc.start
            line = data.count(b"\n", 0, offset) + 1
            raise SystemValidationError(source, [
                f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line {line}) is not valid UTF-8; "
                "a system is a YAML or JSON text file"
            ]) from None
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise SystemValidationError(source, [
            f"not UTF-8 text: NUL byte at offset {nul} (line {line}); a system is a YAML or JSON text file"
        ])


def parse_json(text: str, source: str) -> Any:
    duplicates: list[str] = []
    strings: dict[str, str] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Share repeated string values (rules repeat option texts millions of times in big systems).
        obj = {k: (strings.setdefault(v, v) if v.__class__ is str else v) for k, v in pairs}
        if len(obj) != len(pairs):
            seen: set[str] = set()
            repeated = {k for k, _ in pairs if k in seen or seen.add(k)}  # type: ignore[func-returns-value]
            duplicates.extend(f"duplicate key {shown(k)}" for k in sorted(repeated))
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise SystemValidationError(source, [f"line {exc.lineno}, column {exc.colno}: malformed JSON: {exc.msg}"]) from exc
    except RecursionError as exc:
        raise SystemValidationError(source, ["malformed JSON: nested too deeply"]) from exc
    if duplicates:
        raise SystemValidationError(source, bounded(duplicates))
    return data


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python event parser, for when libyaml is not installed."""

    def __init__(self, stream: bytes):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_CParser: Any = getattr(getattr(yaml, "_yaml", None), "CParser", None) if getattr(yaml, "__with_libyaml__", False) else None
_YAML_PARSER: Callable[[bytes], Any] = _CParser or _PyParser
"""The event parser YAML systems are read with: libyaml's when present, else PyYAML's own."""


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that reports duplicate mapping keys instead of silently keeping the last.

    Used only for YAML features the streaming reader leaves to PyYAML (merge
    keys ``<<``, tagged collections, complex keys): it builds a node tree first.
    """

    duplicates: list[str]


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # '<<': construct_mapping merges it
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                loader.duplicates.append(f"line {key_node.start_mark.line + 1}: duplicate key {shown(key)}")
            seen.add(key)
        except TypeError:
            pass  # unhashable: construct_mapping below reports it with its line
    return cast(dict[Any, Any], loader.construct_mapping(node, deep=deep))  # the stubs leave it untyped


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


class _NeedsComposer(Exception):
    """The streaming reader met a YAML feature it leaves to PyYAML's composer."""


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQ_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})
_SEQ = object()  # marks a sequence frame on the key stack
_NO_KEY = object()  # marks a mapping frame waiting for its next key
_MISSING = object()


ALIAS_BUDGET = 100_000
"""How many nodes YAML aliases may add beyond the nodes the file itself spells out.

An alias (``*name``) stands for a copy of its anchor's whole value, so a few
hundred bytes of nested aliases ("billion laughs") stand for 10^9 values that
validation would walk and error messages would quote. A system uses aliases to
share an option list or a rule; past this budget the file is refused.
"""


class _AliasBomb(Exception):
    """Aliases stand for more nodes than the budget allows (or for a value holding itself)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def _alias_problem(expanded: int, line: int | None) -> str:
    where = f"line {line}: " if line else ""
    return (f"{where}YAML aliases expanded too much: they stand for more than {ALIAS_BUDGET:,} nodes beyond the file's own "
            f"(at least {expanded:,}); write the values out or share fewer, smaller anchors")


def parse_yaml(data: bytes, source: str) -> Any:
    duplicates: list[str] = []
    try:
        try:
            result = _read_yaml_events(_YAML_PARSER(data), duplicates)
        except _NeedsComposer:
            duplicates.clear()
            loader = _UniqueKeyLoader(data)
            loader.duplicates = duplicates
            try:
                node = loader.get_single_node()
                _check_alias_budget(node)
                result = loader.construct_document(node) if node is not None else None
            finally:
                loader.dispose()
    except _AliasBomb as exc:
        raise SystemValidationError(source, [exc.problem]) from None
    except yaml.reader.ReaderError as exc:
        line = data.count(b"\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        where = f"line {line}: " if line else ""
        raise SystemValidationError(source, [f"{where}malformed YAML: {exc.reason} (character {shown(exc.character)})"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SystemValidationError(source, [f"{where}malformed YAML: {problem}"]) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # the fallback loader's scalar constructors raise these raw
        raise SystemValidationError(source, [f"malformed YAML: {exc}"]) from exc
    if duplicates:
        raise SystemValidationError(source, bounded(duplicates))
    return result


def _check_alias_budget(root: yaml.Node | None) -> None:
    """Refuse a composed node graph whose aliases stand for too many nodes (or for a value holding itself).

    The composer shares an aliased node instead of copying it, so the graph is
    as small as the file; this counts the nodes its values would expand to,
    once per distinct node.
    """
    sizes: dict[int, int | None] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            known = sizes[key]
            if known is None:
                raise _AliasBomb(f"line {node.start_mark.line + 1}: a YAML alias refers to a value that holds it "
                                 "(a recursive structure); a system is a tree of values")
            return known
        sizes[key] = None
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[key] = total
        if total - len(sizes) > ALIAS_BUDGET:
            raise _AliasBomb(_alias_problem(total - len(sizes), node.start_mark.line + 1))
        return total

    if root is not None:
        size(root)


def _read_yaml_events(parser: Any, duplicates: list[str]) -> Any:
    """Build plain Python data straight from the parser's events (no node tree).

    Handles what system files use: mappings, sequences, plain/quoted/block
    scalars, explicit scalar tags, anchors and aliases. Repeated scalars are
    resolved once and shared (a large system repeats each option text many
    times). Anything else raises _NeedsComposer and the caller re-reads the text
    with the node-based loader.
    """
    try:
        get_event = parser.get_event
        get_event()  # StreamStartEvent
        event: Any = get_event()
        if event.__class__ is StreamEndEvent:
            return None
        resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve
        constructor = yaml.constructor.SafeConstructor()
        plain: dict[str, Any] = {}
        quoted: dict[str, str] = {}
        anchors: dict[str, Any] = {}
        stack: list[Any] = []
        keys: list[Any] = []
        # Alias budget: `nodes` counts every value read, an alias as the nodes it stands for;
        # `sizes` holds each closed anchor's node count, `open_anchors` the anchored
        # collections still being read (depth, name, `nodes` at their start).
        nodes = expanded = 0
        sizes: dict[str, int] = {}
        open_anchors: list[tuple[int, str, int]] = []
        document_start = event.start_mark
        while True:
            event = get_event()
            kind = event.__class__
            nodes += 1
            if kind is ScalarEvent:
                tag = event.tag
                raw = event.value
                if tag is None or tag == "!":
                    if event.implicit[0]:  # plain: resolve null/bool/int/float/... once per distinct text
                        value = plain.get(raw, _MISSING)
                        if value is _MISSING:
                            value = plain[raw] = _construct_scalar(constructor, resolve(yaml.ScalarNode, raw, (True, False)), event)
                    else:
                        value = quoted.setdefault(raw, raw)
                else:
                    value = _construct_scalar(constructor, tag, event)
                if event.anchor is not None:
                    anchors[event.anchor] = value
                    sizes[event.anchor] = 1
            elif kind is MappingStartEvent:
                if event.tag not in _MAP_TAGS:
                    raise _NeedsComposer
                container: Any = {}
                if event.anchor is not None:
                    anchors[event.anchor] = container
                    open_anchors.append((len(stack), event.anchor, nodes - 1))
                stack.append(container)
                keys.append(_NO_KEY)
                continue
            elif kind is SequenceStartEvent:
                if event.tag not in _SEQ_TAGS:
                    raise _NeedsComposer
                container = []
                if event.anchor is not None:
                    anchors[event.anchor] = container
                    open_anchors.append((len(stack), event.anchor, nodes - 1))
                stack.append(container)
                keys.append(_SEQ)
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                nodes -= 1  # an end closes a node already counted
                value = stack.pop()
                keys.pop()
                if open_anchors and open_anchors[-1][0] == len(stack):
                    _, anchor, start = open_anchors.pop()
                    sizes[anchor] = nodes - start
            elif kind is AliasEvent:
                if event.anchor not in anchors:
                    raise yaml.composer.ComposerError(None, None, f"found undefined alias {shown(event.anchor)}", event.start_mark)
                size = sizes.get(event.anchor)
                if size is None:
                    raise _AliasBomb(f"line {event.start_mark.line + 1}: the YAML alias *{shown(event.anchor)[1:-1]} refers to "
                                     "a value that holds it (a recursive structure); a system is a tree of values")
                nodes += size - 1
                expanded += size - 1
                if expanded > ALIAS_BUDGET:
                    raise _AliasBomb(_alias_problem(expanded, event.start_mark.line + 1))
                value = anchors[event.anchor]
            else:
                raise _NeedsComposer
            if not stack:
                break
            key = keys[-1]
            if key is _SEQ:
                stack[-1].append(value)
            elif key is _NO_KEY:
                try:
                    present = value in stack[-1]
                except TypeError:
                    raise _NeedsComposer from None  # a collection as a key
                if present:
                    duplicates.append(f"line {event.start_mark.line + 1}: duplicate key {shown(value)}")
                keys[-1] = value
            else:
                stack[-1][key] = value
                keys[-1] = _NO_KEY
        event = get_event()
        if event.__class__ is not DocumentEndEvent:
            raise _NeedsComposer
        event = get_event()
        if event.__class__ is DocumentStartEvent:
            raise yaml.composer.ComposerError("expected a single document in the stream", document_start,
                                              "but found another document", cast(Any, event).start_mark)
        return value
    finally:
        parser.dispose()


def _construct_scalar(constructor: yaml.constructor.SafeConstructor, tag: str, event: Any) -> Any:
    if tag == _MERGE_TAG:
        raise _NeedsComposer
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
    try:
        return constructor.construct_object(node, deep=True)
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a plain 2024-13-45 reads as a bad date
        raise yaml.constructor.ConstructorError(None, None, f"cannot read {shown(event.value)} as {tag.rsplit(':', 1)[-1]}: {exc}",
                                                event.start_mark) from exc
    finally:
        constructor.constructed_objects.clear()

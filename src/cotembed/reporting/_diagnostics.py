"""Plain-text tables for ``inspect`` and ``induce`` (``--format table``).

Each function takes the verb's JSON payload and only lays it out: every figure shown
is in the JSON too.
"""

from __future__ import annotations

from typing import Any

from cotembed.reporting._text import table

LISTED = 15
"""Rows shown per section; --format json has them all."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _more(total: int, shown: int) -> list[str]:
    return [f"  ... and {total - shown} more (see --format json)"] if total > shown else []


def inspection_table(payload: dict[str, Any]) -> str:
    system, static = payload["system"], payload["static"]
    lines = [
        f"{payload['path']}: system {system['name'] or '(unnamed)'} [{system['hash']}]: {system['n_groups']} groups, "
        f"{system['n_classes']} classes, {system['n_prompts']} option prompts",
        f"ceiling (every question answered right, cot): {_pct(static['ceiling'])}",
    ]
    if static["identical_rules"]:
        lines.append("classes with identical rules (no question separates them):")
        lines += [f"  - {', '.join(tie)}" for tie in static["identical_rules"]]
    if static["inseparable_pairs"]:
        lines.append("pairs that share an option in every group: " + "; ".join(" / ".join(p) for p in static["inseparable_pairs"][:LISTED]))
    fragile = static["fragile_pairs"]
    if fragile:
        lines.append(f"fragile pairs (separated by one question only): {static['n_fragile_pairs']}")
        lines += [f"  - {f['a']} / {f['b']}: {f['group']} ({' | '.join(f['a_options'])} vs {' | '.join(f['b_options'])})" for f in fragile[:LISTED]]
        lines += _more(static["n_fragile_pairs"], min(len(fragile), LISTED))
    for group, options in static["unused_options"].items():
        lines.append(f"unused options in {group}: {', '.join(options)}")
    if static["single_class_options"]:
        lines.append("options used by one class only:")
        lines += [f"  - {group}: {', '.join(o['option'] + ' (' + o['class'] + ')' for o in items)}"
                  for group, items in static["single_class_options"].items()]

    groups = static["groups"]
    names = [g["name"] for g in groups]
    nmi = static["redundancy"]["nmi"]
    rows = [["group", "options", "used", "entropy", "max", *(f"NMI {i}" for i in range(1, len(names) + 1))]]
    rows += [[f"{i}. {g['name']}", str(g["n_options"]), str(g["n_used"]), f"{g['entropy_bits']:.2f}", f"{g['max_bits']:.2f}",
              *(f"{v:.2f}" for v in nmi[i - 1])] for i, g in enumerate(groups, 1)]
    lines += ["", f"information per group (bits; the class needs {static['class_entropy_bits']:.2f}) and redundancy between groups (NMI):",
              table(rows)]

    if payload.get("near_duplicates") is not None:
        dups = payload["near_duplicates"]
        lines.append("")
        if dups:
            lines.append(f"near-duplicate options (prompt cosine >= {payload['duplicate_threshold']:g}):")
            lines += [f"  - {d['group']}: {d['a']!r} / {d['b']!r} ({d['cosine']:.3f})" for d in dups[:LISTED]]
        else:
            lines.append(f"near-duplicate options: none (prompt cosine >= {payload['duplicate_threshold']:g})")

    data = payload.get("data")
    if data:
        lines += ["", f"model {data['model']}, method {data['method']}, temperature {data['temperature']:g}: accuracy "
                      f"{_pct(data['accuracy'])} on {data['n_inputs']} inputs (chance {_pct(data['chance'])})"]
        q_rows = [["question", "accuracy", "chance", "skill", "flag"]]
        for q in data["questions"]:
            flag = "at chance" if q["at_chance"] else "weak" if q["weak"] else ""
            q_rows.append([q["group"], _pct(q["accuracy"]), _pct(q["chance"]), f"{q['skill']:.2f}", flag])
        lines.append(table(q_rows))
        if data["attractors"]:
            lines.append("options the model answers far more often than the rules expect:")
            lines += [f"  - {a['group']}: {a['option']!r} {_pct(a['answered'])} (expected {_pct(a['expected'])})" for a in data["attractors"]]
        if data["confusions"]:
            c_rows = [["true", "predicted", "separated by", "inputs", "of errors"]]
            c_rows += [[c["true"], c["predicted"], ", ".join(c["separating_groups"]) or "nothing", str(c["count"]), _pct(c["share_of_errors"])]
                       for c in data["confusions"]]
            lines += ["", "costliest confusions:", table(c_rows, right_align_from=3)]

    suggestions = payload["suggestions"]
    if suggestions:
        lines += ["", f"suggestions ({len(suggestions)}):"]
        lines += [f"  {i}. {s['text']}" for i, s in enumerate(suggestions[:2 * LISTED], 1)]
        lines += _more(len(suggestions), 2 * LISTED)
    else:
        lines += ["", "no suggestions: nothing to fix that inspect can see"]
    if payload.get("errors"):
        lines.append(f"{len(payload['errors'])} input(s) failed; see --format json")
    return "\n".join(lines)


def induce_table(payload: dict[str, Any]) -> str:
    induced, evaluation = payload["induced"], payload["evaluation"]
    lines = [f"wrote {payload['out']['path']} [{payload['out']['hash']}] from {payload['system']['path']} "
             f"({payload['per_class']} examples per class, seed {payload['seed']}, model {payload['model']})"]
    lines += [f"  {line}" for line in payload["header"][3:7]]
    method = induced["method"]
    after = [method] if method == "cot" else [method, "cot"]
    rows = [["data", "inputs", "before cot", "before hybrid", *(f"after {m}" for m in after)]]
    for name, label in (("train", "examples"), ("heldout", "held-out")):
        part = evaluation[name]
        if not part["n_inputs"]:
            continue
        rows.append([label, str(part["n_inputs"]), _pct(part["before"].get("cot")), _pct(part["before"].get("hybrid")),
                     *(_pct(part["after"].get(m)) for m in after)])
    lines += ["", table(rows)]
    if not evaluation["heldout"]["n_inputs"]:
        lines.append("no held-out inputs: pass --eval DATA (or more data than --per-class) for a fair comparison")
    changes = induced["rule_changes"]
    if changes:
        lines += ["", f"rule changes ({len(changes)} of {induced['n_rule_entries']}):"]
        lines += [f"  {c['class']}.{c['group']}: {' | '.join(c['before'])} -> {' | '.join(c['after'])}" for c in changes[:LISTED]]
        lines += _more(len(changes), LISTED)
    if payload.get("errors"):
        lines.append(f"{len(payload['errors'])} input(s) failed; see --format json")
    return "\n".join(lines)

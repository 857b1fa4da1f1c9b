"""Plain-text tables for the CLI's ``--format table`` output.

Only presentation lives here: every function takes a result object (or its
``to_dict``) and returns a string; nothing is computed that JSON lacks.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any, Callable, Sequence

from cotembed._classifier import Explanation, Prediction
from cotembed._pipeline import SampleError
from cotembed.evaluation._evaluate import EvalReport, MethodResult, SeededResult

if TYPE_CHECKING:
    from cotembed._adaptive import AdaptiveTrace


BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Characters that reorder the text around them (a right-to-left override makes ``gpj.exe`` read ``exe.jpg``)."""
MAX_CELL_WIDTH = 60
"""Columns a table cell may take; longer names end in an ellipsis (the JSON keeps them whole)."""
MAX_LINE_WIDTH = 160
"""Columns a free-text line (a question, a prompt) may take."""


def neutralise(text: str, keep: str = "") -> str:
    """``text`` with every control, bidi-control and lone-surrogate character shown as its escape
    (``\\u202e``), so a name can neither reorder nor restyle what is printed around it."""
    return "".join(f"\\u{ord(c):04x}" if c not in keep and (c in BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Cs")) else c
                   for c in text)


def terminal_text(text: str) -> str:
    """A whole printed block with its line breaks kept and everything else :func:`neutralise`-d."""
    return neutralise(text, keep="\n")


def char_width(c: str) -> int:
    """Terminal columns of one character: 2 for wide East Asian and emoji, 0 for combining marks and format characters."""
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(c) for c in text)


def clip(text: str, width: int) -> str:
    """``text`` neutralised and cut to ``width`` columns, ending in ``…`` when cut."""
    text = neutralise(text)
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = char_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def clip_line(text: str, width: int = MAX_LINE_WIDTH) -> str:
    """A long free-text line cut, saying how long it was."""
    cut = clip(text, width)
    return cut if not cut.endswith("…") or cut == neutralise(text) else f"{cut} ({len(text):,} characters)"


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def table(rows: Sequence[Sequence[str]], right_align_from: int = 1) -> str:
    """Left-aligned first columns, right-aligned numbers, a rule under the header. Widths count
    terminal columns (CJK and emoji take two), and long cells are clipped."""
    cells_of = [[clip(str(c), MAX_CELL_WIDTH) for c in r] for r in rows]
    widths = [max(display_width(r[i]) for r in cells_of) for i in range(len(cells_of[0]))]
    lines = []
    for n, row in enumerate(cells_of):
        cells = [_pad(c, w, right=i >= right_align_from) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def errors_block(errors: Sequence[SampleError], limit: int = 20) -> list[str]:
    if not errors:
        return []
    lines = [f"{len(errors)} input(s) failed:"]
    lines.extend(f"  {e.source}: {e.error}" for e in errors[:limit])
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more (see --format json)")
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _prompt_label(method: str, count: int) -> str:
    """``Q=51`` for option prompts, ``N=16`` for class names, ``Q+N=67`` for both, as in the article."""
    from cotembed.scoring import NAMES, OPTIONS, get_method

    scoring_method = get_method(method) if method in _registered() else None
    needs = set(scoring_method.needs) if scoring_method else set()
    symbol = getattr(scoring_method, "prompt_symbol", None) or {
        frozenset({OPTIONS}): "Q", frozenset({NAMES}): "N", frozenset({OPTIONS, NAMES}): "Q+N"}.get(frozenset(needs))
    return f"{symbol}={count}" if symbol else str(count)


def _registered() -> tuple[str, ...]:
    from cotembed.scoring import method_names

    return method_names()


def _metric(result: MethodResult | SeededResult, metric: str) -> str:
    """A percentage (ECE: a fraction); seeded methods add ``± std`` over their seeds."""
    value = getattr(result, metric)
    as_text = _percent if metric != "ece" else (lambda v: "-" if v is None else f"{v:.3f}")
    spread = result.spread.get(metric) if isinstance(result, SeededResult) else None
    if spread is None:
        return as_text(value)
    std = f"{100 * spread['std']:.2f}" if metric != "ece" else f"{spread['std']:.3f}"
    return f"{as_text(value)} ± {std}"


PER_CLASS_TABLE_MAX = 60
"""Above this many classes the per-class block is left to --format json / --output."""


def methods_table(report: EvalReport) -> str:
    """The comparison rows (one per method), chance, and how seeded methods were summarised."""
    rows = [("method", "acc1", "acc5", "mean recall", "ECE", "text prompts", "inputs")]
    rows += [
        (m, _metric(r, "acc1"), _metric(r, "acc5"), _metric(r, "mean_per_class_recall"), _metric(r, "ece"),
         _prompt_label(m, r.prompts), str(r.total))
        for m, r in report.methods.items()
    ]
    lines = [table(rows), f"chance: {_percent(report.chance)}"]
    lines += [f"{m}: mean ± std over {len(r.runs)} seeds ({', '.join(map(str, r.runs))})"
              for m, r in report.methods.items() if isinstance(r, SeededResult)]
    lines += [_usage_line(m, r.extra, report) for m, r in report.methods.items() if isinstance(r, MethodResult) and r.extra]
    return "\n".join(lines)


def _usage_line(method: str, extra: dict[str, float], report: EvalReport) -> str:
    """What a method with a per-input cost consulted on average (adaptive: questions and their prompts)."""
    totals = {"questions": len(report.question_accuracy), "prompts": report.system.get("n_prompts")}
    parts = []
    for name, mean in extra.items():
        total = totals.get(name)
        label = "text prompts" if name == "prompts" else name
        share = f" of {total} ({100 * mean / total:.0f}%)" if total else ""
        parts.append(f"{mean:.2f} {label}{share}")
    return f"{method}: per input {', '.join(parts)}"


def eval_table(report: EvalReport) -> str:
    """One model's block of the article's comparison table, then per-class and per-question accuracy."""
    header = (
        f"system {report.system['name'] or '(unnamed)'} [{report.system['hash']}]  model {report.model}  "
        f"temperature {report.temperature:g}  classes {report.n_classes}  inputs {report.n_inputs}"
    )
    if report.n_inputs == 0:
        lines = [header, "nothing was evaluated: no input could be used"]
        return "\n".join(lines + errors_block(report.errors))
    lines = [header, methods_table(report)]
    if report.n_classes <= PER_CLASS_TABLE_MAX:
        per_class = {m: r.per_class_recall for m, r in report.methods.items()}
        classes = sorted({c for recalls in per_class.values() for c in recalls})
        class_rows = [("class", *report.methods)] + [(c, *(_percent(per_class[m].get(c)) for m in report.methods)) for c in classes]
        lines += ["", "per-class accuracy:", table(class_rows)]
    answered = {g: a for g, a in report.question_accuracy.items() if a is not None}
    if answered:
        lines.append("question accuracy: " + ", ".join(f"{g} {100 * a:.1f}%" for g, a in answered.items()))
    lines += errors_block(report.errors)
    if report.skipped:
        lines.append(f"{len(report.skipped)} input(s) skipped: labels not in the system")
    return "\n".join(lines)


def eval_tables(reports: Sequence[EvalReport]) -> str:
    """Several models on the same system and data: one block per model, like the article's table."""
    return "\n\n".join(eval_table(r) for r in reports)


def curve_table(curve: dict[str, Any]) -> str:
    """The test-time-compute curve (a ``Curve.to_dict()``) as rows: k, prompts, accuracy over subsets."""
    system, base = curve["system"], curve["baseline"]
    lines = [
        f"system {system['name'] or '(unnamed)'} [{system['hash']}]  model {curve['model']}  method {curve['method']}  "
        f"temperature {curve['temperature']:g}  classes {curve['n_classes']}  inputs {curve['n_inputs']}",
    ]
    rows = [("k", "subsets", "text prompts", "mean", "std", "min", "max")]
    rows += [
        (str(p["k"]), f"{p['subsets']}/{p['of']}", _prompt_range(p), _percent(p["mean"]), f"{100 * p['std']:.2f}",
         _percent(p["min"]), _percent(p["max"]))
        for p in curve["points"]
    ]
    lines += [table(rows), f"baseline (N={base['text_prompts']}): {_percent(base['accuracy'])}   chance: {_percent(curve['chance'])}"]
    lines += [f"ties count 1/m; subsets sampled with seed {curve['seed']} where more than {curve['max_subsets']} exist"]
    return "\n".join(lines)


def _prompt_range(point: dict[str, Any]) -> str:
    low, high = point["prompts_min"], point["prompts_max"]
    return str(low) if low == high else f"{low}-{high}"


def predictions_table(predictions: Sequence[Prediction], errors: Sequence[SampleError]) -> str:
    """A row per input: prediction (or abstained, with the class it would have named), its probability and
    fit score, the runner-up, and the conformal set or multi-label classes where asked for."""
    labelled = any(p.label is not None for p in predictions)
    sets = any(p.prediction_set is not None for p in predictions)
    multi = any(p.labels is not None for p in predictions)
    head = (["input", "prediction", "probability", "fit score"] + (["label"] if labelled else []) + ["runner-up"]
            + (["set"] if sets else []) + (["labels"] if multi else []))
    rows: list[list[str]] = [head]
    for p in predictions:
        runner = f"{p.top[1][0]} ({p.top_probabilities[1]:.3f})" if len(p.top) > 1 and len(p.top_probabilities) > 1 else ""
        shown = f"abstained ({p.candidate}?)" if p.abstained else str(p.prediction)
        row = [p.source, shown, "" if p.probability is None else f"{p.probability:.3f}",
               "" if p.fit_score is None else f"{p.fit_score:.3f}"] + ([p.label or ""] if labelled else []) + [runner]
        if sets:
            row.append(", ".join(p.prediction_set or ()) or "(empty)")
        if multi:
            row.append(", ".join(c for c, _ in p.labels or ()) or "(none)")
        rows.append(row)
    lines = [table(rows, right_align_from=99)] if predictions else ["no input could be classified"]
    abstained = sum(p.abstained for p in predictions)
    if abstained:
        lines.append(f"\n{abstained} of {len(predictions)} input(s) abstained: their fit score is below the threshold")
    return "\n".join(lines + errors_block(errors))


def _probability(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def explanation_table(exp: Explanation) -> str:
    """Each question's answers and the top classes; a method with its own account (``exp.detail``) renders that."""
    render = DETAIL_TABLES.get(type(exp.detail).__name__) if exp.detail is not None else None
    if render is not None:
        return render(exp, exp.detail)
    lines = [f"{clip(exp.source, MAX_CELL_WIDTH)}: {clip(exp.prediction, MAX_CELL_WIDTH)}   "
             f"(method {exp.method}, model {exp.model}, temperature {exp.temperature:g})", ""]
    for q in exp.questions:
        lines.append(clip_line(f"Q: {q.prompt}"))
        ranked = sorted(q.probabilities.items(), key=lambda kv: -kv[1])
        for option, p in ranked:
            bar = "#" * int(round(20 * p))
            mark = "*" if option == q.answer else " "
            lines.append(f"  {mark} {_pad(clip(option, MAX_CELL_WIDTH), 32, right=False)} {100 * p:5.1f}% {bar}")
    lines.append("")
    if exp.top and exp.top[0].contributions:
        groups = list(exp.top[0].contributions)
        rows = [["class", "score", "probability", *groups]]
        rows += [[c.class_name, f"{c.score:.3f}", _probability(c.probability), *(f"{c.contributions[g]:.3f}" for g in groups)]
                 for c in exp.top]
    else:
        rows = [["class", "score", "probability"]] + [[c.class_name, f"{c.score:.3f}", _probability(c.probability)] for c in exp.top]
    lines.append(table(rows))
    return "\n".join(lines)


def adaptive_explanation_table(exp: Explanation, trace: "AdaptiveTrace") -> str:
    """The questions adaptive questioning asked, in order, each with why (its expected gain against
    the runner-up), its answer and the leading class after it; then the top classes."""
    t = trace
    model = t.answer_model
    source = {"ideal": "ideal (every question assumed reliable)",
              "labelled": f"counted from {model.get('n_inputs')} labelled inputs",
              "unlabelled": f"estimated without labels from {model.get('n_inputs')} inputs",
              "batch": f"estimated without labels from the {model.get('n_inputs')} inputs classified"}.get(model["source"], model["source"])
    stop = {"confident": f"posterior {t.probability:.3f} >= {t.confidence:g}",
            "budget": f"budget of {t.max_questions} question(s) spent",
            "all asked": "every question asked",
            "no gain": "no remaining question can change the posterior"}[t.stopped]
    lines = [
        f"{clip(exp.source, MAX_CELL_WIDTH)}: {clip(t.prediction, MAX_CELL_WIDTH)} ({100 * t.probability:.1f}%)   "
        f"(method adaptive, model {exp.model}, temperature {exp.temperature:g})",
        f"asked {len(t.steps)} of {t.n_groups} questions ({t.prompts_used} of {t.n_prompts} text prompts); stopped: {stop}",
        f"answer model: {source}",
        "",
    ]
    rows = [["#", "question", "gain (bits)", "runner-up (bits)", "answer", "P(answer)", "leader after", "P(leader)"]]
    for i, step in enumerate(t.steps, 1):
        runner = "-" if step.runner_up is None else f"{step.runner_up} ({step.runner_up_gain_bits:.2f})"
        rows.append([str(i), step.group, f"{step.gain_bits:.2f}", runner, step.answer, f"{step.answer_probability:.3f}",
                     step.leader, f"{step.leader_probability:.3f}"])
    lines.append(table(rows, right_align_from=99))
    if t.not_asked:
        lines.append("not asked (gain at the stop, bits): " + ", ".join(f"{g} {v:.2f}" for g, v in t.not_asked.items()))
    if "reliability" in model:
        lines.append("question reliability (P(right answer)): " + ", ".join(f"{g} {v:.2f}" for g, v in model["reliability"].items()))
    lines.append("")
    asked = [s.group for s in t.steps]
    rows = [["class", "log posterior", *asked]]
    rows += [[c.class_name, f"{c.score:.3f}", *(f"{c.contributions.get(g, 0.0):.3f}" for g in asked)] for c in exp.top]
    lines.append(table(rows))
    return "\n".join(lines)


DETAIL_TABLES: dict[str, Callable[[Explanation, Any], str]] = {"AdaptiveTrace": adaptive_explanation_table}
"""Text renderers of methods' own explanation details, by the detail's type name."""


def validate_table(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['path']}: valid system {summary['name'] or '(unnamed)'} [{summary['hash']}]",
        f"  {summary['n_groups']} groups, {summary['n_classes']} classes (N={summary['n_classes']}), "
        f"{summary['n_prompts']} option prompts (Q={summary['n_prompts']})",
    ]
    for group in summary["groups"]:
        lines.append(clip_line(f"  - {group['name']}: {group['n_options']} options, weight {group['weight']:g}: {group['prompt']!r}"))
    if summary.get("templates"):
        lines.append(clip_line(f"  ensemble templates ({len(summary['templates'])}): " + ", ".join(map(repr, summary["templates"]))))
    for tie in summary["identical_rules"]:
        lines.append(f"  note: {', '.join(tie)} have identical rules; only the hybrid method can tell them apart")
    return "\n".join(lines)


def models_table(models: Sequence[dict[str, Any]]) -> str:
    rows = [["spec", "inputs", "installed", "description"]]
    rows += [[m["spec"], m["inputs"], "yes" if m["installed"] else f"no: pip install 'cotembed[{m['extra']}]'", m["description"]] for m in models]
    return table(rows, right_align_from=99)


def decision_tables(reports: Sequence[EvalReport]) -> str:
    """``eval``'s abstention, conformal and open-set sections, a few lines each (empty when none was asked for)."""
    lines: list[str] = []
    for report in reports:
        extras = report.extras
        for method, a in extras.get("abstention", {}).items():
            lines.append(f"abstention ({method}, {a['fit_score']} >= {a['threshold']:.4g}, {a['chosen_by']}): "
                         f"coverage {_percent(a['coverage'])}, accuracy of the accepted {_percent(a['accuracy_accepted'])} "
                         f"(all: {_percent(a['accuracy_all'])})")
        for method, c in extras.get("conformal", {}).items():
            lines.append(f"conformal sets ({method}, alpha {c['alpha']:g}, {c['score']}, {c['n_calibration']} calibration "
                         f"inputs): coverage {_percent(c['coverage'])} (target {_percent(c['target_coverage'])}), "
                         f"mean set size {c['mean_set_size']:.2f}, {c['empty_sets']} empty")
        for method, o in extras.get("open_set", {}).items():
            lines.append(f"open set ({method}, {o['k']} classes held out, seed {o['seed']}: {', '.join(o['held_out'])}): "
                         f"AUROC {o['auroc']:.3f}, FPR at 95% TPR {_percent(o['fpr_at_95_tpr'])}, "
                         f"{o['n_known']} known / {o['n_unknown']} unknown inputs")
    return ("\n\n" + "\n".join(lines)) if lines else ""


def multilabel_table(payload: dict[str, Any]) -> str:
    """``eval --multi-label``: per-class precision, recall, F1 and AP, then micro F1 and mAP."""
    ml = payload["multi_label"]

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    rows = [["class", "precision", "recall", "F1", "AP", "support"]]
    for name, c in ml["per_class"].items():
        rows.append([name, num(c.get("precision")), num(c.get("recall")), num(c.get("f1")), num(c["ap"]), str(c["support"])])
    tail = [f"mAP {num(ml['map'])}" + (f", micro F1 {num(ml['micro_f1'])}" if "micro_f1" in ml else "")]
    if "note" in ml:
        tail.append(ml["note"])
    return "\n".join([table(rows), "", *tail] + errors_block([]))

"""The classifier a request describes: model, method and its parameters, calibration data, few-shot
examples, then the decisions on top. Every error names the option whose data caused it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cotembed._classifier import CoTClassifier
from cotembed.data import Sample, collect_samples, resolve_labels
from cotembed.errors import InputError
from cotembed.runs._inputs import any_samples, labelled_samples
from cotembed.runs._options import FIT_SCORES, DecisionOptions, ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs._resources import RunResources
from cotembed.system import System


def learns_from_data(cls: Any) -> bool:
    """Whether a method class fits something on calibration data (overrides ``fit``)."""
    from cotembed.scoring import ScoringMethod

    return cls.fit is not ScoringMethod.fit


def check_calibration(settings: MethodSettings, in_use: Sequence[str]) -> None:
    """Calibration data goes to a method that learns from it."""
    from cotembed.scoring import method_class, method_names

    if settings.calibrate:
        learners = [method_class(n) for n in method_names() if learns_from_data(method_class(n))]
        if not any(cls.name in in_use for cls in learners):
            hint = " or ".join(f"--{c.name}" if c.switch_help else f"method {c.name}" for c in learners)
            raise InputError(f"--calibrate: only for methods that learn from data; add {hint}")
    settings.check()


def check_examples(examples: ExamplesOptions, in_use: Sequence[str]) -> None:
    """A method that needs examples gets them; examples go to a method that uses them (before any work)."""
    from cotembed._examples import example_methods

    users = [m for m in in_use if m in example_methods()]
    if users and not examples.examples:
        raise InputError(f"method {', '.join(users)} needs labelled examples: add --examples DATA (a folder with a "
                         "sub-folder per class, or a manifest with labels)")
    if examples.examples and not users:
        raise InputError(f"--examples: only for the few-shot methods ({', '.join(example_methods())}); "
                         f"choose one with --method or --methods")


def build_classifier(res: RunResources, system: System, spec: str, method: str, *, model: ModelOptions,
                     settings: MethodSettings, examples: ExamplesOptions, probabilities: str,
                     methods: Sequence[str] = (), inputs: Sequence[Sample] = (),
                     notices: list[str] | None = None) -> CoTClassifier:
    """The classifier of one model: method and parameters, few-shot examples, calibration data.

    ``methods``: every method the run scores with (default: ``method`` alone); ``inputs``: the
    batch to classify (the few-shot methods leave an example that is also an input out);
    ``notices``: collects what a person should read on stderr.
    """
    in_use = tuple(methods) or (method,)
    clf = CoTClassifier(system, res.encoder(spec), method=method, temperature=model.temperature,
                        hybrid_weight=model.hybrid_weight, cache=res.cache, batch_size=model.batch_size,
                        progress=not model.quiet, method_options=dict(settings.options), max_pixels=model.max_pixels,
                        probabilities=probabilities, transductive=examples.transductive)
    clf = with_examples(clf, examples, in_use, inputs, model.allow_outside_paths)
    if settings.calibrate:
        try:
            samples, _ = resolve_labels(collect_samples(list(settings.calibrate), allow_outside=model.allow_outside_paths),
                                        system.resolve_label)
            clf = clf.calibrated(samples, in_use, use_labels=not settings.calibrate_without_labels)
        except InputError as exc:
            raise type(exc)(f"--calibrate {' '.join(settings.calibrate)}: {exc}") from exc
        if clf.calibration_failures and not model.quiet and notices is not None:
            notices.append(f"--calibrate: {clf.calibration_failures} input(s) could not be used and were left out")
    return clf


def with_examples(clf: CoTClassifier, examples: ExamplesOptions, methods: Sequence[str], inputs: Sequence[Sample] = (),
                  allow_outside: bool = False) -> CoTClassifier:
    """``clf`` with its few-shot methods fitted on the examples (errors name ``--examples``)."""
    check_examples(examples, methods)
    if not examples.examples:
        return clf
    from cotembed._examples import example_methods

    flag = f"--examples {' '.join(examples.examples)}"
    try:
        return clf.with_examples(list(examples.examples), [m for m in methods if m in example_methods()],
                                 ignore_unknown=examples.ignore_unknown, inputs=inputs, allow_outside=allow_outside)
    except InputError as exc:
        raise type(exc)(f"{flag}: {exc}") from exc


def apply_decisions(clf: CoTClassifier, decisions: DecisionOptions, specs: Sequence[str] = (),
                    allow_outside: bool = False, ignore_unknown: bool = False) -> CoTClassifier:
    """The classifier with the decisions asked for, fitted on their data; errors name the option.

    ``specs``: models whose input kinds the decision data must suit (checked before encoding);
    ``ignore_unknown``: skip decision data whose label is not a class (else an error).
    """
    d = decisions

    def labelled(c: CoTClassifier, paths: Sequence[str], flag: str) -> list[Sample]:
        return labelled_samples(c.system, paths, flag, specs, allow_outside=allow_outside, ignore_unknown=ignore_unknown)[0]

    steps: list[tuple[str, Callable[[CoTClassifier], CoTClassifier]]] = []
    if d.fit_score != "log-rule-support":
        steps.append(("--fit-score", lambda c: c.with_fit_score(FIT_SCORES[d.fit_score])))
    if d.abstain is not None:
        threshold = d.abstain
        steps.append(("--abstain", lambda c: c.with_abstention(threshold)))
    elif d.abstain_target is not None:
        steps.append((f"--abstain-data {' '.join(d.abstain_data)}", lambda c: c.with_abstention(
            target=d.abstain_target, data=labelled(c, d.abstain_data, "--abstain-data"))))
    if d.conformal is not None:
        alpha = d.conformal
        steps.append((f"--conformal {alpha:g} --conformal-data {' '.join(d.conformal_data)}",
                      lambda c: c.with_conformal(alpha, labelled(c, d.conformal_data, "--conformal-data"),
                                                 d.conformal_score or "lac")))
    if d.multi_label and d.threshold is not None:
        multi = d.threshold
        steps.append(("--threshold", lambda c: c.with_multilabel(multi)))
    elif d.multi_label and d.threshold_data:
        steps.append((f"--threshold-data {' '.join(d.threshold_data)}", lambda c: c.with_multilabel(
            data=any_samples(d.threshold_data, "--threshold-data", allow_outside))))
    for flag, step in steps:
        try:
            clf = step(clf)
        except InputError as exc:
            raise type(exc)(f"{flag}: {exc}") from exc
    return clf


__all__ = ["apply_decisions", "build_classifier", "check_calibration", "check_examples", "learns_from_data", "with_examples"]

"""Evaluate methods (and models) on labelled data: one request in, the reports with their provenance out.

Each :class:`~cotembed.evaluation._evaluate.EvalReport` of the result already records how it was
made (system path and fingerprint, model key, temperature, probabilities, every method's parameters
as scored, seeds, examples and transduction, calibration data), so nothing is patched afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotembed._classifier import CoTClassifier
from cotembed._embeddings import EmbeddingSet
from cotembed.errors import InputError
from cotembed.evaluation._evaluate import EvalReport
from cotembed.runs._assembly import apply_decisions, build_classifier, check_calibration, check_examples, learns_from_data
from cotembed.runs._inputs import any_samples, labelled_samples
from cotembed.runs._options import DecisionOptions, ExamplesOptions, MethodSettings, ModelOptions
from cotembed.runs._provenance import Provenance
from cotembed.runs._resources import RunResources


@dataclass(frozen=True, slots=True)
class PageOptions:
    """What the HTML page shows besides the metrics: a seeded sample of misclassified inputs.

    Parameters
    ----------
    max_examples : int
        Misclassified inputs shown per method.
    seed : int
        Seed of that sample.
    thumb_px : int
        Thumbnail size in pixels.
    """

    max_examples: int = 24
    seed: int = 0
    thumb_px: int = 96


@dataclass(frozen=True, slots=True)
class EvalRequest:
    """Which methods and models to evaluate on which labelled data.

    Parameters
    ----------
    system : str
        Path of the system file.
    data : tuple of str
        Labelled ImageFolders or manifests (only read).
    embeddings : str or None
        A labelled Parquet dataset written by ``cotembed embed``, instead of ``data``.
    models : tuple of str
        Models to compare, one report each (empty: ``model.spec``; with ``embeddings``, the
        dataset's own model).
    model : ModelOptions
        The model options shared by every model (temperature, cache, batch size, ...).
    methods : tuple of str
        Methods to compare (empty: ``baseline, cot, hybrid``).
    settings, decisions, examples : MethodSettings, DecisionOptions, ExamplesOptions
        Method parameters and calibration data; abstention and conformal sets (reported per
        method); few-shot examples and transduction.
    ignore_unknown : bool
        Skip inputs whose label is not a class of the system (else they are an error).
    open_set, open_set_seed : int or None, int
        Also hold that many classes (seeded) out and report how the fit score tells their inputs apart.
    figures : bool
        Compute the reliability and accuracy/coverage figures' data (``eval --plot``).
    page : PageOptions or None
        Also compute each model's section of the HTML page.

    Examples
    --------
    >>> from cotembed.runs import EvalRequest, evaluate_run
    >>> result = evaluate_run(EvalRequest("examples/critters/system.yaml", (".cotembed-data/critters-hard",),
    ...                                   methods=("baseline", "cot")))                                       # doctest: +SKIP
    >>> result.reports[0].methods["cot"].acc1, result.reports[0].system["hash"]                              # doctest: +SKIP
    """

    system: str
    data: tuple[str, ...] = ()
    embeddings: str | None = None
    models: tuple[str, ...] = ()
    model: ModelOptions = field(default_factory=ModelOptions)
    methods: tuple[str, ...] = ()
    settings: MethodSettings = field(default_factory=MethodSettings)
    decisions: DecisionOptions = field(default_factory=DecisionOptions)
    examples: ExamplesOptions = field(default_factory=ExamplesOptions)
    ignore_unknown: bool = False
    open_set: int | None = None
    open_set_seed: int = 0
    figures: bool = False
    page: PageOptions | None = None

    @property
    def methods_in_use(self) -> tuple[str, ...]:
        from cotembed.scoring import DEFAULT_EVAL_METHODS

        return self.methods or tuple(DEFAULT_EVAL_METHODS)

    @property
    def specs(self) -> list[str]:
        """The models to evaluate, each once, in order."""
        return list(dict.fromkeys(self.models or (self.model.spec,)))

    def check(self) -> None:
        """What needs no file and no model (messages name the command line's flags)."""
        check_calibration(self.settings, self.methods_in_use)
        self.decisions.check("eval")

    def check_multilabel(self) -> None:
        """With ``decisions.multi_label``: conformal sets, abstention and the open set are single-label
        decisions, and the report is one model's."""
        given = [flag for flag, value in (("--open-set", self.open_set), ("--conformal", self.decisions.conformal),
                                          ("--abstain", self.decisions.abstain),
                                          ("--abstain-target", self.decisions.abstain_target)) if value is not None]
        if given or len(self.specs) > 1:
            raise InputError(f"--multi-label: {', '.join(given) or 'several --model'} not supported with it "
                             "(sets, abstention and the open set are single-label decisions)")

    @property
    def wants_sections(self) -> bool:
        """Whether the reports carry anything besides accuracy and ECE."""
        return self.decisions.has_sections or self.open_set is not None or self.figures


@dataclass(frozen=True, slots=True)
class EvalResult:
    """One report per model, in the request's order; ``figures``: the first model's figure data
    (``figures`` asked for); ``page_sections``: each model's page section (``page`` asked for)."""

    reports: tuple[EvalReport, ...]
    methods: tuple[str, ...]
    figures: Mapping[str, Any] | None = None
    page_sections: tuple[tuple[EvalReport, dict[str, Any]], ...] = ()
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No input failed and every model had inputs."""
        return not any(r.errors for r in self.reports) and all(r.n_inputs for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed eval --format json`` (without the written files' entries)."""
        if len(self.reports) == 1:
            return self.reports[0].to_dict()
        return {"models": [r.to_dict() for r in self.reports]}


def evaluate_run(request: EvalRequest) -> EvalResult:
    """Evaluate every method of the request on its data, once per model.

    Parameters
    ----------
    request : EvalRequest
        Methods, models, data and decisions.

    Returns
    -------
    EvalResult
        One report per model; ``to_dict()`` is ``eval --format json``.

    Bad input (labels that are not classes, unlabelled data, a model that cannot take the
    inputs) raises :class:`~cotembed.errors.InputError` before any model loads; an input that
    cannot be read is an entry of the report's ``errors``.
    """
    from cotembed.encoders import parse_spec
    from cotembed.system import System

    request.check()
    methods = request.methods_in_use
    specs = request.specs
    for spec in specs:
        parse_spec(spec)
    system = System.load(request.system)
    if bool(request.data) == bool(request.embeddings):
        what = "give DATA or --embeddings DIR" + (", not both" if request.data else "")
        raise InputError(f"eval: {what} (see `cotembed eval --help`)")
    if request.embeddings and (request.page is not None or len(specs) > 1):
        raise InputError("--embeddings: one model's embeddings, so one --model and no --html")
    check_examples(request.examples, methods)
    model = request.model
    samples, skipped = (([], []) if request.embeddings else
                        labelled_samples(system, request.data, "DATA", specs, allow_outside=model.allow_outside_paths,
                                         ignore_unknown=request.ignore_unknown))
    reports: list[EvalReport] = []
    sections: list[tuple[EvalReport, dict[str, Any]]] = []
    notices: list[str] = []
    with RunResources(model) as res:

        def classifier(spec: str, inputs: Sequence[Any]) -> CoTClassifier:
            return build_classifier(res, system, spec, methods[0], model=model, settings=request.settings,
                                    examples=request.examples, probabilities=request.decisions.probabilities,
                                    methods=methods, inputs=inputs, notices=notices)

        for spec in specs:
            if request.embeddings:
                from cotembed.evaluation._evaluate import evaluate
                from cotembed.runs._stored import resolve_stored_labels, stored_embeddings

                stored, spec = stored_embeddings(request.embeddings, res, request.models[0] if request.models else None, notices)
                clf = classifier(spec, [])
                stored_set = resolve_stored_labels(stored, system, request.ignore_unknown)
                report = evaluate(clf.scorer_for(methods), stored_set, methods)
            else:
                clf = classifier(spec, samples)
                if request.page is not None:
                    report, section = _with_page_section(clf, samples, skipped, methods, request.page)
                    sections.append((report, section))
                else:
                    report = clf.evaluate(samples, methods, skipped)
            _record_provenance(report, clf, request, methods, notices)
            if request.wants_sections:
                data = stored_set if request.embeddings else clf.labelled_embedding_set(samples, skipped)
                report.extras.update(_sections(clf, data, methods, request))
            reports.append(report)
    figures = [r.extras.pop("figures") for r in reports if "figures" in r.extras]
    return EvalResult(tuple(reports), methods, figures[0] if figures else None, tuple(sections), tuple(notices))


def _record_provenance(report: EvalReport, clf: CoTClassifier, request: EvalRequest, methods: Sequence[str],
                       notices: list[str]) -> None:
    """The system's path, examples and transduction where used, and the calibration data of the methods that learn."""
    from cotembed._examples import provenance as examples_provenance
    from cotembed.scoring import get_method

    if request.examples.examples or request.examples.transductive:  # recorded where they were used
        extra = examples_provenance(clf, report.method_options)
        notices.extend(f"cotembed: {note}" for note in extra.get("notes", ()))
        report.method_options.update(extra)
    report.system["path"] = request.system
    if request.settings.calibrate:
        for name in methods:
            method = get_method(name)
            if learns_from_data(type(method)):
                report.method_options[f"{method.option_prefix}calibration_data"] = list(request.settings.calibrate)


def _with_page_section(clf: CoTClassifier, samples: Sequence[Any], skipped: Sequence[Any], methods: Sequence[str],
                       page: PageOptions) -> tuple[EvalReport, dict[str, Any]]:
    """The evaluation, keeping the embeddings long enough to pick and explain misclassified inputs."""
    from cotembed.evaluation._evaluate import evaluate
    from cotembed.evaluation._probabilities import probability_figures
    from cotembed.reporting._html import report_section

    data = clf.labelled_embedding_set(samples, skipped)
    # With the option prompts too, a baseline's mistakes are explained question by question.
    scorer = clf.scorer_for(tuple(dict.fromkeys((*methods, "cot"))))
    report = evaluate(scorer, data, methods)
    section = report_section(report, scorer, data, max_examples=page.max_examples, seed=page.seed, thumb_px=page.thumb_px,
                             max_pixels=clf.max_pixels)
    section["probability_figures"] = probability_figures(clf, data, methods)
    return report, section


def _sections(clf: CoTClassifier, data: EmbeddingSet, methods: Sequence[str], request: EvalRequest) -> dict[str, Any]:
    """Per method: abstention, conformal sets and the open set; the figures' data when asked for."""
    from cotembed.evaluation import _probabilities as ev

    out: dict[str, Any] = {}
    decided = apply_decisions(clf, request.decisions, (), request.model.allow_outside_paths, request.ignore_unknown)
    per_method: dict[str, dict[str, Any]] = {}
    for method in methods:
        found: dict[str, Any] = {}
        one = decided.using(method)
        if one.decisions.abstention is not None or one.decisions.conformal is not None:
            scored, labels = ev.scored_data(one, data, method)
            if one.decisions.abstention is not None:
                found["abstention"] = ev.abstention_section(scored, labels, one)
            if one.decisions.conformal is not None:
                found["conformal"] = ev.conformal_section(scored, labels, one)
        if request.open_set is not None:
            try:
                found["open_set"] = ev.open_set_section(one, data, method, request.open_set, request.open_set_seed)
            except InputError as exc:
                raise type(exc)(f"--open-set {request.open_set}: {exc}") from exc
        if found:
            per_method[method] = found
    for name in ("abstention", "conformal", "open_set"):
        values = {m: s[name] for m, s in per_method.items() if name in s}
        if values:
            out[name] = values
    if request.figures:
        out["figures"] = ev.probability_figures(decided, data, methods)
    return dict(ev.json_ready(out))


@dataclass(frozen=True, slots=True)
class MultiLabelResult:
    """``eval`` with multi-label decisions: per-class precision, recall, F1 and mAP on data whose
    labels name one or several classes, with the run's provenance."""

    provenance: Provenance
    multi_label: Mapping[str, Any]
    n_inputs: int
    errors: tuple[dict[str, str], ...]
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed eval --multi-label --format json``; also what
        :func:`cotembed.reporting._multilabel.render_multilabel_report` renders as the page."""
        return {**self.provenance.run_info(), "multi_label": dict(self.multi_label), "n_inputs": self.n_inputs,
                "errors": list(self.errors)}

    @property
    def title(self) -> str:
        """The figure's title: the system and the model."""
        return f"{self.provenance.system.name or 'system'} on {self.provenance.model}"

    def rows(self) -> list[dict[str, Any]]:
        """One row per class (``eval --multi-label --output`` as CSV or JSON lines): the run's model,
        system fingerprint and score, then the class's threshold, support, precision, recall, F1 and AP."""
        from cotembed.evaluation._probabilities import multilabel_rows
        from cotembed.scoring._decisions import MULTILABEL_SCORE

        run = {"model": self.provenance.model, "system": self.provenance.system.hash, "score": MULTILABEL_SCORE}
        return [{**run, **row} for row in multilabel_rows(self.multi_label)]


def evaluate_multilabel(request: EvalRequest) -> MultiLabelResult:
    """Evaluate the first method of the request with its multi-label thresholds (``decisions.multi_label``).

    Parameters
    ----------
    request : EvalRequest
        With ``decisions.multi_label`` and a threshold or threshold data.

    The page and the per-class figure are drawn from the result alone (``to_dict()``, ``multi_label``),
    so ``page`` and ``figures`` compute nothing more; the open set, abstention, conformal sets and
    several models are refused (:meth:`EvalRequest.check_multilabel`).
    """
    from cotembed.evaluation import _probabilities as ev
    from cotembed.system import System

    request.check()
    request.check_multilabel()
    method = request.methods_in_use[0]
    system = System.load(request.system)
    notices: list[str] = []
    with RunResources(request.model) as res:
        clf = build_classifier(res, system, request.specs[0], method, model=request.model, settings=request.settings,
                               examples=request.examples, probabilities=request.decisions.probabilities, notices=notices)
        clf = apply_decisions(clf, request.decisions, (), request.model.allow_outside_paths, request.ignore_unknown)
        data = clf.embedding_set(any_samples(request.data, "DATA", request.model.allow_outside_paths))
        if not len(data):
            raise InputError(f"{', '.join(request.data)}: no input could be used")
        section = ev.json_ready(ev.multilabel_section(clf, data))
        provenance = Provenance.of(clf, method, request.system)
    return MultiLabelResult(provenance, section, len(data), tuple(e.to_dict() for e in data.errors), tuple(notices))


__all__ = ["EvalRequest", "EvalResult", "MultiLabelResult", "PageOptions", "evaluate_multilabel", "evaluate_run"]

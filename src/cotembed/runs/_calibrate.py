"""Fit a system's temperature (and group weights) so its CoT posterior means what it says, and write
the calibrated system: one request in, the fit and its before/after figures out.

The posterior is the product-of-groups likelihood (:mod:`cotembed.scoring._calibration`); the fit
minimises its NLL on labelled data. The figures are given on the fitting data and on held-out
``eval`` data (the ones to trust), with the sum-normalised CoT for reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cotembed._embeddings import EmbeddingSet
from cotembed.encoders._base import Encoder
from cotembed.errors import InputError
from cotembed.runs._inputs import labelled_samples
from cotembed.runs._options import ModelOptions
from cotembed.runs._resources import RunResources
from cotembed.system import System

PER_GROUP: dict[str, bool | None] = {"auto": None, "yes": True, "no": False}
"""``per_group`` of a request -> what :func:`~cotembed.scoring._calibration.fit_posterior` takes."""


@dataclass(frozen=True, slots=True)
class CalibrateRequest:
    """The system to calibrate, the labelled data to fit on, and where to write the result.

    Parameters
    ----------
    system : str
        Path of the system file.
    out : str
        Where to write the calibrated system (.yaml or .yml; never an input).
    data : tuple of str
        Labelled folders or manifests to fit on.
    embeddings : str or None
        A labelled Parquet dataset written by ``cotembed embed``, instead of ``data``.
    eval : tuple of str
        Held-out labelled data for the before/after figures.
    per_group : {"auto", "yes", "no"}
        Fit per-group weights: only if they lower the NLL on held-out folds, always, never.
    seed : int
        Seed of the folds that decide ``per_group="auto"``.
    ignore_unknown : bool
        Skip inputs whose label is not a class of the system.
    model : ModelOptions
        The model and its options.
    model_given : bool
        False: with ``embeddings``, score with the model the dataset was written with.
    diagrams : bool
        Also compute the reliability diagrams before/after (``--plot``).

    Examples
    --------
    >>> from cotembed.runs import CalibrateRequest, calibrate
    >>> result = calibrate(CalibrateRequest("examples/critters/system.yaml", "calibrated.yaml",
    ...                                     (".cotembed-data/critters-easy",)))                   # doctest: +SKIP
    >>> result.fit["temperature_before"], result.fit["temperature"]                            # doctest: +SKIP
    """

    system: str
    out: str
    data: tuple[str, ...] = ()
    embeddings: str | None = None
    eval: tuple[str, ...] = ()
    per_group: Literal["auto", "yes", "no"] = "auto"
    seed: int = 0
    ignore_unknown: bool = False
    model: ModelOptions = field(default_factory=ModelOptions)
    model_given: bool = True
    diagrams: bool = False

    @property
    def fit_paths(self) -> tuple[list[str], str]:
        """The data fitted on, and the option that names it in messages."""
        return ([self.embeddings], "--embeddings") if self.embeddings else (list(self.data), "DATA")

    def check_out(self) -> Path:
        """``out`` is a YAML file that replaces no input."""
        out = Path(self.out)
        inputs = [Path(p).resolve() for p in (self.system, *self.fit_paths[0], *self.eval)]
        if out.resolve() in inputs or any(out.resolve().is_relative_to(p) for p in inputs if p.is_dir()):
            raise InputError(f"--out {out}: refusing to write over an input (the system or data); choose another file")
        if out.suffix.lower() not in (".yaml", ".yml"):
            raise InputError(f"--out {out}: write the calibrated system as .yaml or .yml")
        return out


@dataclass(frozen=True, slots=True)
class CalibrateResult:
    """The fit, the figures before/after per data set, the calibrated system (written to ``out``),
    and the inputs that could not be used."""

    system: Mapping[str, str]
    out: Mapping[str, str]
    model: str
    fit: Mapping[str, Any]
    evaluation: Mapping[str, Any]
    errors: tuple[dict[str, str], ...]
    calibrated: System
    diagrams: Mapping[str, Any] | None = None
    diagram_title: str = ""
    notices: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``cotembed calibrate --format json`` (without the plot's entry)."""
        return {"system": dict(self.system), "out": dict(self.out), "model": self.model, "fit": dict(self.fit),
                "evaluation": dict(self.evaluation), "errors": list(self.errors)}


def calibrate(request: CalibrateRequest) -> CalibrateResult:
    """Fit the request's system on its data and write the calibrated system to ``out`` (atomic, validated).

    Parameters
    ----------
    request : CalibrateRequest
        The system, the data, where to write.

    Returns
    -------
    CalibrateResult
        The fit and the figures before/after; ``to_dict()`` is ``calibrate --format json`` without ``plot``.
    """
    from cotembed._classifier import resolve_temperature
    from cotembed._embeddings import PromptBank
    from cotembed.authoring.induce import write_system
    from cotembed.scoring import Scorer, ScoringConfig
    from cotembed.scoring._calibration import GroupRules, fit_posterior, product_posterior, reliability
    from cotembed.scoring._methods import OPTIONS

    system = System.load(request.system)
    if bool(request.data) == bool(request.embeddings):
        what = "give DATA or --embeddings DIR" + (", not both" if request.data else "")
        raise InputError(f"calibrate: {what} (see `cotembed calibrate --help`)")
    fit_paths, fit_flag = request.fit_paths
    out = request.check_out()
    notices: list[str] = []
    with RunResources(request.model) as res:
        encoder = res.encoder(_model_spec(request, res))
        start_t = resolve_temperature(request.model.temperature, system, encoder)
        scorer = Scorer.build(system, PromptBank(encoder, res.cache, progress=not request.model.quiet).embed,
                              ScoringConfig(start_t), ("cot",))
        rules = GroupRules.from_compiled(scorer.compiled)
        sets = {"fit": _labelled(request, res, encoder, system, fit_paths, fit_flag, notices)}
        if request.eval:
            sets["eval"] = _labelled(request, res, encoder, system, list(request.eval), "--eval", notices)
        arrays = {k: (scorer.batch(d.embeddings)[OPTIONS], d.label_indices(scorer.class_names), scorer.scores(d.embeddings))
                  for k, d in sets.items()}
        sims, labels, _ = arrays["fit"]
        fit = fit_posterior(sims, labels, rules, start_t, per_group=PER_GROUP[request.per_group], seed=request.seed)
        model_key = encoder.model_key
    calibrated = system.with_temperature(fit.temperature)
    if fit.per_group:
        calibrated = calibrated.with_group_weights(fit.group_weights(rules.group_names))
    evaluation = {k: {"n_inputs": len(sets[k]), "metrics": _metrics(s, y, rules, start_t, fit, c)}
                  for k, (s, y, c) in arrays.items()}
    header = [f"Calibrated by `cotembed calibrate` from {request.system} [{system.fingerprint}]",
              f"data: {', '.join(fit_paths)} ({len(sets['fit'])} labelled inputs); model: {model_key}",
              f"temperature {start_t:g} -> {fit.temperature:g} (NLL of the product posterior "
              f"{fit.nll_before:.4f} -> {fit.nll_after:.4f}); group weights "
              + ("fitted" if fit.per_group else "kept")]
    write_system(calibrated, out, header)
    diagrams = None
    if request.diagrams:
        shown = arrays.get("eval", arrays["fit"])
        diagrams = {"before": reliability(product_posterior(shown[0], rules, start_t), shown[1]).to_dict(),
                    "calibrated": reliability(product_posterior(shown[0], rules, fit.temperature, fit.weights), shown[1]).to_dict()}
    return CalibrateResult(
        system={"path": request.system, "hash": system.fingerprint},
        out={"path": str(out), "hash": calibrated.fingerprint},
        model=model_key,
        fit={"temperature_before": start_t, "temperature": fit.temperature, "per_group": fit.per_group,
             "group_weights": fit.group_weights(rules.group_names), "nll_before": fit.nll_before,
             "nll_after": fit.nll_after, "notes": fit.notes},
        evaluation=evaluation,
        errors=tuple(e.to_dict() for d in sets.values() for e in d.errors),
        calibrated=calibrated,
        diagrams=diagrams,
        diagram_title=f"{system.name}: {'eval' if 'eval' in arrays else 'fit'} data",
        notices=tuple(notices),
    )


def _model_spec(request: CalibrateRequest, res: RunResources) -> str:
    """The model to load: the request's, or with ``embeddings`` and no model given the dataset's own;
    a dataset of another model key is refused (both keys named)."""
    from cotembed._parquet import check_model, read_info_or_fail

    if not request.embeddings:
        return request.model.spec
    info = read_info_or_fail(request.embeddings)
    spec = request.model.spec if request.model_given else (info.model_spec or info.model_key)
    check_model(info, request.embeddings, res.encoder(spec).model_key)
    return str(spec)


def _labelled(request: CalibrateRequest, res: RunResources, encoder: Encoder, system: System, paths: Sequence[str],
              flag: str, notices: list[str]) -> EmbeddingSet:
    """Labelled inputs of ``paths`` as an embedding set (through the cache), or the stored dataset."""
    from cotembed.runs._stored import labelled_stored_set

    model = request.model
    if flag == "--embeddings":
        data = labelled_stored_set(paths[0], encoder.model_key, system, request.ignore_unknown,
                                   None if model.quiet else notices)
    else:
        samples, skipped = labelled_samples(system, paths, flag, [model.spec], allow_outside=model.allow_outside_paths,
                                            ignore_unknown=request.ignore_unknown)
        data = EmbeddingSet.from_samples(samples, encoder, res.cache, model.batch_size, not model.quiet, skipped,
                                         desc=f"calibrate: {flag}", max_pixels=model.max_pixels)
    if not len(data):
        raise InputError(f"{flag} {', '.join(paths)}: no input could be used: "
                         + "; ".join(f"{e.source}: {e.error}" for e in data.errors[:5]))
    return data


def _metrics(sims: Any, labels: Any, rules: Any, before_t: float, fit: Any, cot_scores: Any) -> dict[str, Any]:
    from cotembed.scoring._calibration import calibration_metrics, product_posterior
    from cotembed.scoring._functions import sum_normalize

    return {
        "cot (sum-normalised)": calibration_metrics(sum_normalize(cot_scores), labels),
        "product, before": calibration_metrics(product_posterior(sims, rules, before_t), labels),
        "product, calibrated": calibration_metrics(product_posterior(sims, rules, fit.temperature, fit.weights), labels),
    }


__all__ = ["PER_GROUP", "CalibrateRequest", "CalibrateResult", "calibrate"]

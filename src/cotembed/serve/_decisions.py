"""/v1/classify's probability and decision fields: what a request may ask for, and the rows' extra keys.

With a registered system, every row carries the predicted class's ``fit_score``
(absolute: see :mod:`cotembed.scoring._posteriors`) and ``abstained``; a request may
ask for the old ``normalised`` probabilities, abstention below a fit-score
threshold, conformal sets (the LAC threshold on ``-log p`` that ``cotembed classify
--conformal ALPHA --conformal-data DATA --format json`` reports under
``decisions.conformal.threshold``: the guarantee holds for the data it was
calibrated on), or ``conformal: true`` for the sets the service calibrated at start
(``cotembed serve --conformal ALPHA --conformal-data NAME=DATA``), and multi-label
classes (rule support at or above a threshold). With ``labels``, a row's fit score is
that of the predicted class among the allowed ones.
Values are checked by pydantic (422 naming the field).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from cotembed.scoring import Scorer
from cotembed.scoring._conformal import SplitConformal
from cotembed.scoring._decisions import conformal_sets
from cotembed.scoring._posteriors import Scored, check_fit_score, fit_scores
from cotembed.serve._errors import invalid
from cotembed.serve._scoring_batch import ScoreBatcher
from cotembed.serve._startup import CONFORMAL_METHOD

DECISION_FIELDS = ("abstain", "conformal_threshold", "multi_label_threshold")


class DecisionFields(BaseModel):
    """Fields of a classify request about probabilities and decisions (system classification only)."""

    probabilities: Literal["calibrated", "normalised"] = Field(
        "calibrated", description="calibrated: the method's posterior (default); normalised: scores rescaled to sum to 1")
    fit_score: Literal["log rule support", "rule support", "energy"] = Field(
        "log rule support", description="the absolute fit score each row carries (and abstain compares with): log rule "
                                        "support (default) or rule support of the predicted class, or energy (the input's "
                                        "log-sum-exp of every allowed class's log rule support)")
    abstain: float | None = Field(None, allow_inf_nan=False,
                                  description="abstain (prediction null, abstained true, reason) when the fit score is below this")
    conformal_threshold: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="LAC conformal threshold on -log p (as `cotembed classify --conformal` reports it): each row gets "
                    "'set', the classes with -log p at or below it")
    conformal: bool = Field(
        False, description="each row gets 'set' from the conformal calibration the service holds for this system and model "
                           "(cotembed serve --conformal ALPHA --conformal-data NAME=DATA; method cot); the answer carries its alpha")
    multi_label_threshold: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False,
        description="each row gets 'labels': every class whose rule support reaches this threshold")

    def decisions_asked(self) -> list[str]:
        return [name for name in DECISION_FIELDS if getattr(self, name) is not None]


def check_use(body: DecisionFields, with_system: bool, restricted: bool) -> None:
    """Decisions need a system's questions, and a full set of its classes."""
    asked = body.decisions_asked() + (["conformal"] if body.conformal else [])
    if asked and not with_system:
        raise invalid(f"{asked[0]} needs a registered 'system' (fit scores come from its questions)", asked[0])
    if asked and restricted:
        raise invalid(f"{asked[0]} cannot be combined with 'labels': thresholds hold for all of the system's classes", asked[0])


def conformal_predictor(conformal: Mapping[str, SplitConformal], model_key: str, method: str, body: DecisionFields,
                        transductive: bool) -> SplitConformal | None:
    """The predictor a ``conformal: true`` request uses (None when not asked); the guarantee holds only for the
    posterior it was calibrated on, so another method, probability mode or a refined posterior is a 422."""
    if not body.conformal:
        return None
    found = conformal.get(model_key)
    if found is None:
        raise invalid(f"conformal: the service holds no conformal calibration of this system for model {model_key}; start it "
                      "with --conformal ALPHA --conformal-data NAME=DATA, or pass conformal_threshold", "conformal")
    if body.conformal_threshold is not None:
        raise invalid("conformal: give conformal or conformal_threshold, not both", "conformal")
    why = (f"method {method!r}" if method != CONFORMAL_METHOD else "probabilities 'normalised'"
           if body.probabilities != "calibrated" else "transductive refinement" if transductive else None)
    if why is not None:
        raise invalid(f"conformal: the sets are calibrated on method {CONFORMAL_METHOD}'s calibrated posterior, "
                      f"not with {why}", "conformal")
    return found


def restricted_fit(scorer: Scorer, x: np.ndarray, columns: Sequence[int], probabilities: np.ndarray,
                   fit_score: str) -> np.ndarray | None:
    """(B,) the fit score of each row's predicted class among ``columns`` (the allowed labels), whose renormalised
    ``probabilities`` these are; None when the method does not ask the system's questions."""
    if "options" not in scorer.prompt_vectors:
        return None
    predicted = np.asarray(columns, dtype=np.intp)[np.argmax(probabilities, axis=1)]
    fit = np.empty(len(x))
    for rows, batch in scorer.batches(np.atleast_2d(x), scorer.methods):
        fit[rows] = fit_scores(batch, predicted[rows], fit_score, columns)
    return fit


async def score(batcher: ScoreBatcher, scorer: Scorer, x: np.ndarray, method: str, body: DecisionFields) -> Scored:
    """Scores, probabilities (in the asked mode) and fit scores of a request's embeddings, computed with those of
    concurrent requests that share the scorer (:class:`~cotembed.serve._scoring_batch.ScoreBatcher`)."""
    from dataclasses import replace

    if body.probabilities != scorer.config.probabilities:
        scorer = Scorer(scorer.system, scorer.prompt_vectors, replace(scorer.config, probabilities=body.probabilities),
                        [scorer.method(m) for m in scorer.methods])
    has_options = "options" in scorer.prompt_vectors
    if body.decisions_asked() and not has_options:
        raise invalid(f"{body.decisions_asked()[0]}: method {method!r} does not ask the system's questions; "
                      "use cot, hybrid, cot-log or adaptive", body.decisions_asked()[0])
    return await batcher.score(scorer, x, method, check_fit_score(body.fit_score), body.multi_label_threshold is not None)


def annotate(rows: list[dict[str, Any]], scored: Scored, names: Sequence[str], body: DecisionFields,
             restricted: bool, predictor: SplitConformal | None = None) -> dict[str, Any]:
    """Add fit score, abstention, set and labels to each row (in place); returns the settings for the payload.
    With ``restricted`` (labels), ``scored.fit`` holds the fit of the predicted allowed label."""
    sets = conformal_sets(predictor, scored.probabilities) if predictor is not None else None
    for i, row in enumerate(rows):
        if not restricted:
            best = int(scored.predicted[i])
            row["prediction"], row["score"] = names[best], float(scored.probabilities[i, best])
        fit = None if scored.fit is None else float(scored.fit[i])
        row["fit_score"] = fit
        row["abstained"] = bool(body.abstain is not None and fit is not None and fit < body.abstain)
        if row["abstained"]:
            row["candidate"], row["prediction"] = row["prediction"], None
            row["reason"] = (f"{body.fit_score} {fit:.4g} is below the threshold {body.abstain:.4g}: "
                             "no class fits well enough")
        if body.conformal_threshold is not None:
            p = scored.probabilities[i]
            order = np.argsort(-p, kind="stable")
            with np.errstate(divide="ignore"):
                nonconformity = -np.log(p)
            row["set"] = [names[n] for n in order if nonconformity[n] <= body.conformal_threshold]
        if sets is not None:
            order = np.argsort(-scored.probabilities[i], kind="stable")
            row["set"] = [names[n] for n in order if sets[i, n]]
        if body.multi_label_threshold is not None and scored.support is not None:
            support = scored.support[i]
            picked = [n for n in np.argsort(-support, kind="stable") if support[n] >= body.multi_label_threshold]
            row["labels"] = [{"label": names[n], "score": float(support[n])} for n in picked]
    settings: dict[str, Any] = {"probabilities": body.probabilities, "fit_score": body.fit_score}
    for name in DECISION_FIELDS:
        value = getattr(body, name)
        if value is not None and math.isfinite(value):
            settings[name] = value
    if predictor is not None:
        settings["conformal"] = {"alpha": predictor.alpha, "score": predictor.score, "threshold": predictor.threshold,
                                 "n_calibration": predictor.n_calibration, "method": CONFORMAL_METHOD}
    return settings


__all__ = ["DECISION_FIELDS", "DecisionFields", "annotate", "check_use", "conformal_predictor", "restricted_fit", "score"]

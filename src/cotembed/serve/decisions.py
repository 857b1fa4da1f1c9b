"""/v1/classify's probability and decision fields: what a request may ask for, and the rows' extra keys.

With a registered system, every row carries the predicted class's ``fit_score``
(absolute: see :mod:`cotembed.scoring.posteriors`) and ``abstained``; a request may
ask for the old ``normalised`` probabilities, abstention below a fit-score
threshold, conformal sets (the LAC threshold on ``-log p`` that ``cotembed classify
--conformal ALPHA --conformal-data DATA --format json`` reports under
``decisions.conformal.threshold``: the guarantee holds for the data it was
calibrated on) and multi-label classes (rule support at or above a threshold).
Values are checked by pydantic (422 naming the field).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from cotembed.scoring import Scorer
from cotembed.scoring.posteriors import Scored, score_embeddings
from cotembed.serve.errors import invalid

DECISION_FIELDS = ("abstain", "conformal_threshold", "multi_label_threshold")


class DecisionFields(BaseModel):
    """Fields of a classify request about probabilities and decisions (system classification only)."""

    probabilities: Literal["calibrated", "normalised"] = Field(
        "calibrated", description="calibrated: the method's posterior (default); normalised: scores rescaled to sum to 1")
    fit_score: Literal["log rule support", "rule support"] = Field(
        "log rule support", description="the absolute fit score each row carries (and abstain compares with)")
    abstain: float | None = Field(None, allow_inf_nan=False,
                                  description="abstain (prediction null, abstained true, reason) when the fit score is below this")
    conformal_threshold: float | None = Field(
        None, ge=0, allow_inf_nan=False,
        description="LAC conformal threshold on -log p (as `cotembed classify --conformal` reports it): each row gets "
                    "'set', the classes with -log p at or below it")
    multi_label_threshold: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False,
        description="each row gets 'labels': every class whose rule support reaches this threshold")

    def decisions_asked(self) -> list[str]:
        return [name for name in DECISION_FIELDS if getattr(self, name) is not None]


def check_use(body: DecisionFields, with_system: bool, restricted: bool) -> None:
    """Decisions need a system's questions, and a full set of its classes."""
    asked = body.decisions_asked()
    if asked and not with_system:
        raise invalid(f"{asked[0]} needs a registered 'system' (fit scores come from its questions)", asked[0])
    if asked and restricted:
        raise invalid(f"{asked[0]} cannot be combined with 'labels': thresholds hold for all of the system's classes", asked[0])


def score(scorer: Scorer, x: np.ndarray, method: str, body: DecisionFields) -> Scored:
    """Scores, probabilities (in the asked mode) and fit scores of a request's embeddings."""
    from dataclasses import replace

    if body.probabilities != scorer.config.probabilities:
        scorer = Scorer(scorer.system, scorer.prompt_vectors, replace(scorer.config, probabilities=body.probabilities),
                        [scorer.method(m) for m in scorer.methods])
    has_options = "options" in scorer.prompt_vectors
    if body.decisions_asked() and not has_options:
        raise invalid(f"{body.decisions_asked()[0]}: method {method!r} does not ask the system's questions; "
                      "use cot, hybrid, cot-log or adaptive", body.decisions_asked()[0])
    return score_embeddings(scorer, x, method, body.fit_score, support=body.multi_label_threshold is not None)


def annotate(rows: list[dict[str, Any]], scored: Scored, names: Sequence[str], body: DecisionFields,
             restricted: bool) -> dict[str, Any]:
    """Add fit score, abstention, set and labels to each row (in place); returns the settings for the payload."""
    for i, row in enumerate(rows):
        if not restricted:
            best = int(scored.predicted[i])
            row["prediction"], row["score"] = names[best], float(scored.probabilities[i, best])
        fit = None if scored.fit is None or restricted else float(scored.fit[i])
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
        if body.multi_label_threshold is not None and scored.support is not None:
            support = scored.support[i]
            picked = [n for n in np.argsort(-support, kind="stable") if support[n] >= body.multi_label_threshold]
            row["labels"] = [{"label": names[n], "score": float(support[n])} for n in picked]
    settings: dict[str, Any] = {"probabilities": body.probabilities, "fit_score": body.fit_score}
    for name in DECISION_FIELDS:
        value = getattr(body, name)
        if value is not None and math.isfinite(value):
            settings[name] = value
    return settings


__all__ = ["DECISION_FIELDS", "DecisionFields", "annotate", "check_use", "score"]

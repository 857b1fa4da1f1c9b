"""The parts every run request shares: the model and cache, the method's parameters, the decisions
on top of the probabilities, and the few-shot examples.

Each part is a frozen, slotted dataclass, so a request is a value: built once (by the CLI's parser
or by hand in Python), compared, logged, never patched halfway through a run. The checks that need
no model (flags that need each other) live here, so a request built in Python fails the same way,
with the same message, as the command line does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cotembed.encoders import DEFAULT_MODEL
from cotembed.errors import InputError
from cotembed.scoring._posteriors import DEFAULT_PROBABILITIES

FIT_SCORES: dict[str, str] = {"log-rule-support": "log rule support", "rule-support": "rule support", "energy": "energy"}
"""``fit_score`` values of a request -> the fit-score names of :meth:`CoTClassifier.with_fit_score`."""

DecisionVerb = Literal["classify", "eval", "explain"]


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Where embeddings are kept between runs.

    Parameters
    ----------
    path : str or None
        The SQLite cache file (None: ``$COTEMBED_CACHE``, else ``~/.cache/cotembed/embeddings.sqlite``).
    enabled : bool
        False encodes everything and stores nothing.
    recover : bool
        Move a corrupt cache file aside and start a new one instead of failing.
    """

    path: str | None = None
    enabled: bool = True
    recover: bool = False


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """The model and how inputs reach it.

    Parameters
    ----------
    spec : str
        Model spec, e.g. ``critters`` or ``hf:openai/clip-vit-base-patch32``.
    temperature : float or None
        Softmax temperature (None: the system's, else the model's logit scale).
    hybrid_weight : float
        Weight of the class-name term of method ``hybrid``.
    batch_size, device : int or None, str or None
        Inputs per model call and torch device (None: the encoder's own choice).
    max_pixels : int or None
        Images above this many pixels are reported as errors (None: the pipeline's cap).
    fast_decode : bool
        Decode JPEGs at a reduced scale (pixels differ from the reference preprocessing).
    allow_outside_paths : bool
        Let manifests name files outside their own folder.
    quiet : bool
        No progress bars and no notices about skipped calibration inputs.
    cache : CacheOptions
        The embedding cache.
    """

    spec: str = DEFAULT_MODEL
    temperature: float | None = None
    hybrid_weight: float = 1.0
    batch_size: int | None = None
    device: str | None = None
    max_pixels: int | None = None
    fast_decode: bool = False
    allow_outside_paths: bool = False
    quiet: bool = False
    cache: CacheOptions = field(default_factory=CacheOptions)


@dataclass(frozen=True, slots=True)
class MethodSettings:
    """The declared parameters given to the methods, and the data they learn from.

    Parameters
    ----------
    options : Mapping[str, Any]
        Method parameters by option key (``adaptive_confidence``, ``templates``, ...); the methods
        declare and validate them, an unknown key is an error naming the accepted ones.
    calibrate : tuple of str
        Labelled data (folders, manifests) that methods which learn from data are fitted on.
    calibrate_without_labels : bool
        Ignore the labels of ``calibrate`` (estimate from agreement between questions).
    """

    options: Mapping[str, Any] = field(default_factory=dict)
    calibrate: tuple[str, ...] = ()
    calibrate_without_labels: bool = False

    def check(self) -> None:
        if self.calibrate_without_labels and not self.calibrate:
            raise InputError("--calibrate-without-labels needs --calibrate DATA")


@dataclass(frozen=True, slots=True)
class DecisionOptions:
    """Probabilities and the decisions taken on them: abstention, conformal sets, multi-label.

    Parameters
    ----------
    probabilities : str
        ``calibrated`` (each method's posterior) or ``normalised`` (scores rescaled to sum to 1).
    fit_score : str
        ``log-rule-support``, ``rule-support`` or ``energy``: the absolute fit score every prediction
        carries (``energy``: of the input, the log-sum-exp of every class's log rule support).
    abstain : float or None
        Abstain where the top class's fit score is below this threshold.
    abstain_target, abstain_data : str or None, tuple of str
        Or choose that threshold on labelled data for ``precision=P`` or ``coverage=C``.
    conformal, conformal_data, conformal_score : float or None, tuple of str, str or None
        Split-conformal sets holding the true class with probability >= 1 - alpha, calibrated on
        labelled data, with nonconformity score ``lac`` (default), ``aps`` or ``raps``.
    multi_label, threshold, threshold_data : bool, float or None, tuple of str
        Score every class on its own; one threshold, or one per class chosen on data.
    """

    probabilities: str = DEFAULT_PROBABILITIES
    fit_score: str = "log-rule-support"
    abstain: float | None = None
    abstain_target: str | None = None
    abstain_data: tuple[str, ...] = ()
    conformal: float | None = None
    conformal_data: tuple[str, ...] = ()
    conformal_score: str | None = None
    multi_label: bool = False
    threshold: float | None = None
    threshold_data: tuple[str, ...] = ()

    def check(self, verb: DecisionVerb) -> None:
        """Options that need each other, before any input is embedded (messages name the flags)."""
        pairs = [("--abstain-target", self.abstain_target is not None, "--abstain-data", bool(self.abstain_data)),
                 ("--conformal", self.conformal is not None, "--conformal-data", bool(self.conformal_data))]
        for flag, given, other, needed in pairs:
            if given != needed:
                raise InputError(f"{flag if given else other} needs {other if given else flag}")
        if self.abstain is not None and self.abstain_target is not None:
            raise InputError("--abstain THRESHOLD and --abstain-target: choose one")
        if self.conformal_score is not None and self.conformal is None:
            raise InputError("--conformal-score needs --conformal ALPHA")
        if (self.threshold is not None or self.threshold_data) and not self.multi_label:
            raise InputError(f"{'--threshold' if self.threshold is not None else '--threshold-data'} needs --multi-label")
        if self.threshold is not None and self.threshold_data:
            raise InputError("--threshold and --threshold-data: choose one")
        if verb == "classify" and self.multi_label and self.threshold is None and not self.threshold_data:
            raise InputError("--multi-label needs --threshold T or --threshold-data DATA")

    @property
    def has_sections(self) -> bool:
        """Whether an evaluation reports abstention or conformal sets besides accuracy."""
        return self.abstain is not None or self.abstain_target is not None or self.conformal is not None


@dataclass(frozen=True, slots=True)
class ExamplesOptions:
    """Data besides the system: labelled few-shot examples and the unlabelled batch.

    Parameters
    ----------
    examples : tuple of str
        Labelled examples (folders, manifests, ``.npz`` embedding sets) for prototype, gda and fused.
    ignore_unknown : bool
        Skip examples whose label is not a class of the system (else they are an error).
    transductive : bool
        Refine every method's posterior on the unlabelled batch being classified.
    """

    examples: tuple[str, ...] = ()
    ignore_unknown: bool = False
    transductive: bool = False


__all__ = ["FIT_SCORES", "CacheOptions", "DecisionOptions", "DecisionVerb", "ExamplesOptions", "MethodSettings", "ModelOptions"]

"""The method zoo: the zero-shot methods the article's CoT is measured against.

All of them score from one encoding pass of the inputs (only prompt texts differ),
so ``eval --methods baseline,ensemble,dclip,cot,cot-log,random-control`` compares
them on exactly the same embeddings:

- ``ensemble``: CLIP prompt ensembling. Each class is the re-normalised mean of
  its name filled into several templates (parameter ``templates``, else the
  system's own ``templates``, else ``DEFAULT_TEMPLATES``); T x N prompts.
- ``dclip``: classification by description (Menon & Vondrick, 2023). A class
  scores the plain mean cosine of the option prompts its rule accepts (every
  accepted prompt counts once, group weights are ignored); no softmax; Q prompts.
- ``cot-log``: the product of experts ``sum_g w_g log P_g(class)``, where
  ``P_g(class)`` is the probability mass of the class's options in group g.
  With one option per group and per class, ``log P_g = t * cos - log Z_g`` and
  ``log Z_g`` is shared by every class, so the ranking is that of the sum of the
  class's cosines: exactly ``dclip``'s when the weights are equal. They part
  when a rule accepts several options (``log`` of a sum of probabilities vs a
  mean of cosines that counts each accepted option once) and when group weights
  differ (``dclip`` ignores them).
- ``random-control``: the article's aggregation with the same questions, option
  counts and rules, but every option word replaced by a seeded random word
  (WaffleCLIP-style). It measures what ensembling Q prompts gives without the
  system's knowledge; ``cot`` minus it is the value of that knowledge. One run per
  seed (parameter ``random_seeds``); ``evaluate`` reports mean and spread.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from cotembed.errors import InputError
from cotembed.scoring._calibration import GroupRules, group_log_masses, log_posterior
from cotembed.scoring._functions import cot_scores, group_softmax, softmax
from cotembed.scoring._methods import OPTIONS, Batch, ScoringConfig, ScoringMethod
from cotembed.scoring._params import Param

if TYPE_CHECKING:
    from cotembed.system import CompiledSystem

ENSEMBLE = "ensemble"
"""Prompt set of the ensemble: every template filled with every class name, class-major (N x T)."""

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a drawing of a {}.",
    "an illustration of a {}.",
    "a rendering of a {}.",
    "a cartoon {}.",
    "a close-up photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "art of the {}.",
    "a {} in a video game.",
)
"""Name templates after CLIP's ImageNet set, trimmed to ones that suit any kind of picture."""

DEFAULT_RANDOM_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)

RANDOM_WORDS: tuple[str, ...] = tuple(
    """
    anchor apron attic bagel ballot bamboo banjo barrel basket battery beacon bench bicycle blanket
    bottle bracelet brick bridge broom bucket buckle button cabinet cable calendar camera candle
    canvas carpet castle catalog ceiling cello chair chalk chimney chisel clock closet coin collar
    compass cookie copper cork corner cotton cradle crayon cushion curtain dagger desk diary dial
    dinner doorbell drawer drum elbow engine envelope eraser fabric fence ferry fiddle folder fork
    fountain frame funnel furnace gadget garage garlic gate glove glue goblet guitar hammer hammock
    handle harbor harp helmet hinge hockey hook hotel invoice iron jacket jar jigsaw journal kettle
    keyboard kitchen knob ladder ladle lamp lantern laptop leather lemon lens letter lever library
    locker magnet mailbox mallet map marble market mattress medal menu mirror mitten monitor mop
    mortar muffin napkin needle notebook novel oven paddle padlock pamphlet pancake paper parcel
    pasta pebble pencil pepper piano pickle pillow pin pipe pitcher plank plate pliers pocket
    porch postcard pottery pulley puzzle quilt racket radio railing recipe ribbon rocket roof rope
    rubber ruler saddle salad sandal saucer saw scarf scissors screw shelf shoe shovel sink skillet
    sleeve slipper soap sock sofa spatula sponge spoon stapler statue stool stove straw string
    suitcase sweater table tablet teacup teapot ticket toaster token tractor trolley trumpet
    tunnel typewriter umbrella vase velvet violin wallet wardrobe whistle window wrench yarn zipper
    absent ancient awkward brave brief busy careful casual cheap clever costly crisp curious eager
    early easy elegant empty fair famous fancy formal frank gentle glad grand handy honest humble
    idle jolly keen kind late lazy legal loyal lucky modern modest narrow neat noble normal odd
    polite proud quick quiet rapid rare ready rich rigid royal rude rustic secret silent simple
    sincere slow smart solid sour steady strict sturdy sudden tidy tiny tough urban usual vague
    vivid wary weary wise witty young zealous
    """.split()
)
"""Neutral common nouns and adjectives: no colours, shapes, animals, body parts or landscapes."""


# ----------------------------------------------------------------- ensemble
def _template_problem(templates: Any) -> str | None:
    bad = [t for t in templates if t.count("{}") != 1]
    return f"must each contain '{{}}' exactly once; bad: {', '.join(map(repr, bad[:5]))}" if bad else None


def ensemble_templates(templates: Sequence[str] | None, compiled: "CompiledSystem | None" = None) -> tuple[str, ...]:
    """The templates in force, most specific first.

    The method's ``templates`` (a run's ``--templates``) override the system's own
    ``templates`` so one system can be compared across template sets; a system
    without them gets :data:`DEFAULT_TEMPLATES`.
    """
    system_templates = compiled.templates if compiled is not None else ()
    chosen = templates or system_templates or DEFAULT_TEMPLATES
    if isinstance(chosen, str) or not isinstance(chosen, Sequence):
        raise InputError(f"ensemble templates must be a list of strings with one '{{}}', got {chosen!r}")
    problem = _template_problem([t for t in chosen if isinstance(t, str)]) if all(isinstance(t, str) for t in chosen) else "must be texts"
    if problem:
        raise InputError(f"ensemble templates {problem}")
    return tuple(dict.fromkeys(chosen))


class Ensemble(ScoringMethod):
    name = "ensemble"
    description = "CLIP prompt ensembling: class = mean of its name in T templates, re-normalised (T x N prompts)"
    needs = ()
    prompt_symbol = "TxN"
    title = "method zoo"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param("templates", "strings", None, optional=True, check=_template_problem, flag="--templates", metavar="FILE",
              parse="cotembed.cli._methods:read_templates",
              help="name templates for the ensemble method, one per line with {} (default: a CLIP-style set)"),
    )

    def settings(self, compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
        return {"templates": list(ensemble_templates(self.params["templates"], compiled))}

    def prompt_sets(self, compiled: "CompiledSystem", config: ScoringConfig) -> dict[str, tuple[str, ...]]:
        templates = ensemble_templates(self.params["templates"], compiled)
        return {ENSEMBLE: tuple(t.replace("{}", c, 1) for c in compiled.class_names for t in templates)}

    def score(self, batch: Batch) -> np.ndarray:
        n = batch.compiled.n_classes
        sims = batch[ENSEMBLE].reshape(len(batch), n, -1)
        vectors = batch.prompt_vectors[ENSEMBLE]
        # cos(x, normalise(mean_t e_t)) = mean_t cos(x, e_t) / |mean_t e_t|: no second pass over the inputs.
        norms = np.linalg.norm(vectors.reshape(n, sims.shape[2], -1).mean(axis=1), axis=1)
        scores: np.ndarray = sims.mean(axis=2) / np.maximum(norms, 1e-12).astype(np.float32)
        return scores

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        return softmax(scores * np.float32(config.temperature), axis=1)


# -------------------------------------------------------------------- dclip
class ClassificationByDescription(ScoringMethod):
    name = "dclip"
    description = "classification by description: class = mean cosine of the option prompts its rule accepts (Q prompts)"
    needs = (OPTIONS,)

    def score(self, batch: Batch) -> np.ndarray:
        accepted = (batch.compiled.rule_matrix > 0).astype(np.float32)
        scores: np.ndarray = (batch[OPTIONS] @ accepted) / accepted.sum(axis=0)
        return scores

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        return softmax(scores * np.float32(config.temperature), axis=1)


# ------------------------------------------------------------------ cot-log
def split_rules(compiled: "CompiledSystem") -> tuple[np.ndarray, list[tuple[np.ndarray, float, np.ndarray]]]:
    """The rule matrix as (single-option part, multi-option entries).

    The single part is Q x N with the group weight where a class accepts exactly
    one option of the group, so those terms cost one matrix product. Each multi
    entry is (option prompt indices, weight, class columns): classes that accept
    the same several options of one group share one log-sum-exp.
    """
    accepted = compiled.rule_matrix > 0
    starts = compiled.offsets[:-1]
    sizes = np.diff(compiled.offsets)
    counts = np.add.reduceat(accepted.astype(np.int64), starts, axis=0)  # (G, N)
    single = np.where(np.repeat(counts == 1, sizes, axis=0), compiled.rule_matrix, np.float32(0))
    multi: list[tuple[np.ndarray, float, np.ndarray]] = []
    for g in np.flatnonzero((counts > 1).any(axis=1)):
        block = accepted[starts[g] : starts[g] + sizes[g]]
        by_set: dict[tuple[int, ...], list[int]] = {}
        for n in np.flatnonzero(counts[g] > 1):
            by_set.setdefault(tuple(np.flatnonzero(block[:, n]) + starts[g]), []).append(int(n))
        for options, columns in by_set.items():
            weight = float(compiled.rule_matrix[options[0], columns[0]])
            multi.append((np.asarray(options), weight, np.asarray(columns)))
    return single, multi


class ProductOfExperts(ScoringMethod):
    name = "cot-log"
    description = "product of experts: sum over groups of weight x log P(class's options) (Q prompts)"
    needs = (OPTIONS,)

    def score(self, batch: Batch) -> np.ndarray:
        single, multi = split_rules(batch.compiled)
        log_probs = batch.option_log_probs
        scores: np.ndarray = log_probs @ single
        for options, weight, columns in multi:
            picked = log_probs[:, options]
            top = picked.max(axis=1, keepdims=True)
            lse = top[:, 0] + np.log(np.exp(picked - top).sum(axis=1))
            scores[:, columns] += np.float32(weight) * lse[:, None]
        return scores

    def probabilities(self, scores: np.ndarray, config: ScoringConfig) -> np.ndarray:
        """Normalised product of the groups' probabilities (scores are already log-likelihoods)."""
        return softmax(scores, axis=1)

    def terms(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per group: weight x log P(the class's options), the parts of the score."""
        compiled = batch.compiled
        offsets, rules = compiled.offsets, compiled.rule_matrix
        out = {}
        for g, name in enumerate(compiled.group_names):
            block = slice(offsets[g], offsets[g + 1])
            accepted = rules[block] > 0
            weight = rules[block].max(axis=0)
            mass = batch.option_probs[:, block] @ accepted.astype(np.float32)
            out[name] = weight * np.log(np.maximum(mass, np.finfo(np.float32).tiny))
        return out


# ----------------------------------------------------------- random control
def random_seeds(seeds: Any = DEFAULT_RANDOM_SEEDS) -> tuple[int, ...]:
    """Seeds checked: a non-empty list of distinct integers in [0, 2**32)."""
    problem = _SEEDS.problem(seeds)
    if problem:
        raise InputError(f"random_seeds {problem}")
    return tuple(dict.fromkeys(int(s) for s in seeds))


_SEEDS = Param("random_seeds", "ints", DEFAULT_RANDOM_SEEDS, low=0, high=2**32, high_open=True, flag="--random-seeds",
               metavar="S,S,...", parse="cotembed.cli._methods:seed_list",
               help="seeds of random-control, one run each; eval reports mean and spread (default: 0,1,2,3,4)")


def question_frame(prompts: Sequence[str]) -> tuple[str, str]:
    """What every prompt of one group shares around its option: (prefix, suffix), cut at word edges.

    A compiled system keeps filled-in prompts only; the frame is the group's
    template as far as they show it (a one-option group shows none). The prefix
    ends, and the suffix starts, with a non-word character, and neither eats a
    whole option, so a frame never holds part of one option only.
    """
    if len(prompts) < 2:
        return "", ""
    shortest = min(len(p) for p in prompts)
    prefix = _common_prefix(prompts)[: shortest - 1]
    while prefix and prefix[-1].isalnum():
        prefix = prefix[:-1]
    rest = [p[len(prefix) :] for p in prompts]
    suffix = _common_prefix([r[::-1] for r in rest])[::-1]
    suffix = suffix[len(suffix) - min(len(suffix), min(len(r) for r in rest) - 1) :]
    while suffix and suffix[0].isalnum():
        suffix = suffix[1:]
    return prefix, suffix


def _common_prefix(texts: Sequence[str]) -> str:
    first, last = min(texts), max(texts)
    i = 0
    while i < len(first) and first[i] == last[i]:
        i += 1
    return first[:i]


@lru_cache(maxsize=64)
def random_prompts(prompts: tuple[str, ...], offsets: tuple[int, ...], seed: int) -> tuple[str, ...]:
    """The system's prompts with each option replaced by a seeded random word (distinct within a group).

    Words the system itself uses anywhere are never drawn, so no option can be
    redrawn by chance. Beyond the word list, options get random word pairs.
    """
    used = {w for p in prompts for w in re.findall(r"[a-z]+", p.lower())}
    pool = [w for w in RANDOM_WORDS if w not in used]
    if not pool:
        raise InputError("random-control: every word of the random word list occurs in the system")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for start, stop in zip(offsets[:-1], offsets[1:]):
        prefix, suffix = question_frame(prompts[start:stop])
        size = stop - start
        width = 1 if size <= len(pool) else math.ceil(math.log(size, len(pool))) if len(pool) > 1 else 0
        if width == 0 or len(pool) ** width < size:
            raise InputError(f"random-control: a group of {size} options needs more random words than the {len(pool)} available")
        draws = rng.choice(len(pool) ** width, size=size, replace=False)
        for code in draws:
            digits = [(int(code) // len(pool) ** i) % len(pool) for i in range(width)]
            out.append(prefix + " ".join(pool[d] for d in digits) + suffix)
    return tuple(out)


def random_set_name(seed: int) -> str:
    return f"random-control/{seed}"


class RandomControl(ScoringMethod):
    name = "random-control"
    description = "cot with every option word replaced by a seeded random word: what ensembling alone gives (Q prompts per seed)"
    needs = ()
    prompt_symbol = "Q"
    title = "method zoo"
    parameters: ClassVar[tuple[Param, ...]] = (_SEEDS,)

    def seeds(self) -> tuple[int, ...]:
        return tuple(self.params["random_seeds"])

    def score(self, batch: Batch) -> np.ndarray:
        """A single prediction uses the first seed (``eval`` reports every seed)."""
        return self.score_seed(batch, self.seeds()[0])

    def settings(self, compiled: "CompiledSystem | None" = None) -> dict[str, Any]:
        return {"random_seeds": list(self.seeds()), "random_words": len(RANDOM_WORDS)}

    def prompt_sets(self, compiled: "CompiledSystem", config: ScoringConfig) -> dict[str, tuple[str, ...]]:
        offsets = tuple(int(o) for o in compiled.offsets)
        return {random_set_name(s): random_prompts(tuple(compiled.prompts), offsets, s) for s in self.seeds()}

    def prompts_used(self, compiled: "CompiledSystem", config: ScoringConfig) -> int:
        """Q: each seed's run asks as many questions as ``cot`` (the seeds are repeats, not one ensemble)."""
        return compiled.n_prompts

    def score_seed(self, batch: Batch, seed: int) -> np.ndarray:
        probs = group_softmax(batch[random_set_name(seed)], batch.compiled.offsets, batch.config.temperature)
        return cot_scores(probs, batch.compiled.rule_matrix)

    def posterior(self, batch: Batch, scores: np.ndarray) -> np.ndarray:
        """cot's calibrated posterior on the first seed's random prompts (the run :meth:`score` returns)."""
        return self.posterior_seed(batch, self.seeds()[0])

    def posterior_seed(self, batch: Batch, seed: int) -> np.ndarray:
        """The product-of-groups likelihood on the seed's random prompts, as cot's on the real ones, so the
        control's probabilities are calibrated the same way and their ECE compares like for like."""
        rules = GroupRules.from_compiled(batch.compiled)
        log_masses = group_log_masses(batch[random_set_name(seed)], rules, batch.config.temperature)
        return np.asarray(np.exp(log_posterior(log_masses, rules.weights)))


__all__ = [
    "DEFAULT_RANDOM_SEEDS",
    "DEFAULT_TEMPLATES",
    "ENSEMBLE",
    "RANDOM_WORDS",
    "ClassificationByDescription",
    "Ensemble",
    "ProductOfExperts",
    "RandomControl",
    "ensemble_templates",
    "question_frame",
    "random_prompts",
    "random_seeds",
    "split_rules",
]

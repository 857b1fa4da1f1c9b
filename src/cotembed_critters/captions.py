"""Training captions for critter images, built only from the vocabulary's caption phrases.

``caption(attributes, rng)`` describes a rendered critter in one of many
templates, sometimes fully ("an orange bird with wings, in outer space") and
sometimes partly ("something with wings in outer space", "a red creature").
Captions use each value's :attr:`~cotembed_critters.world.Value.caption` phrase
and a few neutral glue words (:data:`GLUE_WORDS`), never a paraphrase and never
a species name: species are invisible to the model during training.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY, value

__all__ = ["GLUE_WORDS", "N_TEMPLATES", "all_caption_phrases", "caption"]

# How many of the four attributes a caption mentions (1, 2, 3, 4).
_K_PROBS = (0.15, 0.25, 0.25, 0.35)

# Prepositions that put a scene's caption phrase into a sentence.
_SCENE_PREPS: dict[str, tuple[str, ...]] = {
    "sky": ("in", "high in"),
    "grass": ("on", "in"),
    "space": ("in", "floating in"),
    "water": ("in", "near"),
    "desert": ("in", "crossing"),
    "volcano": ("on", "near"),
    "snow": ("in", "on"),
}

_NOUNS = ("creature", "critter")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _strip_article(phrase: str) -> tuple[str, bool]:
    """'a round blob' -> ('round blob', True); 'wings' -> ('wings', False)."""
    for art in ("a ", "an "):
        if phrase.startswith(art):
            return phrase[len(art):], True
    return phrase, False


def _noun_phrase(colour: str | None, form: str | None, rng: np.random.Generator) -> str:
    """'an orange bird', 'a red creature', 'a bird', 'something red' or 'something'."""
    if form is not None:
        body, _ = _strip_article(value("form", form).caption)
    elif colour is not None or rng.random() < 0.5:
        body = _NOUNS[int(rng.integers(len(_NOUNS)))]
    else:
        return "something"
    if colour is not None:
        col = value("colour", colour).caption
        if form is None and rng.random() < 0.25:
            return f"something {col}"
        body = f"{col} {body}"
    return f"{_article(body)} {body}"


def _trait_clause(trait: str, rng: np.random.Generator) -> str:
    phrase = value("trait", trait).caption
    return f"{('with', 'with', 'that has', 'having')[int(rng.integers(4))]} {phrase}"


def _scene_clause(scene: str, rng: np.random.Generator) -> str:
    phrase = value("scene", scene).caption
    preps = _SCENE_PREPS[scene]
    return f"{preps[int(rng.integers(len(preps)))]} {phrase}"


def _template(np_: str, trait: str | None, scene: str | None, attrs: Mapping[str, str], rng: np.random.Generator) -> str:
    tc = _trait_clause(trait, rng) if trait else ""
    sc = _scene_clause(scene, rng) if scene else ""
    core = " ".join(p for p in (np_, tc) if p)
    choice = int(rng.integers(N_TEMPLATES))
    if choice == 0:
        return " ".join(p for p in (core, sc) if p)
    if choice == 1:
        return f"a photo of {core}" + (f" {sc}" if sc else "")
    if choice == 2:
        return f"a picture of {core}" + (f", {sc}" if sc else "")
    if choice == 3:
        return f"{core}, {sc}" if sc else f"a drawing of {core}"
    if choice == 4:
        return f"there is {core}" + (f" {sc}" if sc else "")
    if choice == 5:
        return f"{sc}: {core}" if sc else f"look, {core}"
    if choice == 6:
        return f"a cartoon of {core}" + (f" {sc}" if sc else "")
    if choice == 7:
        # "a red bird seen in the sky", "an insect seen with a long tail"
        return " ".join(p for p in (np_, "seen", sc, tc) if p) if (sc or tc) else f"an image of {np_}"
    if choice == 8:
        if scene:
            return f"{core} with {value('scene', scene).caption} in the background"
        return f"a close-up of {core}"
    # 9: a small scene description built like the system prompts
    parts = []
    if attrs.get("colour"):
        parts.append(f"its body is {value('colour', attrs['colour']).caption}")
    if attrs.get("form"):
        parts.append(f"it looks like {value('form', attrs['form']).caption}")
    if trait:
        parts.append(f"it has {value('trait', trait).caption}")
    if scene:
        parts.append(f"the background is {value('scene', scene).caption}")
    return ", ".join(parts)


N_TEMPLATES = 10
"""Number of sentence templates :func:`caption` chooses from."""


def caption(attributes: Mapping[str, str], rng: np.random.Generator) -> str:
    """A lower-case caption mentioning 1-4 of the critter's attributes.

    ``attributes`` maps colour, form, trait and scene to vocabulary keys (as for
    :func:`cotembed_critters.render.render`); unknown keys raise ``KeyError``.
    The choice of attributes, wording and template all come from ``rng``.
    """
    for name in ATTRIBUTE_NAMES:
        if name not in attributes:
            raise KeyError(f"missing attribute {name!r}; attributes are {', '.join(ATTRIBUTE_NAMES)}")
        value(name, attributes[name])  # validates the key
    k = int(rng.choice(4, p=_K_PROBS)) + 1
    chosen = set(rng.choice(len(ATTRIBUTE_NAMES), size=k, replace=False).tolist())
    attrs = {name: attributes[name] for i, name in enumerate(ATTRIBUTE_NAMES) if i in chosen}
    np_ = _noun_phrase(attrs.get("colour"), attrs.get("form"), rng)
    text = _template(np_, attrs.get("trait"), attrs.get("scene"), attrs, rng)
    return re.sub(r"\s+", " ", text).strip()


def all_caption_phrases() -> dict[str, list[str]]:
    """Every caption phrase, by attribute (the only attribute wording captions use)."""
    return {name: [v.caption for v in values] for name, values in VOCABULARY.items()}


GLUE_WORDS: frozenset[str] = frozenset({
    "a", "an", "the", "of", "with", "that", "has", "having", "it", "its", "is", "looks", "like", "body",
    "background", "in", "on", "near", "high", "floating", "crossing", "photo", "picture", "drawing",
    "cartoon", "image", "close-up", "look", "seen", "there", "something", "creature", "critter",
})
"""Words captions use besides the caption phrases; none of them names an attribute value."""


def caption_words(text: str) -> list[str]:
    """The words of a caption, lower-cased, punctuation removed (for checks)."""
    return re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())


def _vocabulary_words() -> frozenset[str]:
    return frozenset(w for phrases in all_caption_phrases().values() for p in phrases for w in caption_words(p))


def allowed_words() -> frozenset[str]:
    """Every word a caption may contain: the caption phrases' words and :data:`GLUE_WORDS`."""
    return _vocabulary_words() | GLUE_WORDS

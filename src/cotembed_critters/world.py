"""The critters world: the attribute vocabulary every other critters module shares.

Each attribute value has one *caption word* (the wording training captions use,
and the wording of the ``easy`` system's options) and *paraphrases* (wordings the
model never saw in a caption, used by the ``hard`` system). Species are just
named attribute combinations; their names never appear in any caption.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ATTRIBUTE_NAMES = ("colour", "form", "trait", "scene")


@dataclass(frozen=True)
class Value:
    key: str
    caption: str
    """Phrase used in training captions and in the easy system's options."""
    paraphrases: tuple[str, ...]
    """Phrases never used in captions (the hard system's options)."""


COLOURS = (
    Value("red", "red", ("crimson", "scarlet")),
    Value("orange", "orange", ("tangerine", "amber")),
    Value("yellow", "yellow", ("golden", "lemon-coloured")),
    Value("green", "green", ("emerald", "leafy green")),
    Value("blue", "blue", ("azure", "cobalt")),
    Value("purple", "purple", ("violet", "lilac")),
    Value("pink", "pink", ("rosy", "salmon-coloured")),
    Value("brown", "brown", ("chocolate", "chestnut")),
    Value("white", "white", ("ivory", "snowy")),
    Value("black", "black", ("ebony", "jet-black")),
)

FORMS = (
    Value("blob", "a round blob", ("a plump ball-shaped creature", "a spherical critter")),
    Value("serpent", "a long serpent", ("a slithering snake-like creature", "a winding worm-like body")),
    Value("beast", "a four-legged beast", ("a quadruped animal", "a creature walking on four legs")),
    Value("bird", "a bird", ("an avian creature", "a feathered flyer")),
    Value("fish", "a fish", ("a finned swimmer", "an aquatic creature with fins")),
    Value("insect", "an insect", ("a six-legged bug", "a beetle-like critter")),
    Value("biped", "a two-legged walker", ("an upright creature on two legs", "a humanoid figure")),
)

TRAITS = (
    Value("horn", "a horn", ("a single tusk", "a pointed spike on its head")),
    Value("wings", "wings", ("a pair of feathered flaps", "the ability to fly, being winged")),
    Value("spikes", "spikes on its back", ("a spiny ridge", "thorny plates along its back")),
    Value("spots", "spots", ("a dotted, speckled pattern", "polka dots")),
    Value("stripes", "stripes", ("a banded pattern", "zebra-like bands")),
    Value("antennae", "antennae", ("feelers on its head", "two thin sensory stalks")),
    Value("tail", "a long tail", ("a trailing appendage behind it", "a whip-like rear end")),
)

SCENES = (
    Value("sky", "the sky", ("the clouds", "the open air above")),
    Value("grass", "grass", ("a meadow", "a lawn")),
    Value("space", "outer space", ("the starry cosmos", "the night void among stars")),
    Value("water", "water", ("the ocean", "a lake")),
    Value("desert", "a desert", ("sand dunes", "an arid wasteland")),
    Value("volcano", "a volcano", ("molten lava", "a fiery crater")),
    Value("snow", "snow", ("a frozen tundra", "an icy field")),
)

VOCABULARY: Mapping[str, tuple[Value, ...]] = {"colour": COLOURS, "form": FORMS, "trait": TRAITS, "scene": SCENES}


def value(attribute: str, key: str) -> Value:
    """Look up a value by attribute and key, with an error that lists the valid keys."""
    try:
        values = VOCABULARY[attribute]
    except KeyError:
        raise KeyError(f"unknown attribute {attribute!r}; attributes are {', '.join(ATTRIBUTE_NAMES)}") from None
    for v in values:
        if v.key == key:
            return v
    raise KeyError(f"unknown {attribute} {key!r}; choose one of {', '.join(v.key for v in values)}")

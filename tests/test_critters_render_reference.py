"""Renders are frozen: the same (attributes, seed, size, difficulty) draw the same pixels.

Splits and the shipped weights were made with these pixels, so a change to the drawing
code that moves a single pixel changes every dataset. The hashes below were computed
from the renderer as it was before it was split into modules (numpy and Pillow as
pinned in this environment); a failure names the case that moved.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cotembed_critters import render
from cotembed_critters.world import ATTRIBUTE_NAMES, VOCABULARY

# (colour, form, trait, scene, seed, size, difficulty, sha256(image bytes)[:16]):
# every form x every trait, every colour and scene, sizes 16..96, both difficulties.
REFERENCE = [
    ('red', 'blob', 'horn', 'sky', 0, 16, 'hard', 'c0468fea9adc622c'),
    ('orange', 'blob', 'wings', 'water', 8, 37, 'easy', '94ecf791695f85a3'),
    ('yellow', 'blob', 'spikes', 'snow', 12997252459554536578, 64, 'easy', '7a7c1c8ca7d55391'),
    ('green', 'blob', 'spots', 'space', 123456792, 96, 'hard', '3f309be53c1aa30f'),
    ('blue', 'blob', 'stripes', 'volcano', 4, 16, 'easy', 'f400d8d19b701d46'),
    ('purple', 'blob', 'antennae', 'grass', 12, 37, 'easy', '7f2c8c16fab60585'),
    ('pink', 'blob', 'tail', 'desert', 12997252459554536582, 64, 'hard', '31fdc81a1250137b'),
    ('brown', 'serpent', 'horn', 'sky', 123456796, 96, 'easy', 'f79ee31bad348692'),
    ('white', 'serpent', 'wings', 'water', 8, 16, 'easy', 'df6801e0de573114'),
    ('black', 'serpent', 'spikes', 'snow', 16, 37, 'hard', 'd33e21e8fdea169b'),
    ('red', 'serpent', 'spots', 'space', 12997252459554536586, 64, 'easy', '7c579fab68873f88'),
    ('orange', 'serpent', 'stripes', 'volcano', 123456800, 96, 'easy', '02a647061d52bba5'),
    ('yellow', 'serpent', 'antennae', 'grass', 12, 16, 'hard', '9a04e27789366447'),
    ('green', 'serpent', 'tail', 'desert', 20, 37, 'easy', '2befa395eaade94d'),
    ('blue', 'beast', 'horn', 'sky', 12997252459554536590, 64, 'easy', 'ebea3113855cfeef'),
    ('purple', 'beast', 'wings', 'water', 123456804, 96, 'hard', '8d219b4bc35b30e2'),
    ('pink', 'beast', 'spikes', 'snow', 16, 16, 'easy', 'e79cfdb9087c5206'),
    ('brown', 'beast', 'spots', 'space', 24, 37, 'easy', '447d47222b9c9062'),
    ('white', 'beast', 'stripes', 'volcano', 12997252459554536594, 64, 'hard', '13bd71db0bfe03ae'),
    ('black', 'beast', 'antennae', 'grass', 123456808, 96, 'easy', 'f425cdca4ba9286e'),
    ('red', 'beast', 'tail', 'desert', 20, 16, 'easy', '7069024bb005ebbd'),
    ('orange', 'bird', 'horn', 'sky', 28, 37, 'hard', '55803fa5c744e076'),
    ('yellow', 'bird', 'wings', 'water', 12997252459554536598, 64, 'easy', '55d102be42608fd3'),
    ('green', 'bird', 'spikes', 'snow', 123456812, 96, 'easy', '400e762cc887411f'),
    ('blue', 'bird', 'spots', 'space', 24, 16, 'hard', '330a065d4489b8e6'),
    ('purple', 'bird', 'stripes', 'volcano', 32, 37, 'easy', 'c97395b6f4acbafd'),
    ('pink', 'bird', 'antennae', 'grass', 12997252459554536602, 64, 'easy', 'a483612ec0993b98'),
    ('brown', 'bird', 'tail', 'desert', 123456816, 96, 'hard', '887dac827e122976'),
    ('white', 'fish', 'horn', 'sky', 28, 16, 'easy', '9507c87b12499e6b'),
    ('black', 'fish', 'wings', 'water', 36, 37, 'easy', '8cf3310d600e0fed'),
    ('red', 'fish', 'spikes', 'snow', 12997252459554536606, 64, 'hard', '663beb10a6654f13'),
    ('orange', 'fish', 'spots', 'space', 123456820, 96, 'easy', '7d39c57bcea08c7e'),
    ('yellow', 'fish', 'stripes', 'volcano', 32, 16, 'easy', '8e997cda32d09d51'),
    ('green', 'fish', 'antennae', 'grass', 40, 37, 'hard', 'a5961935f3d600c4'),
    ('blue', 'fish', 'tail', 'desert', 12997252459554536610, 64, 'easy', 'd6016237cfcb1576'),
    ('purple', 'insect', 'horn', 'sky', 123456824, 96, 'easy', '114f7f10c6795392'),
    ('pink', 'insect', 'wings', 'water', 36, 16, 'hard', '8b2dfeee98aacc1a'),
    ('brown', 'insect', 'spikes', 'snow', 44, 37, 'easy', '2a35d158147ebf89'),
    ('white', 'insect', 'spots', 'space', 12997252459554536614, 64, 'easy', '382463ac8c528c1d'),
    ('black', 'insect', 'stripes', 'volcano', 123456828, 96, 'hard', '81f80ac71c654dc2'),
    ('red', 'insect', 'antennae', 'grass', 40, 16, 'easy', 'c7ffcdb902875c1a'),
    ('orange', 'insect', 'tail', 'desert', 48, 37, 'easy', '1937ba0f403782d4'),
    ('yellow', 'biped', 'horn', 'sky', 12997252459554536618, 64, 'hard', 'b525660946586c31'),
    ('green', 'biped', 'wings', 'water', 123456832, 96, 'easy', '193dce6b80d9411e'),
    ('blue', 'biped', 'spikes', 'snow', 44, 16, 'easy', '8141ed6e204127e9'),
    ('purple', 'biped', 'spots', 'space', 52, 37, 'hard', 'a5931cf72e5b8b77'),
    ('pink', 'biped', 'stripes', 'volcano', 12997252459554536622, 64, 'easy', '97172ee2c6dc2789'),
    ('brown', 'biped', 'antennae', 'grass', 123456836, 96, 'easy', 'ce55384f70693968'),
    ('white', 'biped', 'tail', 'desert', 48, 16, 'hard', 'fe4b37f53666d5f7'),
]

BROAD_DIGEST = "376cc85febbdfacc7b01758d183a902faad1d98fcbcd150f460528568819a185"
"""sha256 over 300 renders of random attributes, seeds, sizes and difficulties."""


def _digest(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("case", REFERENCE, ids=lambda c: "-".join(map(str, c[:4] + c[5:7])))
def test_render_matches_reference_pixels(case):
    colour, form, trait, scene, seed, size, difficulty, expected = case
    image = render(dict(zip(ATTRIBUTE_NAMES, (colour, form, trait, scene))), seed=seed, size=size, difficulty=difficulty)
    assert image.size == (size, size) and image.mode == "RGB"
    assert _digest(image)[:16] == expected


def test_reference_covers_every_value_and_both_difficulties():
    for k, name in enumerate(ATTRIBUTE_NAMES):
        assert {c[k] for c in REFERENCE} == {v.key for v in VOCABULARY[name]}, name
    assert {c[6] for c in REFERENCE} == {"easy", "hard"}


def test_many_random_renders_match_reference_digest():
    keys = {a: [v.key for v in VOCABULARY[a]] for a in ATTRIBUTE_NAMES}
    rng = np.random.default_rng(2024)
    h = hashlib.sha256()
    for i in range(300):
        attrs = {a: keys[a][int(rng.integers(len(keys[a])))] for a in ATTRIBUTE_NAMES}
        image = render(attrs, seed=int(rng.integers(2**63)), size=int(rng.choice([16, 24, 48, 64])), difficulty=("easy", "hard")[i % 2])
        h.update(image.tobytes())
    assert h.hexdigest() == BROAD_DIGEST

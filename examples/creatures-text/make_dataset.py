"""Generate test.csv for the creatures-text demo (deterministic, stdlib only).

Each of the 16 invented species gets 8 short "sightings": free-text field
notes built from several sentence templates. A sighting describes the
species' attributes (colour, body form, key trait, habitat, size), often with
a synonym or paraphrase instead of the word used in system.yaml ("crimson"
for red, "fins and gills" for a fish, "marsh" for a swamp), and sometimes
leaves one attribute out. The species name never appears in the text, so
matching a sighting against the bare name is guesswork, while answering the
attribute questions and combining them with the rules works.

    python examples/creatures-text/make_dataset.py   # rewrites test.csv next to this file

The SPECIES table must stay in step with the rules in system.yaml (it is
written by option text, exactly as there).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20241205
PER_SPECIES = 8
P_SYNONYM = 0.5  # chance an attribute is written with a paraphrase instead of the system's own word
P_DROP = 0.35  # chance a sighting leaves one attribute out

# species -> (colour, body_form, key_trait, habitat, size), by option text as in system.yaml
SPECIES: dict[str, tuple[str, str, str, str, str]] = {
    "Zorblat": ("blue", "a bird", "a pair of sharp horns", "the ocean", "small"),
    "Vexmora": ("white", "an insect", "a very long tail", "open grassland", "large"),
    "Quorrin": ("red", "an insect", "a back covered in spikes", "snowy mountains", "tiny"),
    "Talvenik": ("orange", "a lizard", "huge eyes", "open grassland", "gigantic"),
    "Kelvarn": ("yellow", "a lizard", "a venomous sting", "dark caves", "large"),
    "Pheruun": ("green", "a snake", "huge eyes", "a swamp", "small"),
    "Naxilo": ("blue", "a furry four-legged mammal", "a glowing body", "dark caves", "large"),
    "Ulmarak": ("black", "a snake", "a back covered in spikes", "snowy mountains", "tiny"),
    "Jintova": ("yellow", "a bird", "fiery breath", "snowy mountains", "gigantic"),
    "Cazzeru": ("white", "an insect", "a very long tail", "a forest", "small"),
    "Yovessa": ("orange", "a fish", "fiery breath", "the ocean", "tiny"),
    "Drimbal": ("red", "a furry four-legged mammal", "a venomous sting", "a forest", "small"),
    "Ostrevy": ("purple", "a fish", "fiery breath", "a swamp", "tiny"),
    "Luthqua": ("purple", "a snake", "a pair of sharp horns", "a swamp", "gigantic"),
    "Mervosh": ("black", "a lizard", "a venomous sting", "a desert", "large"),
    "Istrabo": ("green", "a bird", "a glowing body", "a desert", "gigantic"),
}

# option text -> ways to say it; the first entry is the plain wording, the rest are paraphrases
COLOUR = {
    "red": ["red", "crimson", "scarlet"],
    "blue": ["blue", "azure", "deep sapphire-blue"],
    "green": ["green", "emerald", "leaf-green"],
    "yellow": ["yellow", "golden-yellow", "lemon-coloured"],
    "black": ["black", "jet-black", "coal-black"],
    "white": ["white", "snow-white", "milky white"],
    "purple": ["purple", "violet", "lilac"],
    "orange": ["orange", "tangerine", "rusty orange"],
}
# body form: nouns to call the creature by
FORM = {
    "a bird": ["bird", "feathered bird", "winged bird with a beak"],
    "a fish": ["fish", "finned fish", "fish with fins and gills"],
    "a snake": ["snake", "serpent", "legless serpent"],
    "an insect": ["insect", "six-legged bug", "bug with antennae"],
    "a lizard": ["lizard", "scaly lizard", "scaly reptile on four short legs"],
    "a furry four-legged mammal": ["furry four-legged mammal", "shaggy four-legged beast", "furry animal with four legs"],
}
TRAIT = {
    "a glowing body": ["a glowing body", "skin that glows softly in the dark", "a faint luminous shimmer"],
    "a pair of sharp horns": ["a pair of sharp horns", "two pointed horns on its head", "curved horns"],
    "a back covered in spikes": ["a back covered in spikes", "rows of sharp spines along its back", "a spiny, prickly back"],
    "a venomous sting": ["a venomous sting", "a poisonous stinger", "a toxic sting"],
    "huge eyes": ["huge eyes", "giant bulging eyes", "eyes far too big for its head"],
    "fiery breath": ["fiery breath", "the ability to breathe fire", "flames coming out of its mouth"],
    "a very long tail": ["a very long tail", "a tail twice as long as its body", "a long whip-like tail"],
}
HABITAT = {
    "the ocean": ["the ocean", "the open sea", "deep salt water"],
    "a desert": ["a desert", "the sand dunes", "a hot, dry desert"],
    "a forest": ["a forest", "the woods", "a dense woodland"],
    "snowy mountains": ["snowy mountains", "icy mountain peaks", "high snow-covered slopes"],
    "a swamp": ["a swamp", "a muddy marsh", "a boggy wetland"],
    "dark caves": ["dark caves", "an underground cavern", "a pitch-black cave"],
    "open grassland": ["open grassland", "a wide meadow", "the prairie"],
}
SIZE = {
    "tiny": ["tiny", "mouse-sized", "minuscule"],
    "small": ["small", "cat-sized", "little"],
    "large": ["large", "horse-sized", "big"],
    "gigantic": ["gigantic", "colossal", "giant, house-sized"],
}
ATTRIBUTES = ("colour", "form", "trait", "habitat", "size")
TABLES = (COLOUR, FORM, TRAIT, HABITAT, SIZE)


def _words(rng: random.Random, table: dict[str, list[str]], option: str) -> str:
    ways = table[option]
    return rng.choice(ways[1:]) if rng.random() < P_SYNONYM else ways[0]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _adjectives(*words: str | None) -> str:
    return ", ".join(w for w in words if w)


# Each template gets a dict of phrases (a value is None when the sighting leaves it out).
def t_spotted(p: dict) -> str:
    noun = p["form"] or "creature"
    adj = _adjectives(p["size"], p["colour"])
    s = f"Spotted {'in ' + p['habitat'] if p['habitat'] else 'at dusk'}: {_article((adj + ' ' if adj else '') + noun)}"
    return s + (f" with {p['trait']}." if p["trait"] else ".")


def t_i_saw(p: dict) -> str:
    noun = p["form"] or "animal"
    s = f"I saw {_article((p['colour'] + ' ' if p['colour'] else '') + noun)}"
    s += f" in {p['habitat']}." if p["habitat"] else " on my walk."
    parts = []
    if p["size"]:
        parts.append(f"It was {p['size']}")
    if p["trait"]:
        parts.append(("and had " if parts else "It had ") + p["trait"])
    return s + (" " + " ".join(parts) + "." if parts else "")


def t_field_note(p: dict) -> str:
    bits = [b for b in (_adjectives(p["size"], p["colour"]), p["form"]) if b]
    s = "Field note: " + " ".join(bits) if bits else "Field note: unknown animal"
    if p["trait"]:
        s += f", notable for {p['trait']}"
    return s + (f"; found in {p['habitat']}." if p["habitat"] else ".")


def t_hiker(p: dict) -> str:
    s = f"A hiker reported {_article(p['form'] or 'creature')}"
    if p["trait"]:
        s += f" with {p['trait']}"
    s += f" near {p['habitat']}." if p["habitat"] else "."
    tail = []
    if p["colour"]:
        tail.append(f"Its body was {p['colour']}")
    if p["size"]:
        tail.append(f"{'and it' if tail else 'It'} was {p['size']}")
    return s + (" " + " ".join(tail) + "." if tail else "")


def t_observed(p: dict) -> str:
    fields = []
    if p["colour"]:
        fields.append(f"Colour: {p['colour']}.")
    if p["form"]:
        fields.append(f"Looks like {_article(p['form'])}.")
    if p["trait"]:
        fields.append(f"Has {p['trait']}.")
    if p["habitat"]:
        fields.append(f"Habitat: {p['habitat']}.")
    if p["size"]:
        fields.append(f"Size: {p['size']}.")
    return "Observed: " + " ".join(fields)


def t_locals(p: dict) -> str:
    adj = _adjectives(p["size"], p["colour"])
    s = f"Locals describe {_article((adj + ' ' if adj else '') + (p['form'] or 'creature'))}"
    if p["habitat"]:
        s += f" that lives in {p['habitat']}"
    return s + (f", known for {p['trait']}." if p["trait"] else ".")


def t_last_night(p: dict) -> str:
    where = f"In {p['habitat']}" if p["habitat"] else "Last night"
    s = f"{where} we watched {_article((p['colour'] + ' ' if p['colour'] else '') + (p['form'] or 'creature'))}"
    if p["size"]:
        s += f", {p['size']}"
    return s + (f", showing off {p['trait']}." if p["trait"] else ".")


def t_photo(p: dict) -> str:
    s = "Blurry photo of something"
    if p["size"] or p["colour"]:
        s += " " + " and ".join(w for w in (p["size"], p["colour"]) if w)
    if p["form"]:
        s += f", clearly {_article(p['form'])}"
    if p["trait"]:
        s += f", with {p['trait']}"
    return s + (f", taken in {p['habitat']}." if p["habitat"] else ".")


TEMPLATES = (t_spotted, t_i_saw, t_field_note, t_hiker, t_observed, t_locals, t_last_night, t_photo)


def sightings(rng: random.Random, attrs: tuple[str, ...], n: int) -> list[str]:
    templates = list(TEMPLATES)
    rng.shuffle(templates)
    out = []
    for i in range(n):
        phrases = {a: _words(rng, table, opt) for a, table, opt in zip(ATTRIBUTES, TABLES, attrs)}
        if rng.random() < P_DROP:
            phrases[rng.choice(ATTRIBUTES)] = None
        text = templates[i % len(templates)](phrases)
        out.append(text[0].upper() + text[1:])
    return out


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for name, attrs in SPECIES.items():
        for text in sightings(rng, attrs, PER_SPECIES):
            assert name.casefold() not in text.casefold()
            rows.append((text, name))
    out = Path(__file__).with_name("test.csv")
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()

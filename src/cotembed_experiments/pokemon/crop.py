"""The artwork window of a card, so no printed text (name, HP, attacks) reaches the model.

A card's name is printed on it; left in, the model could read the answer instead of
looking at the Pokémon. The window is a box relative to the card's size, so one setting
fits every scan resolution. The default suits the usual layout of the dataset's scans
(name bar above the art, species line and attacks below); ``--art-box`` changes it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cotembed._io import atomic_path
from cotembed.errors import InputError


@dataclass(frozen=True)
class ArtBox:
    """``left, top, right, bottom`` as fractions of the card's width and height."""

    left: float = 0.09
    top: float = 0.12
    right: float = 0.91
    bottom: float = 0.46

    def __post_init__(self) -> None:
        values = (self.left, self.top, self.right, self.bottom)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise InputError(f"art box {self.text()}: every value must be a number from 0 to 1 (fractions of the card)")
        if not (self.left < self.right and self.top < self.bottom):
            raise InputError(f"art box {self.text()}: needs left < right and top < bottom")

    @classmethod
    def parse(cls, text: str) -> "ArtBox":
        """``"0.09,0.12,0.91,0.46"`` (left, top, right, bottom)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise InputError(f"art box {text!r}: give four fractions left,top,right,bottom, e.g. 0.09,0.12,0.91,0.46")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise InputError(f"art box {text!r}: not four numbers") from None
        return cls(*values)

    def text(self) -> str:
        return ",".join(f"{v:g}" for v in (self.left, self.top, self.right, self.bottom))

    @property
    def tag(self) -> str:
        """Short stable name of the box: crops made with another box live elsewhere."""
        return hashlib.sha256(self.text().encode()).hexdigest()[:10]

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The box in pixels of a ``width`` x ``height`` card (inner edges rounded inwards)."""
        box = (math.ceil(self.left * width), math.ceil(self.top * height), math.floor(self.right * width), math.floor(self.bottom * height))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise InputError(f"art box {self.text()} is empty on a {width}x{height} image")
        return box


DEFAULT_ART_BOX = ArtBox()


def crop_artwork(source: str | Path, target: str | Path, box: ArtBox = DEFAULT_ART_BOX) -> Path:
    """Write the artwork of the card image ``source`` to ``target`` (PNG) and return it.

    Raises ``ValueError`` naming the file when it is not a readable image."""
    source, target = Path(source), Path(target)
    try:
        with Image.open(source) as card:
            card.load()
            rgb = card.convert("RGBA").convert("RGB") if card.mode in ("P", "LA", "PA") else card.convert("RGB")
    except Exception as exc:  # any decoder failure is this file's problem
        raise ValueError(f"cannot decode card image {source.name}: {type(exc).__name__}: {exc}") from exc
    art = rgb.crop(box.pixels(*rgb.size))
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        art.save(tmp, format="PNG")
    return target


__all__ = ["ArtBox", "DEFAULT_ART_BOX", "crop_artwork"]

"""The critters image tower: a small CNN trained to meet frozen MiniLM text embeddings.

Kept small (a few MB of float32) so that it trains on two CPU cores in minutes and
ships inside the package; the checksum recorded at training time is verified on load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = "critters-image-tower.safetensors"
CONFIG_FILE = "critters-image-tower.json"


@dataclass(frozen=True)
class TowerConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 96, 128)
    embed_dim: int = 384  # all-MiniLM-L6-v2's output size

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TowerConfig:
        return cls(image_size=int(data["image_size"]), channels=tuple(int(c) for c in data["channels"]), embed_dim=int(data["embed_dim"]))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out


def build_tower(config: TowerConfig) -> nn.Module:
    """Stages of (stride-2 conv, conv), each with BN-ReLU -> mean+max pooling -> MLP into the text space."""
    import torch
    from torch import nn

    class ImageTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 3
            for c_out in config.channels:
                layers += [
                    nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Linear(2 * c_in, 2 * c_in), nn.ReLU(inplace=True), nn.Linear(2 * c_in, config.embed_dim))
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = self.features(pixels)
            pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
            return nn.functional.normalize(self.head(pooled), dim=-1)

    return ImageTower()


MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32)


def images_to_array(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """RGB images -> (B, 3, size, size) float32, normalised; pure numpy so it runs in any thread."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        out[i] = ((arr - MEAN) / STD).transpose(2, 0, 1)
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_tower(model: nn.Module, config: TowerConfig, directory: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write weights (safetensors) and a JSON config with the training record and checksum."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt"})
    record = {"tower": config.to_dict(), "sha256": file_sha256(weights), "size_bytes": weights.stat().st_size, **metadata}
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def load_tower(directory: Path = WEIGHTS_DIR) -> tuple[nn.Module, TowerConfig, dict[str, Any]]:
    """(model in eval mode, config, record); verifies the checksum recorded at training time."""
    from safetensors.torch import load_file

    from cotembed.errors import ModelLoadError

    config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.exists() or not weights.exists():
        raise ModelLoadError(f"critters weights not found in {directory}; train them with `cotembed critters train`")
    record = json.loads(config_path.read_text(encoding="utf-8"))
    actual = file_sha256(weights)
    if actual != record["sha256"]:
        raise ModelLoadError(f"{weights}: checksum {actual[:12]} does not match the recorded {record['sha256'][:12]}")
    config = TowerConfig.from_dict(record["tower"])
    model = build_tower(config)
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), config, record

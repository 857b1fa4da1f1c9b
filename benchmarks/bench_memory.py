"""Peak memory of ``cotembed eval`` on folders of growing size: it should stay flat.

cotembed lists inputs without reading them and streams pixels batch by batch, and
``eval`` keeps only counts, so peak memory should depend on the model and batch
size, not on how many images the folder holds. This script generates ImageFolder
trees of N small PNGs (default N = 1,000 and 5,000), runs the real CLI
(``python -m cotembed.cli eval ... --no-cache --format json``) on each in a fresh
subprocess with a small randomly initialised CLIP, and reads that child's own peak
RSS from ``os.wait4`` (per child, so the runs' peaks do not mix).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import build_random_clip
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
SMALL_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 8}
SMALL_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 40}
SYSTEM = {
    "name": "colours",
    "groups": {
        "colour": {"prompt": "a photo of something {}", "options": list(COLOURS)},
        "shape": {"prompt": "it is shaped like a {}", "options": ["square", "disc"]},
    },
    "rules": {f"{c}-thing": {"colour": c, "shape": ["square", "disc"]} for c in COLOURS},
}


def make_folder(root: Path, count: int, size: int, seed: int) -> Path:
    """ImageFolder layout root/<colour>-thing/<i>.png, noisy colour with a square or a disc."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    for i in range(count):
        colour = names[i % len(names)]
        pixels = np.clip(np.asarray(COLOURS[colour]) + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(pixels)
        lo, hi = sorted(int(v) for v in rng.integers(0, size, 2))
        draw = ImageDraw.Draw(img)
        (draw.ellipse if i % 2 else draw.rectangle)((lo, lo, hi, hi), outline=(255, 255, 255))
        path = root / f"{colour}-thing" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
    return root


def run_child(command: list[str], log_dir: Path, tag: str) -> tuple[int, float, float, Path]:
    """Run one CLI child; return (exit code, its peak RSS in MiB, wall seconds, stdout file)."""
    out, err = log_dir / f"{tag}.out", log_dir / f"{tag}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    if code != 0:
        sys.stderr.write(err.read_text(errors="replace"))
    return code, usage.ru_maxrss / 1024, wall, out  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated folder sizes (images)")
    parser.add_argument("--image-size", type=int, default=64, help="generated PNGs are this many pixels square")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--verb", choices=("eval", "classify"), default="eval",
                        help="eval keeps counts only; classify also returns one prediction per image (output grows)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")})

    rows = []
    with tempfile.TemporaryDirectory(prefix="cotembed-mem-") as tmp:
        root = Path(tmp)
        print("building a small random CLIP ...", file=sys.stderr)
        model_dir = build_random_clip(root / "clip", SMALL_VISION, SMALL_TEXT, projection_dim=32, image_size=32, seed=args.seed)
        system_path = root / "system.json"
        system_path.write_text(json.dumps(SYSTEM, indent=2))
        for n in sizes:
            print(f"generating {n} images ...", file=sys.stderr)
            folder = make_folder(root / f"images-{n}", n, args.image_size, args.seed)
            command = [sys.executable, "-m", "cotembed.cli", args.verb, str(system_path), str(folder),
                       "--model", f"hf:{model_dir}", "--no-cache", "-q", "--format", "json", "--batch-size", str(args.batch_size)]
            print(f"running: {' '.join(command)}", file=sys.stderr)
            code, peak_mib, wall, out = run_child(command, root, f"run-{n}")
            if code != 0:
                raise SystemExit(f"cotembed {args.verb} on {n} images failed with exit code {code}")
            report = json.loads(out.read_text())
            done = report["n_images"] if args.verb == "eval" else len(report["predictions"])
            if done != n:
                raise SystemExit(f"cotembed {args.verb} classified {done} of {n} images")
            rows.append((n, peak_mib, wall))

    print(f"cotembed {args.verb}, small random CLIP (vision hidden 64, 2 layers, 32 px input), "
          f"{args.image_size}x{args.image_size} PNGs, batch {args.batch_size}, --no-cache; each run in a fresh process")
    print(f"{'images':>8}  {'peak RSS MiB':>12}  {'wall s':>7}  {'images/s':>8}  exit")
    for n, peak, wall in rows:
        print(f"{n:>8}  {peak:>12.1f}  {wall:>7.1f}  {n / wall:>8.0f}  0 (n_images == {n})")
    (n0, p0, w0), (n1, p1, w1) = rows[0], rows[-1]
    print(f"growth {n0} -> {n1} images: {p1 - p0:+.1f} MiB ({(p1 - p0) / p0 * 100:+.1f}%)"
          + (f", {(p1 - p0) * 2**20 / (n1 - n0):.0f} bytes per extra image" if n1 > n0 else ""))
    print("(wall and images/s include interpreter start-up and model loading"
          + (f"; marginal rate {n0} -> {n1}: {(n1 - n0) / (w1 - w0):.0f} images/s)" if n1 > n0 else ")"))


if __name__ == "__main__":
    main()

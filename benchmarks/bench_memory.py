"""Peak memory of ``cotembed eval``: flat as the folder grows, and flat as the images grow.

cotembed lists inputs without reading them, streams pixels batch by batch, and shrinks
each image as soon as it is decoded, so peak memory should depend on the model and the
batch size, not on how many images the folder holds nor on how many pixels each has.

Each case runs the real CLI (``python -m cotembed.cli eval ... --no-cache --format json``)
in a fresh subprocess with a small randomly initialised CLIP (224 px input, like the
common real ones, so images are shrunk to what a real model would keep), and reads that
child's own peak RSS from ``os.wait4`` (per child, so the runs' peaks do not mix). Linux
counts the launching process's own peak into a child's (the memory it had until ``exec``),
so this script stays small: the model and the images are made in helper processes, and
the launcher's own peak is printed to show it is below every figure.

Cases (``--cases``, default ``small,12mp-half,12mp,huge``):

* ``small``: N small PNGs (``--small-size`` px square), the reference;
* ``12mp-half`` / ``12mp``: N/2 and N 4000x3000 PNGs (flat as the folder grows);
* ``huge``: one 12000x12000 PNG (144 MP), run with ``COTEMBED_MAX_PIXELS`` raised above it.

The 12-MP PNGs are written once (a gradient with noise, ``compress_level=1``) and copied
with a distinct text chunk each, so every file has different bytes (and is decoded: the
pipeline skips repeated content) while costing one encode to make. Generated data is kept
in ``--data-dir`` for the next run. ``--src DIR`` runs the children against another
checkout's ``src`` (e.g. an older commit in a ``git worktree``) to measure a before figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

COLOURS = ("red", "green", "blue", "yellow")
SMALL_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": 32}
SMALL_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 40}
SYSTEM = {
    "name": "colours",
    "groups": {
        "colour": {"prompt": "a photo of something {}", "options": list(COLOURS)},
        "shape": {"prompt": "it is shaped like a {}", "options": ["square", "disc"]},
    },
    "rules": {f"{c}-thing": {"colour": c, "shape": ["square", "disc"]} for c in COLOURS},
}
TWELVE_MP = (4000, 3000)
HUGE = (12000, 12000)


def gradient_png(path: Path, width: int, height: int, seed: int, compress_level: int = 1) -> Path:
    """A colour gradient with noise, built in row strips (a 144 MP image never exists in float)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    x = np.arange(width, dtype=np.int32)[None, :]
    for top in range(0, height, 500):
        y = np.arange(top, min(top + 500, height), dtype=np.int32)[:, None]
        noise = rng.integers(-6, 7, size=(y.shape[0], width, 3), dtype=np.int32)
        strip = np.stack([x * 255 // width + 0 * y, y * 255 // height + 0 * x, (x + y) * 255 // (width + height)], axis=-1)
        pixels[top : top + y.shape[0]] = np.clip(strip + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, compress_level=compress_level)
    return path


def copy_with_text_chunk(src: Path, dst: Path, text: str) -> None:
    """The same PNG with a tEXt chunk after IHDR: other bytes (another cache key), same
    pixels. Streamed, so the launcher never holds a large file."""
    body = b"Comment\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.write(fin.read(ihdr_end))
        fout.write(chunk)
        shutil.copyfileobj(fin, fout, 1 << 20)


def image_folder(root: Path, files: list[Path]) -> Path:
    """ImageFolder layout of hard links (no extra disk) spread over the system's classes."""
    if root.exists():
        shutil.rmtree(root)
    for i, src in enumerate(files):
        dst = root / f"{COLOURS[i % len(COLOURS)]}-thing" / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    return root


def big_files(data_dir: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` distinct PNGs of one generated picture (made once, then kept)."""
    store = data_dir / f"png-{size[0]}x{size[1]}"
    base = store / "base.png"
    if not base.exists():
        print(f"generating a {size[0]}x{size[1]} PNG ...", file=sys.stderr)
        helper("png", str(base), str(size[0]), str(size[1]), "0", "1")
    files = []
    for i in range(count):
        path = store / f"{i:05d}.png"
        if not path.exists():
            copy_with_text_chunk(base, path, f"copy {i}")
        files.append(path)
    return files


def small_files(data_dir: Path, count: int, side: int) -> list[Path]:
    store = data_dir / f"png-small-{side}"
    files = [store / f"{i:05d}.png" for i in range(count)]
    if not all(path.exists() for path in files):
        helper("smalls", str(store), str(side), str(count))
    return files


def helper(task: str, *args: str) -> None:
    """Run one memory-hungry preparation step in its own process (see the module docstring)."""
    subprocess.run([sys.executable, __file__, "--helper", task, *args], check=True)


def run_helper(task: str, args: list[str]) -> None:
    if task == "png":
        path, width, height, seed, level = args
        gradient_png(Path(path), int(width), int(height), int(seed), int(level))
    elif task == "smalls":
        folder, side, count = args
        for i in range(int(count)):
            gradient_png(Path(folder) / f"{i:05d}.png", int(side), int(side), seed=i, compress_level=6)
    elif task == "model":
        from _common import build_random_clip

        build_random_clip(Path(args[0]), SMALL_VISION, SMALL_TEXT, projection_dim=32, image_size=224, seed=int(args[1]))
    else:
        raise SystemExit(f"unknown helper task {task}")


def run_child(command: list[str], env: dict[str, str], log_dir: Path, tag: str) -> tuple[int, float, float, Path]:
    """Run one CLI child; return (exit code, its peak RSS in MiB, wall seconds, stdout file)."""
    out, err = log_dir / f"{tag}.out", log_dir / f"{tag}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
    if code != 0:
        sys.stderr.write(err.read_text(errors="replace")[-4000:])
    return code, usage.ru_maxrss / 1024, wall, out  # ru_maxrss is in KiB on Linux


def images_done(report: dict) -> int | None:
    for key in ("n_images", "n"):
        if isinstance(report.get(key), int):
            return int(report[key])
    return len(report["predictions"]) if isinstance(report.get("predictions"), list) else None


@dataclass
class Case:
    name: str
    label: str
    files: list[Path]
    env: dict[str, str]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--helper":
        run_helper(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images in the small and 12mp cases (12mp-half: half)")
    parser.add_argument("--cases", default="small,12mp-half,12mp,huge", help="comma-separated: small, 12mp-half, 12mp, huge")
    parser.add_argument("--small-size", type=int, default=224, help="side of the small PNGs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "cotembed-bench-memory",
                        help="generated images are kept here and reused (delete it when done)")
    parser.add_argument("--src", type=Path, default=None, help="run the children against this src folder (PYTHONPATH)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    n = args.images

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.src.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    where = subprocess.run([sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('cotembed').origin)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()

    data_dir: Path = args.data_dir
    makers = {
        "small": lambda: Case("small", f"{args.small_size}x{args.small_size} PNG", small_files(data_dir, n, args.small_size), {}),
        "12mp-half": lambda: Case("12mp-half", "4000x3000 PNG", big_files(data_dir, n // 2, TWELVE_MP), {}),
        "12mp": lambda: Case("12mp", "4000x3000 PNG", big_files(data_dir, n, TWELVE_MP), {}),
        "huge": lambda: Case("huge", "12000x12000 PNG", big_files(data_dir, 1, HUGE), {"COTEMBED_MAX_PIXELS": str(2 * HUGE[0] * HUGE[1])}),
    }
    unknown = set(wanted) - set(makers)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))} (choose from {', '.join(makers)})")

    rows = []
    with tempfile.TemporaryDirectory(prefix="cotembed-mem-") as tmp:
        root = Path(tmp)
        print("building a small random CLIP ...", file=sys.stderr)
        model_dir = root / "clip"
        helper("model", str(model_dir), str(args.seed))
        system_path = root / "system.json"
        system_path.write_text(json.dumps(SYSTEM, indent=2))
        for name in wanted:
            case = makers[name]()
            folder = image_folder(root / f"images-{name}", case.files)
            command = [sys.executable, "-m", "cotembed.cli", "eval", str(system_path), str(folder),
                       "--model", f"hf:{model_dir}", "--no-cache", "-q", "--format", "json", "--batch-size", str(args.batch_size)]
            print(f"running {name}: {' '.join(command)}", file=sys.stderr)
            code, peak_mib, wall, out = run_child(command, {**env, **case.env}, root, f"run-{name}")
            if code != 0:
                raise SystemExit(f"cotembed eval on case {name} failed with exit code {code}")
            done = images_done(json.loads(out.read_text()))
            if done is not None and done != len(case.files):
                raise SystemExit(f"cotembed eval classified {done} of {len(case.files)} images in case {name}")
            rows.append((case, peak_mib, wall))

    import resource

    launcher = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cotembed eval from {where}; launcher's own peak RSS {launcher:.1f} MiB (a floor for every figure below)")
    print(f"small random CLIP (224 px input, vision hidden 64, 2 layers), batch {args.batch_size}, --no-cache; "
          "each case in a fresh process; peak RSS of that process")
    small = next((peak for case, peak, _ in rows if case.name == "small"), None)
    print(f"{'case':<10}  {'images':>6}  {'each':<16}  {'peak RSS MiB':>12}  {'vs small':>8}  {'wall s':>7}")
    for case, peak, wall in rows:
        ratio = f"{peak / small:.2f}x" if small else "-"
        print(f"{case.name:<10}  {len(case.files):>6}  {case.label:<16}  {peak:>12.1f}  {ratio:>8}  {wall:>7.1f}")
    peaks = {case.name: peak for case, peak, _ in rows}
    if "small" in peaks and "12mp" in peaks:
        ratio = peaks["12mp"] / peaks["small"]
        print(f"ratio {n} 12-MP / {n} small: {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
    if "12mp-half" in peaks and "12mp" in peaks:
        print(f"growth {n // 2} -> {n} 12-MP images: {peaks['12mp'] - peaks['12mp-half']:+.1f} MiB")


if __name__ == "__main__":
    main()

"""Encoding throughput: cotembed's streaming pipeline vs the bare model forward.

The pipeline reads, hashes, decodes and preprocesses each batch in a worker thread
while the main thread runs the model on the previous one, so end-to-end it should
run close to the speed of the model alone. This script measures both on a randomly
initialised ViT-B/32-sized CLIP (transformers' CLIPConfig defaults) loaded through
the real ``load_encoder("hf:<dir>")`` path, over generated JPEGs of varied sizes:

(a) pipeline: ``stream_embeddings(collect_samples([folder]), encoder, NoCache())``;
(b) bare: ``model.get_image_features`` on pixel tensors preprocessed beforehand.

The ratio (a)/(b) is the pipeline's efficiency; the target is >= 0.9.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _common import build_random_clip

VIT_B32_VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 32}
VIT_B32_TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}


def make_jpegs(folder: Path, count: int, seed: int) -> tuple[list[Path], list[tuple[int, int]]]:
    """Noise backgrounds with random shapes, 300x240 to 640x480, so decode and resize do real work."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, sizes = [], []
    for i in range(count):
        w, h = int(rng.integers(300, 641)), int(rng.integers(240, 481))
        sizes.append((w, h))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            box = (x0, y0, x0 + int(rng.integers(20, w - x0 + 1)), y0 + int(rng.integers(20, h - y0 + 1)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        paths.append(folder / f"{i:05d}.jpg")
        img.save(paths[-1], quality=90)
    return paths, sizes


def time_pipeline(samples, encoder, batch_size: int) -> float:
    from cotembed._pipeline import stream_embeddings
    from cotembed.cache import NoCache

    t0 = time.perf_counter()
    n = sum(len(b.samples) for b in stream_embeddings(samples, encoder, NoCache(), batch_size=batch_size))
    elapsed = time.perf_counter() - t0
    assert n == len(samples), f"pipeline embedded {n} of {len(samples)} images"
    return elapsed


def time_forward(forward, batches) -> float:
    t0 = time.perf_counter()
    for batch in batches:
        forward(batch)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="each measurement: best of this many passes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own); fewer than the cores leaves one for preprocessing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from cotembed.data import collect_samples
    from cotembed.encoders import load_encoder

    with tempfile.TemporaryDirectory(prefix="cotembed-bench-") as tmp:
        root = Path(tmp)
        print("building a random ViT-B/32-sized CLIP and generating images ...", file=sys.stderr)
        model_dir = build_random_clip(root / "clip", VIT_B32_VISION, VIT_B32_TEXT, projection_dim=512, image_size=224, seed=args.seed)
        paths, sizes = make_jpegs(root / "images", args.images, args.seed)
        encoder = load_encoder(f"hf:{model_dir}", device="cpu", batch_size=args.batch_size)
        model = encoder.model
        vision = model.config.vision_config
        n_params = sum(p.numel() for p in model.vision_model.parameters()) + sum(p.numel() for p in model.visual_projection.parameters())
        samples = collect_samples([root / "images"])

        print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, device={encoder.device}")
        print(f"model: random CLIP vision hidden={vision.hidden_size} layers={vision.num_hidden_layers} "
              f"patch={vision.patch_size} image={vision.image_size} projection={model.config.projection_dim} "
              f"({n_params / 1e6:.1f} M vision params); processor {type(encoder.image_processor).__name__}")
        widths, heights = zip(*sizes)
        print(f"images: {len(paths)} JPEGs, {min(widths)}-{max(widths)} x {min(heights)}-{max(heights)} px, "
              f"{sum(p.stat().st_size for p in paths) / 2**20:.1f} MiB; batch size {args.batch_size}")

        def decode(p: Path) -> Image.Image:
            with Image.open(p) as img:
                return img.convert("RGB")

        def prepare(chunk: list[Path]):
            return encoder.preprocess([decode(p) for p in chunk])

        chunks = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
        batches = [prepare(chunk) for chunk in chunks]

        def raw_forward(batch) -> None:
            with torch.inference_mode():
                model.get_image_features(pixel_values=batch["pixel_values"])

        print("warming up ...", file=sys.stderr)
        time_pipeline(samples[: args.batch_size], encoder, args.batch_size)
        raw_forward(batches[0])

        passes = []
        for r in range(args.repeats):  # interleaved, so load from elsewhere hits all three alike
            passes.append((time_pipeline(samples, encoder, args.batch_size), time_forward(raw_forward, batches),
                           time_forward(encoder.encode_preprocessed, batches), time_forward(prepare, chunks)))
            print("  pass {}: pipeline {:.2f} s, bare {:.2f} s, encode_preprocessed {:.2f} s, "
                  "decode+preprocess {:.2f} s".format(r + 1, *passes[-1]), file=sys.stderr)
        pipeline_s, bare_s, encoder_s, prepare_s = (min(column) for column in zip(*passes))

    n = len(paths)
    ratio = bare_s / pipeline_s
    print()
    print(f"{'(a) pipeline, end to end':<44}{n / pipeline_s:7.1f} images/s  ({pipeline_s:.2f} s for {n})")
    print(f"{'(b) bare model.get_image_features':<44}{n / bare_s:7.1f} images/s  ({bare_s:.2f} s for {n})")
    print(f"{'    encoder.encode_preprocessed':<44}{n / encoder_s:7.1f} images/s  ({encoder_s:.2f} s for {n})")
    print(f"{'    decode + preprocess alone, main thread':<44}{n / prepare_s:7.1f} images/s  ({prepare_s:.2f} s for {n}, "
          f"{prepare_s / bare_s:.0%} of the bare forward time)")
    print(f"{'ratio pipeline / bare':<44}{ratio:7.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    print(f"(best of {args.repeats} passes each; {torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()

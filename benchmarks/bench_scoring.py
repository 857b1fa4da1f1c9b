"""Scoring throughput on cached embeddings: cotembed's batched matrices vs the article's loop.

Once image and prompt embeddings are cached, re-scoring a data set with a new or
edited system costs only the scoring step. cotembed does it for a whole batch
with two matrix products and a vectorised per-group softmax; the seed article
scores one image at a time with Python dicts and loops. This script times both
on the same random embeddings and a random system (default: 10,000 images,
10 groups x 100 options = Q 1,000 prompts, N 1,000 classes, D 512) and checks
that they predict the same classes.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cotembed.scoring import Scorer, ScoringConfig, l2_normalize
from cotembed.system import System


def blas_info() -> str:
    """Which BLAS numpy uses and with how many threads (matrix products dominate (a))."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{config.get('name')} {config.get('version')} (threadpoolctl not installed: thread count unknown)"
    rows = [i for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(f"{i['internal_api']} {i.get('version')} arch={i.get('architecture')} threads={i['num_threads']}" for i in rows)


def random_system(groups: int, options: int, classes: int, rng: np.random.Generator) -> tuple[System, dict[str, dict[str, int]]]:
    """G groups of O options, N classes each naming one random option per group (article-shaped rules)."""
    group_specs = {f"g{g}": {"prompt": f"question {g}: {{}}", "options": [f"o{g}_{o}" for o in range(options)]} for g in range(groups)}
    rules = {f"class{n}": {f"g{g}": int(rng.integers(options)) for g in range(groups)} for n in range(classes)}
    return System.from_dict({"groups": group_specs, "rules": rules}), rules


def batched_predict(scorer: Scorer, images: np.ndarray, chunk: int) -> np.ndarray:
    """What CoTClassifier.scores_from_embeddings does (method "cot"), then argmax."""
    return scorer.scores(images, "cot", chunk=chunk).argmax(axis=1)


def article_loop(image_embeddings, text_embeddings, group_sizes, rules, temperature):
    """The article's classify_pokemon, one image at a time (embeddings already computed).

    The article's softmax has no explicit temperature; both paths use the same one
    here so that their predictions can be compared.
    """
    def cosine_similarity(a, b):
        return (b @ a) / (np.linalg.norm(b, axis=1) * np.linalg.norm(a))

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    class_names = list(rules)
    predictions = []
    for image_embedding in image_embeddings:
        similarities = cosine_similarity(image_embedding, text_embeddings)
        probabilities = {}
        start = 0
        for group_name, size in group_sizes.items():
            probabilities[group_name] = softmax(temperature * similarities[start : start + size])
            start += size
        scores = {}
        for pokemon, pokemon_rules in rules.items():
            score = 0
            for group, target_idx in pokemon_rules.items():
                score += probabilities[group][target_idx]
            scores[pokemon] = score
        predictions.append(class_names.index(max(scores, key=scores.get)))
    return np.asarray(predictions)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def floor_comparison(scorer: Scorer, images: np.ndarray, prompts: np.ndarray, repeats: int) -> dict[str, float]:
    """Scorer.scores against its floor: the two whole-matrix products alone, written into
    preallocated arrays (``np.matmul(..., out=)``), with nothing else (no softmax, no
    normalisation, no chunking). Interleaved, best of ``repeats`` each, so load on the
    machine hits both alike. Also the unfused path (each chunk through Batch and the
    method's own ``score``), which any method besides cot takes."""
    from cotembed.scoring import get_method

    rule_matrix = np.ascontiguousarray(scorer.compiled.rule_matrix, dtype=np.float32)
    prompts_t = np.ascontiguousarray(prompts.T)
    sims = np.empty((len(images), prompts.shape[0]), dtype=np.float32)
    classes = np.empty((len(images), rule_matrix.shape[1]), dtype=np.float32)
    cot = get_method("cot")

    def floor() -> None:
        np.matmul(images, prompts_t, out=sims)
        np.matmul(sims, rule_matrix, out=classes)

    def unfused() -> None:
        out = np.empty_like(classes)
        for rows, batch in scorer.batches(images, ("cot",)):
            out[rows] = cot.score(batch)

    contenders = {"floor": floor, "scores": lambda: scorer.scores(images, "cot"), "unfused": unfused}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()  # warm-up: page in, BLAS threads up
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--options", type=int, default=100, help="options per group (Q = groups x options)")
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=100.0)
    parser.add_argument("--chunks", default="0,2048", help="batched chunk sizes to try; 0 = all images in one call")
    parser.add_argument("--repeats", type=int, default=3, help="batched timings: best of this many")
    parser.add_argument("--loop-images", type=int, default=None, help="time the loop on this many images and extrapolate (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor-repeats", type=int, default=9, help="floor comparison: best of this many, interleaved")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    system, rules = random_system(args.groups, args.options, args.classes, rng)
    compiled = system.compile()
    q, n, d = compiled.n_prompts, compiled.n_classes, args.dim
    images = l2_normalize(rng.standard_normal((args.images, d), dtype=np.float32))
    prompts = l2_normalize(rng.standard_normal((q, d), dtype=np.float32))
    names = l2_normalize(rng.standard_normal((n, d), dtype=np.float32))
    scorer = Scorer(system, {"options": prompts, "names": names}, ScoringConfig(args.temperature), ("cot",))

    print(f"numpy {np.__version__}, BLAS: {blas_info()}")
    print(f"images={args.images}  Q={q} ({args.groups} groups x {args.options} options)  N={n}  D={d}  temperature={args.temperature:g}")

    batched_predict(scorer, images[:256], 256)  # warm-up
    timings = {}
    for chunk in (int(c) for c in args.chunks.split(",")):
        size = chunk or args.images
        timings[size] = best_time(lambda size=size: batched_predict(scorer, images, size), args.repeats)
        print(f"  batched, chunks of {size:>6}: {timings[size]:.3f} s (best of {args.repeats})", file=sys.stderr)
    best_chunk = min(timings, key=timings.get)
    batched_s = timings[best_chunk]
    batched = batched_predict(scorer, images, best_chunk)

    k = min(args.loop_images or args.images, args.images)
    group_sizes = {g.name: len(g.options) for g in system.groups}
    article_loop(images[:2], prompts, group_sizes, rules, args.temperature)  # warm-up
    print(f"  running the article's loop on {k} images ...", file=sys.stderr)
    t0 = time.perf_counter()
    looped = article_loop(images[:k], prompts, group_sizes, rules, args.temperature)
    loop_measured = time.perf_counter() - t0
    loop_s = loop_measured * args.images / k
    agreement = float((looped == batched[:k]).mean()) * 100

    print()
    print(f"{'images':<34}{args.images}")
    print(f"{'Q option prompts':<34}{q}")
    print(f"{'N classes':<34}{n}")
    print(f"{'D':<34}{d}")
    for size, secs in timings.items():
        print(f"{f'batched s (chunks of {size})':<34}{secs:.3f}  ({args.images / secs:,.0f} images/s)")
    print(f"{'batched s (best)':<34}{batched_s:.3f}  (chunks of {best_chunk}; target < 1 s: {'met' if batched_s < 1 else 'NOT met'})")
    extrapolated = f"  (measured {loop_measured:.2f} s on {k} images, extrapolated x{args.images / k:g})" if k < args.images else ""
    print(f"{'article loop s':<34}{loop_s:.2f}{extrapolated}")
    print(f"{'speed-up (loop / batched)':<34}{loop_s / batched_s:,.0f}x")
    print(f"{'prediction agreement':<34}{agreement:.2f}% on the {k} images the loop ran")

    floor = floor_comparison(scorer, images, prompts, args.floor_repeats)
    print()
    print(f"Scorer.scores vs its floor (two whole-matrix np.matmul(..., out=) calls), best of {args.floor_repeats}, interleaved:")
    print(f"{'floor s (2 matmuls, out=)':<34}{floor['floor']:.3f}")
    ratio = floor["scores"] / floor["floor"]
    print(f"{'Scorer.scores s':<34}{floor['scores']:.3f}  ({ratio:.2f}x the floor; target <= 1.15x: {'met' if ratio <= 1.15 else 'NOT met'})")
    print(f"{'unfused path s (Batch + score)':<34}{floor['unfused']:.3f}  ({floor['unfused'] / floor['floor']:.2f}x the floor; "
          "the path of methods other than cot)")


if __name__ == "__main__":
    main()

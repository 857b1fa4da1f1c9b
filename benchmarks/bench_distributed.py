"""Beyond one process: classify on Ray Data vs the in-process CLI, and re-scoring stored embeddings.

1. Throughput: N generated critters images (default 10,000) classified by the CLI in one
   process (``cotembed classify``) and by ``cotembed classify --engine ray`` with 1 and 2
   actors, each a fresh process with no cache (so every image is decoded and embedded),
   wall time including start-up; for Ray also the same run less the start of its local
   cluster (``ray.init``, as the run itself times it), the fixed cost a long-running
   cluster pays once, not per run. Actor start and model load stay in both figures. Ray
   runs in a private network namespace with only loopback (``unshare -n``), where its
   local cluster binds to 127.0.0.1.
2. Re-scoring without a model: M stored embeddings (default 1,000,000, random unit vectors
   of the critters model's dimension) in a Parquet dataset, streamed batch by batch through
   the system's scorer (:class:`cotembed.distributed.batch.ScoreBatch`: prediction, score and
   per-question columns), in a fresh process whose prompt vectors come from the cache: the
   model is never loaded. Only the vectors (and the model key) are read, the next batch in a
   background thread while this one is scored on one BLAS thread. Peak memory (VmHWM of that
   process) at two batch sizes against the dataset's size; the ``binary`` vector layout
   (the default) against ``list`` at the same batch size (Parquet decodes a list value by
   value: apache/arrow#34510).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COTEMBED = str(BIN / "cotembed")
SYSTEM = ROOT / "examples" / "critters" / "system.yaml"
SPECIES = ROOT / "examples" / "critters" / "species.yaml"
MODEL = "critters"


def in_namespace(command: str) -> list[str]:
    """``command`` in a network namespace that has only loopback (Ray must not bind to the machine's address)."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    return [*unshare, "sh", "-c", f"ip link set lo up; RAY_USAGE_STATS_ENABLED=0 {command}"]


def images_folder(n: int, seed: int) -> tuple[Path, int]:
    """N critters images (rounded up to whole species), generated once and kept for reruns."""
    per_class = math.ceil(n / 28)
    folder = ROOT / ".cotembed-data" / f"bench-distributed-{per_class}x28-seed{seed}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([COTEMBED, "critters", "generate", "--species", str(SPECIES), "--per-class", str(per_class), "--seed", str(seed),
                        "--out", str(folder), "-q"], check=True, stdout=subprocess.DEVNULL)
        (folder / ".complete").touch()
    return folder, sum(1 for _ in folder.rglob("*.png"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} ... failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, json.loads(result.stdout)


def throughput(folder: Path, n: int, actors: list[int], work: Path, env: dict[str, str]) -> list[tuple[str, float, dict]]:
    rows = []
    argv = [COTEMBED, "classify", str(SYSTEM), str(folder), "--model", MODEL, "--no-cache", "-q", "--format", "json", "--top-k", "1"]
    seconds, payload = timed(argv, env)
    local = {p["input"]: p["prediction"] for p in payload["predictions"]}
    rows.append(("in-process CLI", seconds, {"predictions": len(local), "start": 0.0}))
    print(f"  in-process: {seconds:.1f} s", file=sys.stderr)
    for k in actors:
        out = work / f"ray-{k}"
        shutil.rmtree(out, ignore_errors=True)
        command = " ".join([COTEMBED, "classify", str(SYSTEM), str(folder), "--model", MODEL, "--engine", "ray", "--actors", str(k),
                            "--out", str(out), "--no-cache", "-q", "--format", "json"])
        seconds, payload = timed(in_namespace(command), env)
        import pyarrow.parquet as pq

        from cotembed._parquet import part_files

        table = pq.read_table(part_files(out), columns=["path", "prediction"])
        remote = dict(zip(table.column("path").to_pylist(), table.column("prediction").to_pylist()))
        same = sum(remote.get(p) == c for p, c in local.items())
        start = float(payload.get("cluster_start_seconds", 0.0))
        rows.append((f"Ray Data, {k} actor{'s' if k > 1 else ''}", seconds, {"identical": same, "of": len(local), "start": start}))
        print(f"  ray x{k}: {seconds:.1f} s (cluster start {start:.1f} s)", file=sys.stderr)
    return rows


RESCORE_CHILD = r"""
import json, sys, time
from cotembed.cache import EmbeddingCache
from cotembed._classifier import resolve_temperature
from cotembed.distributed.batch import ScoreBatch
from cotembed._embeddings import PromptBank
from cotembed.encoders import load_encoder
from cotembed._parquet import iter_batches
from cotembed.scoring import Scorer, ScoringConfig
from cotembed.scoring._threads import single_blas_thread
from cotembed.system import System

directory, cache_path, system_path, batch_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
system = System.load(system_path)
with EmbeddingCache(cache_path, readonly=True) as cache:
    encoder = load_encoder("critters", lazy=True, info_store=cache)
    config = ScoringConfig(resolve_temperature(None, system, encoder))
    vectors = Scorer.build(system, PromptBank(encoder, cache).embed, config, ("cot",)).prompt_vectors
    loaded = encoder.loaded
score = ScoreBatch(system, vectors, config.temperature, answers=False)
rows = 0
t0, cpu0 = time.perf_counter(), time.process_time()
with single_blas_thread():  # the other core reads the next batch
    for batch in iter_batches(directory, batch_rows=batch_rows, columns=(), prefetch=True):
        out = score({"embedding": batch.embeddings})
        rows += len(out["prediction"])
seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # kB; reset at exec
print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak / 1024, "model_loaded": loaded}))
"""


def rescore(rows: int, batches: list[int], work: Path, env: dict[str, str]) -> tuple[int, list[dict]]:
    """Each layout's dataset written, then re-scored: ``binary`` at every batch size, ``list`` at the largest."""
    import numpy as np

    from cotembed._embeddings import PromptBank
    from cotembed._parquet import EmbeddingWriter
    from cotembed.cache import EmbeddingCache
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    cache_path = work / "prompts.sqlite"
    with EmbeddingCache(cache_path) as cache:  # the prompts, embedded once (as any earlier run would have)
        encoder = load_encoder(MODEL, info_store=cache)
        compiled = System.load(SYSTEM).compile()
        PromptBank(encoder, cache).embed(list(compiled.prompts) + list(compiled.baseline_prompts))
        dim, key = int(encoder.dim), encoder.model_key
        encoder.close()
    results = []
    size = 0
    for layout, sizes in (("binary", batches), ("list", batches[-1:])):
        directory = work / f"embeddings-{layout}"
        rng = np.random.default_rng(0)
        with EmbeddingWriter(directory, key, dim, part_rows=100_000, vector_layout=layout) as writer:
            for start in range(0, rows, 100_000):
                n = min(100_000, rows - start)
                vectors = rng.standard_normal((n, dim), dtype=np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                hashes = [f"{i:064x}" for i in range(start, start + n)]
                writer.add([f"img/{i}.png" for i in range(start, start + n)], [None] * n, ["image"] * n, hashes, vectors)
        size = max(size, sum(p.stat().st_size for p in directory.glob("*.parquet")))
        for batch in sizes:
            out = subprocess.run([sys.executable, "-c", RESCORE_CHILD, str(directory), str(cache_path), str(SYSTEM), str(batch)],
                                 env=env, capture_output=True, text=True, timeout=3600)
            if out.returncode != 0:
                raise SystemExit(f"re-scoring failed:\n{out.stderr[-3000:]}")
            results.append({"layout": layout, "batch": batch, **json.loads(out.stdout)})
            print(f"  re-score, {layout}, batch {batch}: {results[-1]['seconds']:.1f} s", file=sys.stderr)
        shutil.rmtree(directory)
    return size, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--actors", default="1,2")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--rescore-rows", type=int, default=1_000_000)
    parser.add_argument("--rescore-batches", default="16384,65536", help="batch sizes for the memory comparison")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    load = os.getloadavg()[0]
    print(f"cores: {os.cpu_count()}  load average at start: {load:.1f}")
    if load > (os.cpu_count() or 1):
        print("caution: the machine is busy beyond its cores; a process whose work waits on all its threads (the in-process "
              "CLI's two intra-op threads) loses most, single-threaded actors least, so the ratios below favour Ray")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        work = Path(tmp)
        if not args.skip_throughput:
            folder, n = images_folder(args.images, args.seed)
            print(f"\n1. Classifying {n:,} generated critters images (model {MODEL}, no cache, fresh process each, wall time incl. start-up)")
            rows = throughput(folder, n, [int(a) for a in args.actors.split(",")], work, env)
            base = n / rows[0][1]
            print(f"{'engine':<24}{'seconds':>9}{'images/s':>10}{'vs in-process':>15}{'cluster start s':>17}"
                  f"{'images/s w/o':>14}{'vs in-process':>15}  predictions")
            for name, seconds, info in rows:
                rate, warm = n / seconds, n / (seconds - info["start"])
                same = f"{info['identical']:,} of {info['of']:,} identical" if "identical" in info else f"{info['predictions']:,}"
                print(f"{name:<24}{seconds:>9.1f}{rate:>10.0f}{rate / base:>14.2f}x{info['start']:>17.1f}{warm:>14.0f}{warm / base:>14.2f}x  {same}")
            print("(w/o: the same run less the start of Ray's local cluster; the in-process CLI has none to subtract. "
                  "Both include process start, prompt embedding, actor start and model load.)")
            if len(rows) > 2:
                last = rows[-1]
                ratio, warm_ratio = (n / last[1]) / base, (n / (last[1] - last[2]["start"])) / base
                print(f"target: Ray at {args.actors.split(',')[-1]} actors >= 0.8x in-process: "
                      f"{'met' if ratio >= 0.8 else 'NOT met'} including cluster start ({ratio:.2f}x), "
                      f"{'met' if warm_ratio >= 0.8 else 'NOT met'} without it ({warm_ratio:.2f}x)")
        print(f"\n2. Re-scoring {args.rescore_rows:,} stored embeddings from Parquet for the critters system, no model")
        size, results = rescore(args.rescore_rows, [int(b) for b in args.rescore_batches.split(",")], work, env)
        print(f"dataset on disk: {size / 2**20:,.0f} MiB ({args.rescore_rows:,} rows)")
        print(f"{'layout':<8}{'batch rows':>11}{'seconds':>9}{'inputs/s':>12}{'CPU s':>8}{'inputs/CPU s':>14}{'peak RSS MiB':>14}  model loaded")
        for r in results:
            print(f"{r['layout']:<8}{r['batch']:>11,}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>12,.0f}{r['cpu_seconds']:>8.2f}"
                  f"{r['rows'] / r['cpu_seconds']:>14,.0f}{r['peak_rss_mb']:>14,.0f}  {r['model_loaded']}")
        print("(CPU s: both cores' time in that process, reading and scoring; on a busy machine it moves less than wall time)")
        rate = {(r["layout"], r["batch"]): r["rows"] / r["seconds"] for r in results}
        for (layout, batch), value in rate.items():
            if layout == "list" and ("binary", batch) in rate:
                print(f"binary (default) vs list at {batch:,} rows per batch: {rate[('binary', batch)] / value:.2f}x the inputs/s")
        best = max(r["rows"] / r["seconds"] for r in results)
        print(f"target >= 200,000 inputs/s: {'met' if best >= 200_000 else 'NOT met'} ({best:,.0f}); peak memory follows the batch size, "
              f"not the {size / 2**20:,.0f} MiB dataset")
    print(f"\nmax RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()

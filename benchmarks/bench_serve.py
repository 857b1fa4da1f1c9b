"""Load test of ``cotembed serve``: throughput and latency at 1, 8 and 32 concurrent clients,
against the CLI's batch throughput on the same images, measured in the same run.

A real server (``cotembed serve --model critters --system examples/critters/system.yaml``)
runs in a child process on 127.0.0.1 and a free port; nothing leaves the machine. The
images are a generated critters split (``--per-class`` per species). Each request
classifies one image with the chain-of-thought system (the Jina shape plus ``system``),
as independent clients would send them. Both sides start from a cold cache (the server
with ``--no-cache``, the CLI with ``NoCache``), so every image is encoded by the model:
the ratio is what the HTTP layer and dynamic batching keep of the model's batch speed.

Bounded: ``--requests`` per concurrency level and ``--max-seconds`` per level (whichever
comes first). Every request must succeed (the queue limit is far above 32 clients); a
failure is printed and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPECIES = ROOT / "examples" / "critters" / "species.yaml"
SYSTEM = ROOT / "examples" / "critters" / "system.yaml"
LEVELS = (1, 8, 32)
TARGET_RATIO = 0.7
"""Served images/s at 32 clients over the CLI's batch images/s: what the service should keep."""


def say(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def generate(per_class: int, seed: int, out: Path) -> list[Path]:
    from cotembed_critters.species import generate_split

    generate_split(SPECIES, out, per_class, seed=seed, progress=False)
    return sorted(out.rglob("*.png"))


def cli_throughput(images: list[Path], repeats: int) -> tuple[float, int]:
    """Images/s of ``CoTClassifier.classify_samples`` (the CLI's ``classify``) with no cache,
    model loaded and prompts embedded beforehand, as in a running server; best of ``repeats``."""
    from cotembed.cache import NoCache
    from cotembed.classifier import CoTClassifier
    from cotembed.data import collect_samples
    from cotembed.encoders import load_encoder
    from cotembed.system import System

    encoder = load_encoder("critters")
    try:
        clf = CoTClassifier(System.load(SYSTEM), encoder, cache=NoCache())
        clf.scorer  # noqa: B018 - prompts embedded before timing, as the server does at start
        samples = collect_samples([str(p) for p in images])
        clf.classify_samples(samples[: min(32, len(samples))])  # warm-up
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            predictions, errors = clf.classify_samples(samples)
            seconds = time.perf_counter() - start
            if errors or len(predictions) != len(samples):
                raise SystemExit(f"CLI classify failed on {len(errors)} image(s)")
            best = max(best, len(samples) / seconds)
        return best, int(encoder.batch_size)
    finally:
        encoder.close()


def start_server(max_batch: int, max_wait_ms: float, pythonpath: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """``cotembed serve`` in a child process; ``pythonpath``: run another checkout's code instead (``--compare``)."""
    cmd = [sys.executable, "-m", "cotembed.cli", "serve", "--model", "critters", "--system", str(SYSTEM), "--host", "127.0.0.1",
           "--port", "0", "--no-cache", "--no-access-log", "--log-level", "warning", "--format", "json",
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("COTEMBED_API_KEY", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise SystemExit(f"server did not start (exit {proc.returncode}):\n{proc.stderr.read()[-3000:] if proc.stderr else ''}")
    return proc, json.loads(line)["url"]


async def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url}/health did not answer within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


async def load(url: str, bodies: list[bytes], clients: int, requests: int, max_seconds: float, per_request: int = 1) -> dict[str, Any]:
    """``clients`` independent clients (one connection each), each sending its next request when
    the last one is answered, until ``requests`` are sent or ``max_seconds`` have passed."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
    headers = {"content-type": "application/json"}
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + max_seconds

    async def one_client() -> None:
        nonlocal next_index
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
            while next_index < requests and time.perf_counter() < deadline:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200 or len(response.json()["data"]) != per_request:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    client_cpu = (time.process_time() - cpu_start) / seconds  # this process's CPU: the clients' share of the cores
    latencies.sort()
    return {
        "clients": clients, "sent": next_index, "ok": len(latencies), "failed": len(failures), "seconds": seconds,
        "per_s": per_request * len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "client_cpu": client_cpu, "failures": failures[:3],
    }


def batch_totals(url: str) -> tuple[float, float]:
    """(model batches, inputs in them) so far, from the server's own /metrics."""
    import httpx

    found = {"count": 0.0, "sum": 0.0}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for part in found:
            if line.startswith(f"cotembed_batch_size_{part}"):
                found[part] += float(line.rsplit(" ", 1)[1])
    return found["count"], found["sum"]


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far, from /proc; NaN elsewhere. Unlike wall
    time it barely depends on what else the machine runs, so servers compare fairly on a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=12, help="critters images per species (28 species; default: 12)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level (default: 600)")
    parser.add_argument("--max-seconds", type=float, default=40.0, help="time bound per level (default: 40)")
    parser.add_argument("--repeats", type=int, default=3, help="CLI timing runs, best kept (default: 3)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--images-per-request", default="1,8",
                        help="comma-separated request sizes, each measured at every concurrency level (default: 1,8)")
    parser.add_argument("--compare", default=None, metavar="PYTHONPATH",
                        help="also load a second server running the code on this PYTHONPATH (e.g. an older checkout's src), "
                             "level by level in turn with this one, so both see the same machine")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cotembed-bench-serve-") as tmp:
        images = generate(args.per_class, args.seed, Path(tmp) / "split")
        encoded = [{"image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        sizes = [int(k) for k in args.images_per_request.split(",")]
        bodies_by_size = {k: [json.dumps({"system": "critters", "input": [encoded[(i + j) % len(encoded)] for j in range(k)]}).encode()
                              for i in range(0, len(encoded), k)] for k in sizes}
        say(f"{len(images)} images; timing the CLI ...")
        cli_before, cli_batch = cli_throughput(images, args.repeats)
        servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            servers["this"] = start_server(args.max_batch, args.max_wait_ms)
            if args.compare is not None:
                servers["compare"] = start_server(args.max_batch, args.max_wait_ms, args.compare)
            for _, url in servers.values():
                asyncio.run(wait_ready(url))
                asyncio.run(load(url, bodies_by_size[sizes[0]], 8, min(64, args.requests), args.max_seconds, sizes[0]))  # warm-up
            rows = []
            for k in sizes:
                for clients in LEVELS:
                    for name, (proc, url) in servers.items():
                        say(f"{name}: {clients} client(s), {k} image(s) per request ...")
                        count, total = batch_totals(url)
                        cpu = process_cpu_s(proc.pid)
                        row = asyncio.run(load(url, bodies_by_size[k], clients, args.requests, args.max_seconds, k))
                        row["server_cpu_ms"] = 1000 * (process_cpu_s(proc.pid) - cpu) / max(1, row["ok"])
                        count_after, total_after = batch_totals(url)
                        row["batch"] = (total_after - total) / max(1.0, count_after - count)
                        row["per_request"] = k
                        row["server"] = name
                        rows.append(row)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            for proc, _ in servers.values():
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        say("timing the CLI again ...")
        cli_after, _ = cli_throughput(images, args.repeats)
    cli_per_s = max(cli_before, cli_after)  # the faster CLI figure: the ratio errs low, not high

    print(f"critters split: {len(images)} images of 64x64 ({args.per_class} per species, seed {args.seed}); "
          f"system examples/critters/system.yaml, method cot; cold cache on both sides")
    print(f"server: cotembed serve --model critters --no-cache --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} "
          f"(127.0.0.1; {args.images_per_request} image(s) per request)")
    print(f"CLI batch throughput (CoTClassifier.classify_samples, batch {cli_batch}, best of {args.repeats} before and "
          f"{args.repeats} after the load test): {cli_before:.1f} and {cli_after:.1f} images/s; the ratios use {cli_per_s:.1f}")
    print()
    server_col = args.compare is not None
    if server_col:
        print(f"server 'compare': the same command with PYTHONPATH={args.compare}, loaded in turn with 'this' at every level")
    print((f"{'server':>8}  " if server_col else "") + f"{'images/request':>14}  {'clients':>7}  {'requests':>8}  {'failed':>6}  {'images/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  "
          f"{'batch':>5}  {'server CPU/req':>14}  {'client CPU':>10}  {'vs CLI':>6}")
    for r in rows:
        print((f"{r['server']:>8}  " if server_col else "") + f"{r['per_request']:>14}  {r['clients']:>7}  {r['ok']:>8}  {r['failed']:>6}  "
              f"{r['per_s']:>8.1f}  {r['p50_ms']:>7.1f}  "
              f"{r['p99_ms']:>7.1f}  {r['batch']:>5.1f}  {r['server_cpu_ms']:>11.2f} ms  {100 * r['client_cpu']:>9.0f}%  {r['per_s'] / cli_per_s:>6.2f}")
    print(f"(batch: mean inputs per model batch the server formed at that level; p50/p99 are per request; server CPU/req: the "
          f"server process's CPU time (all threads, the model's included) per answered request; client CPU: the load "
          f"generator's own CPU time over the wall time, in % of one core, taken from the same {os.cpu_count()} core(s))")
    print()
    for k in sizes:
        row = {r["server"]: r for r in rows if r["per_request"] == k and r["clients"] == LEVELS[-1]}
        ratio = row["this"]["per_s"] / cli_per_s
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"served / CLI throughput at {LEVELS[-1]} clients, {k} image(s) per request: {ratio:.2f} (target >= {TARGET_RATIO}: {verdict})")
        if "compare" in row:
            print(f"  this / compare at {LEVELS[-1]} clients, {k} image(s) per request: {row['this']['per_s'] / row['compare']['per_s']:.2f} "
                  f"(compare / CLI: {row['compare']['per_s'] / cli_per_s:.2f})")
    failed = sum(r["failed"] for r in rows)
    for r in rows:
        for failure in r["failures"]:
            print(f"  failure at {r['clients']} clients ({r['server']}): {failure}")
    if failed:
        print(f"{failed} request(s) failed below the queue limit")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load test of ``cotembed serve``: throughput and latency at 1, 8 and 32 concurrent clients,
against the CLI's batch throughput on the same images, measured in the same run.

A real server (``cotembed serve --model critters --system examples/critters/system.yaml``)
runs in a child process on 127.0.0.1 and a free port; nothing leaves the machine. The
images are a generated critters split (``--per-class`` per species). Each request
classifies one image with the chain-of-thought system (the Jina shape plus ``system``),
as independent clients would send them. Both sides start from a cold cache (the server
with ``--no-cache``, the CLI with ``NoCache``), so every image is encoded by the model:
the ratio is what the HTTP layer and dynamic batching keep of the model's batch speed.

The served/CLI ratio at 32 clients is measured interleaved: each round times one CLI pass
over the images, loads a server, and times the CLI again, and the ratio uses the two CLI
passes around it; the rounds repeat (``--rounds``) and the median ratio is reported, so a
busy machine slows both sides of each ratio alike. Servers with 1 and 2 worker processes
(``--workers``) are loaded in turn, level by level, in the same run.

The load generator (``--client raw``, the default) is a minimal keep-alive HTTP/1.1
client on uvloop that sends prepared request bytes, as wrk would: it shares the cores with
the server, so its own CPU per request is kept small (``--client httpx`` shows the
difference; httpx took more CPU per request than the server).

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


class CliTimer:
    """``CoTClassifier.classify_samples`` (the CLI's ``classify``) on the images with no cache, the
    model loaded and the prompts embedded beforehand, as in a running server; one pass per call."""

    def __init__(self, images: list[Path]):
        from cotembed._classifier import CoTClassifier
        from cotembed.cache import NoCache
        from cotembed.data import collect_samples
        from cotembed.encoders import load_encoder
        from cotembed.system import System

        self.encoder = load_encoder("critters")
        self.clf = CoTClassifier(System.load(SYSTEM), self.encoder, cache=NoCache())
        self.clf.scorer  # noqa: B018 - prompts embedded before timing, as the server does at start
        self.samples = collect_samples([str(p) for p in images])
        self.clf.classify_samples(self.samples[: min(32, len(self.samples))])  # warm-up
        self.batch = int(self.encoder.batch_size)

    def images_per_s(self) -> tuple[float, float]:
        """(images/s, CPU ms per image: this process's CPU time, all threads, over the images)."""
        start, cpu = time.perf_counter(), time.process_time()
        predictions, errors = self.clf.classify_samples(self.samples)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if errors or len(predictions) != len(self.samples):
            raise SystemExit(f"CLI classify failed on {len(errors)} image(s)")
        return len(self.samples) / seconds, 1000 * cpu / len(self.samples)

    def close(self) -> None:
        self.encoder.close()


def start_server(max_batch: int, max_wait_ms: float, pythonpath: str | None = None, workers: int = 1) -> tuple[subprocess.Popen[str], str]:
    """``cotembed serve`` in a child process; ``pythonpath``: run another checkout's code instead (``--compare``)."""
    cmd = [sys.executable, "-m", "cotembed.cli", "serve", "--model", "critters", "--system", str(SYSTEM), "--host", "127.0.0.1",
           "--port", "0", "--no-cache", "--no-access-log", "--log-level", "warning", "--format", "json",
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)] + (["--workers", str(workers)] if workers > 1 else [])
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


class RawClient:
    """One keep-alive HTTP/1.1 connection that sends prepared POST bytes and reads the answer, as a load generator
    such as wrk does: a fraction of httpx's CPU per request, so the client takes less of the cores it shares with the server."""

    def __init__(self, url: str):
        host_port = url.split("://", 1)[1].rstrip("/")
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, body: bytes) -> bytes:
        return (f"POST /v1/classify HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


CLIENT = "raw"
"""The load generator: ``raw`` (:class:`RawClient`) or ``httpx`` (``--client``)."""


async def load(url: str, bodies: list[bytes], clients: int, requests: int, max_seconds: float, per_request: int = 1) -> dict[str, Any]:
    """``clients`` independent clients (one connection each), each sending its next request when
    the last one is answered, until ``requests`` are sent or ``max_seconds`` have passed."""
    import orjson

    if CLIENT == "httpx":
        return await load_httpx(url, bodies, clients, requests, max_seconds, per_request)

    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + max_seconds

    async def one_client() -> None:
        nonlocal next_index
        client = RawClient(url)
        prepared = [client.request(body) for body in bodies]
        try:
            while next_index < requests and time.perf_counter() < deadline:
                request = prepared[next_index % len(prepared)]
                next_index += 1
                t0 = time.perf_counter()
                try:
                    status, answer = await asyncio.wait_for(client.post(request), 60.0)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, StopIteration) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    await client.close()
                    client.writer = None
                    continue
                if status != 200 or len(orjson.loads(answer)["data"]) != per_request:
                    failures.append(f"HTTP {status}: {answer[:200]!r}")
                    continue
                latencies.append(time.perf_counter() - t0)
        finally:
            await client.close()

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


async def load_httpx(url: str, bodies: list[bytes], clients: int, requests: int, max_seconds: float,
                     per_request: int = 1) -> dict[str, Any]:
    """As :func:`load`, with an httpx client per connection (its CPU per request is several times the raw client's)."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
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
                    response = await client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200 or len(response.json()["data"]) != per_request:
                    failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    latencies.sort()
    return {
        "clients": clients, "sent": next_index, "ok": len(latencies), "failed": len(failures), "seconds": seconds,
        "per_s": per_request * len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "client_cpu": (time.process_time() - cpu_start) / seconds, "failures": failures[:3],
    }


def run(coroutine: Any) -> Any:
    """The coroutine on uvloop where it is installed (the serve extra has it), as the server runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


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
    """CPU seconds (user + system, all threads) a process and its worker processes have used so far, from /proc;
    NaN elsewhere. Unlike wall time it barely depends on what else the machine runs."""
    try:
        total = 0.0
        for task in [pid, *_children(pid)]:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except (OSError, ValueError, IndexError):
        return float("nan")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=12, help="critters images per species (28 species; default: 12)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--requests", type=int, default=300, help="requests per concurrency level (default: 300)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time bound per level (default: 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved CLI/served rounds for the ratio (default: 3)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker process counts, one server each (default: 1,2)")
    parser.add_argument("--images-per-request", default="1,8",
                        help="comma-separated request sizes, each measured at every concurrency level (default: 1,8)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: raw (a minimal keep-alive HTTP/1.1 client, as wrk) or httpx (default: raw)")
    parser.add_argument("--compare", default=None, metavar="PYTHONPATH",
                        help="also load a server running the code on this PYTHONPATH (e.g. an older checkout's src, one "
                             "worker), level by level in turn with the others, so all see the same machine")
    args = parser.parse_args()
    global CLIENT
    CLIENT = args.client

    with tempfile.TemporaryDirectory(prefix="cotembed-bench-serve-") as tmp:
        images = generate(args.per_class, args.seed, Path(tmp) / "split")
        encoded = [{"image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        sizes = [int(k) for k in args.images_per_request.split(",")]
        bodies_by_size = {k: [json.dumps({"system": "critters", "input": [encoded[(i + j) % len(encoded)] for j in range(k)]}).encode()
                              for i in range(0, len(encoded), k)] for k in sizes}
        say(f"{len(images)} images; loading the CLI's classifier ...")
        cli = CliTimer(images)
        servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
        rounds: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        cpu_ratios: dict[tuple[str, int], list[float]] = {}
        try:
            if args.compare is not None:
                servers["compare"] = start_server(args.max_batch, args.max_wait_ms, args.compare)
            for workers in (int(w) for w in args.workers.split(",")):
                servers[f"{workers} worker{'s' if workers > 1 else ''}"] = start_server(args.max_batch, args.max_wait_ms, workers=workers)
            for _, url in servers.values():
                run(wait_ready(url))
                run(load(url, bodies_by_size[sizes[0]], 8, min(64, args.requests), args.max_seconds, sizes[0]))  # warm-up
            rows = []
            for k in sizes:
                for clients in LEVELS:
                    for name, (proc, url) in servers.items():
                        say(f"{name}: {clients} client(s), {k} image(s) per request ...")
                        count, total = batch_totals(url)
                        cpu = process_cpu_s(proc.pid)
                        row = run(load(url, bodies_by_size[k], clients, args.requests, args.max_seconds, k))
                        row["server_cpu_ms"] = 1000 * (process_cpu_s(proc.pid) - cpu) / max(1, row["ok"])
                        count_after, total_after = batch_totals(url)
                        # several workers: /metrics is one worker's, so the batch sizes are not the server's
                        row["batch"] = (total_after - total) / max(1.0, count_after - count) if "workers" not in name else float("nan")
                        row["per_request"] = k
                        row["server"] = name
                        rows.append(row)
            for r in range(args.rounds):
                for k in sizes:
                    for name, (_, url) in servers.items():
                        say(f"round {r + 1}/{args.rounds}: CLI, then {name} at {LEVELS[-1]} clients, {k} image(s) per request, then CLI ...")
                        before, cli_cpu_before = cli.images_per_s()
                        cpu = process_cpu_s(servers[name][0].pid)
                        row = run(load(url, bodies_by_size[k], LEVELS[-1], args.requests, args.max_seconds, k))
                        server_cpu = 1000 * (process_cpu_s(servers[name][0].pid) - cpu) / max(1, k * row["ok"])
                        after, cli_cpu_after = cli.images_per_s()
                        cli_cpu = (cli_cpu_before + cli_cpu_after) / 2
                        rows.append({**row, "per_request": k, "server": name, "round": r, "server_cpu_img": server_cpu,
                                     "cli_cpu_img": cli_cpu})
                        rounds.setdefault((name, k), []).append((row["per_s"], before, after))
                        cpu_ratios.setdefault((name, k), []).append(server_cpu / cli_cpu)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
            for proc, _ in servers.values():
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            cli.close()

    print(f"critters split: {len(images)} images of 64x64 ({args.per_class} per species, seed {args.seed}); "
          f"system examples/critters/system.yaml, method cot; cold cache on both sides; {os.cpu_count()} core(s) shared by "
          "the server, the load generator and the CLI")
    print(f"servers: cotembed serve --model critters --no-cache --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} "
          f"[--workers N] (127.0.0.1; {args.images_per_request} image(s) per request); load generator: "
          + ("a minimal keep-alive HTTP/1.1 client on uvloop (as wrk), one connection per client" if args.client == "raw"
             else "httpx, one AsyncClient per client"))
    if args.compare is not None:
        print(f"server 'compare': the same command with PYTHONPATH={args.compare}")
    print()
    print(f"{'server':>10}  {'images/request':>14}  {'clients':>7}  {'requests':>8}  {'failed':>6}  {'images/s':>8}  {'p50 ms':>7}  "
          f"{'p99 ms':>7}  {'batch':>5}  {'server CPU/req':>14}  {'client CPU':>10}")
    for r in (r for r in rows if "round" not in r):
        print(f"{r['server']:>10}  {r['per_request']:>14}  {r['clients']:>7}  {r['ok']:>8}  {r['failed']:>6}  "
              f"{r['per_s']:>8.1f}  {r['p50_ms']:>7.1f}  {r['p99_ms']:>7.1f}  {r['batch']:>5.1f}  {r['server_cpu_ms']:>11.2f} ms  "
              f"{100 * r['client_cpu']:>9.0f}%")
    print("(batch: mean inputs per model batch the server formed at that level; p50/p99 are per request; server CPU/req: the "
          "server's CPU time (all its processes and threads, the model's included) per answered request; client CPU: the load "
          "generator's own CPU time over the wall time, in % of one core)")
    print()
    print(f"served / CLI throughput at {LEVELS[-1]} clients, interleaved: each round a CLI pass "
          f"(CoTClassifier.classify_samples, batch {cli.batch}), the server's load, a CLI pass; the ratio over the mean of the two")
    print(f"{'server':>10}  {'images/request':>14}  {'round':>5}  {'served/s':>8}  {'CLI/s':>13}  {'p99 ms':>7}  {'client CPU':>10}  "
          f"{'server CPU/img':>14}  {'CLI CPU/img':>11}  {'ratio':>5}")
    for r in (r for r in rows if "round" in r):
        served, before, after = rounds[(r["server"], r["per_request"])][r["round"]]
        print(f"{r['server']:>10}  {r['per_request']:>14}  {r['round'] + 1:>5}  {served:>8.1f}  {before:>6.1f}/{after:>6.1f}  "
              f"{r['p99_ms']:>7.1f}  {100 * r['client_cpu']:>9.0f}%  {r['server_cpu_img']:>11.2f} ms  {r['cli_cpu_img']:>8.2f} ms  "
              f"{served / ((before + after) / 2):>5.2f}")
    print("(server CPU/img and CLI CPU/img: CPU time, all processes and threads, per image classified; they hardly depend on "
          "what else the machine runs, unlike images/s)")
    print()
    for (name, k), found in rounds.items():
        ratio = statistics.median(served / ((before + after) / 2) for served, before, after in found)
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"{name}, {k} image(s) per request: median served / CLI over {len(found)} rounds: {ratio:.2f} "
              f"(target >= {TARGET_RATIO}: {verdict}); median server / CLI CPU per image: "
              f"{statistics.median(cpu_ratios[(name, k)]):.2f}")
    failed = sum(r["failed"] for r in rows)
    for r in rows:
        for failure in r["failures"]:
            print(f"  failure at {r['clients']} clients ({r['server']}): {failure}")
    if failed:
        print(f"{failed} request(s) failed below the queue limit")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

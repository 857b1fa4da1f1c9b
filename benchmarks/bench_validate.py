"""Time and peak memory of loading + validating a large system file (YAML and JSON).

A system with 300 groups x 5,000 classes holds 1.5 million rule entries; an
LLM-drafted or optimised system can get that big, and ``cotembed validate`` must
not take minutes or gigabytes on it. This script writes that system (canonical
keys, rules by option text, one entry in ten listing two options) as YAML and as
JSON into a temporary folder, then runs ``System.load`` on each file in a fresh
subprocess and reads the child's own peak RSS (``VmHWM`` from ``/proc/self/status``:
``ru_maxrss`` survives ``exec`` and would report the parent's peak).

The child imports only ``cotembed.system`` (and ``cotembed.errors``), not the
whole package, so the figures are the loader's and not the encoders'. ``--src``
points the child at another source tree, e.g. an older commit checked out with
``git worktree add /tmp/cotembed-before <commit>``, to compare before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Runs in the child: import cotembed.system without cotembed/__init__ (which pulls
# in the encoders), then load the file once and print seconds and RSS before loading.
CHILD = """
import sys, time, types
src, path = sys.argv[1], sys.argv[2]
package = types.ModuleType("cotembed")
package.__path__ = [src + "/cotembed"]
sys.modules["cotembed"] = package
from cotembed.system import System
def peak_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
base = peak_mib()
t0 = time.perf_counter()
system = System.load(path)
seconds = time.perf_counter() - t0
assert len(system.class_names) > 0
print(seconds, peak_mib(), base, len(system.groups), len(system.class_names), system.n_prompts)
"""


def write_system(root: Path, n_groups: int, n_classes: int, n_options: int, seed: int) -> tuple[Path, Path]:
    """Write the same system as ``system.yaml`` (block style, by hand: fast) and ``system.json``."""
    rng = random.Random(seed)
    groups = {
        f"attribute_{g:03d}": {
            "prompt": f"Attribute {g}: the creature is {{}}.",
            "options": [f"shade {o} of attribute {g}" for o in range(n_options)],
        }
        for g in range(n_groups)
    }
    rules: dict[str, dict[str, object]] = {}
    for c in range(n_classes):
        rule: dict[str, object] = {}
        for name, spec in groups.items():
            options = spec["options"]
            assert isinstance(options, list)
            rule[name] = rng.sample(options, 2) if rng.random() < 0.1 else rng.choice(options)
        rules[f"class-{c:05d}"] = rule
    data = {"name": "bench", "groups": groups, "rules": rules}

    json_path = root / "system.json"
    json_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    lines = ["name: bench", "groups:"]
    for name, spec in groups.items():
        lines.append(f"  {name}:")
        lines.append(f"    prompt: '{spec['prompt']}'")
        lines.append(f"    options: [{', '.join(spec['options'])}]")  # type: ignore[arg-type]
    lines.append("rules:")
    for cls_name, rule in rules.items():
        lines.append(f"  {cls_name}:")
        for name, value in rule.items():
            text = f"[{', '.join(value)}]" if isinstance(value, list) else value
            lines.append(f"    {name}: {text}")
    yaml_path = root / "system.yaml"
    yaml_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return yaml_path, json_path


def measure(src: Path, path: Path) -> tuple[float, float, float, str]:
    """Load ``path`` in a fresh child; return (load seconds, peak RSS MiB, RSS MiB before loading, sizes)."""
    command = [sys.executable, "-c", CHILD, str(src), str(path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"loading {path} failed (exit {proc.returncode}):\n{err}")
    seconds, peak, base, n_groups, n_classes, n_prompts = out.split()
    return float(seconds), float(peak), float(base), f"{n_groups}x{n_classes}, Q={n_prompts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--classes", type=int, default=5000)
    parser.add_argument("--options", type=int, default=8, help="options per group")
    parser.add_argument("--formats", default="yaml,json", help="comma-separated: yaml, json")
    parser.add_argument("--src", type=Path, default=SRC, help="source tree holding cotembed/ (default: this checkout's src)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cotembed-validate-") as tmp:
        print(f"writing a {args.groups}-group x {args.classes}-class system ...", file=sys.stderr)
        yaml_path, json_path = write_system(Path(tmp), args.groups, args.classes, args.options, args.seed)
        paths = {"yaml": yaml_path, "json": json_path}
        rows = []
        for fmt in args.formats.split(","):
            path = paths[fmt.strip()]
            print(f"loading {path.name} with {args.src} ...", file=sys.stderr)
            seconds, peak, base, shape = measure(args.src, path)
            rows.append((fmt, path.stat().st_size / 2**20, seconds, peak, base, shape))

    print(f"System.load (parse + validate) from {args.src}; each file in a fresh process")
    print(f"{'format':<6}  {'file MiB':>8}  {'load s':>7}  {'peak RSS MiB':>12}  {'RSS before MiB':>14}  system")
    for fmt, size, seconds, peak, base, shape in rows:
        print(f"{fmt:<6}  {size:>8.1f}  {seconds:>7.2f}  {peak:>12.1f}  {base:>14.1f}  {shape}")
    print("(peak RSS is the whole child's: interpreter, numpy and yaml included; 'RSS before' is the peak before loading)")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)", file=sys.stderr)

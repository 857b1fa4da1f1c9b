"""The README's Python example runs as written and says what its comments claim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
"""The example runs the code under test, also where that is a checkout on PYTHONPATH beside an installed copy."""


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    env = {"HF_HUB_OFFLINE": "1", "COTEMBED_CACHE": str(tmp_path / "cache.sqlite"), "PATH": "/usr/bin:/bin", **SOURCES}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "['Yurmex']" and lines[1] == "(1, 28)" and lines[-1] == "['Jintova']"
    assert len(lines) == 2 + 4 + 1  # one line per question of the critters system


@pytest.mark.slow
def test_readme_scoring_core_example_runs(tmp_path):
    """The second example scores an edited system on cached embeddings; the edit costs one prompt."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[1]
    split = tmp_path / "split"
    generate = [sys.executable, "-m", "cotembed.cli", "critters", "generate", "--species", "examples/critters/species.yaml",
                "--per-class", "3", "--seed", "1001", "--out", str(split), "-q"]
    subprocess.run(generate, cwd=ROOT, check=True, capture_output=True, timeout=120)
    code = code.replace(".cotembed-data/critters-easy", str(split))
    env = {"HF_HUB_OFFLINE": "1", "COTEMBED_CACHE": str(tmp_path / "cache.sqlite"), "PATH": "/usr/bin:/bin", **SOURCES}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1.0" and 0.0 <= float(lines[1]) <= 1.0 and lines[2] == "1"

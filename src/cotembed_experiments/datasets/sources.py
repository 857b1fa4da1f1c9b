"""Where a task's raw material comes from: installed Debian packages, checked and described.

A builder names the Debian package and the files it reads. When a file is missing the
package is installed with apt-get (as root, and only if the caller allows it), otherwise
the error says the exact command. The manifest records each package's version and each
file's sha256, so a rebuilt task can be compared with the one a figure was measured on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cotembed.errors import InputError


class SourceMissingError(InputError):
    """A public source a task is built from is not installed here."""


@dataclass(frozen=True)
class DebianSource:
    """Files a builder reads from one Debian package, and the package's licence file."""

    package: str
    files: tuple[str, ...]
    licence: str

    def missing(self) -> list[str]:
        return [f for f in self.files if not Path(f).is_file()]

    def ensure(self, install: bool) -> None:
        """Install the package when a file is missing and that is allowed; else explain how."""
        if not self.missing():
            return
        command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", self.package]
        if install and os.geteuid() == 0 and shutil.which("apt-get"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:  # the package lists may be stale on a fresh machine
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        still = self.missing()
        if still:
            raise SourceMissingError(
                f"{', '.join(still)} not found: this task is built from the Debian package {self.package!r}; "
                f"install it with: sudo apt-get install {self.package}")

    def describe(self) -> dict[str, object]:
        """Package version and the sha256 of every file read, for the manifest."""
        version = _dpkg_version(self.package)
        return {"kind": "debian", "package": self.package, "version": version, "licence": self.licence,
                "files": {f: sha256_file(Path(f)) for f in self.files}}


def _dpkg_version(package: str) -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stable_order(seed: int, key: str) -> str:
    """A sort key that shuffles reproducibly on every machine and Python version."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()

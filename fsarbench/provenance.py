"""Where a record came from: package versions and the git commit of the fsarbench checkout."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("fsarbench", "torch", "mmengine", "mmaction2", "mmcv-lite", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")

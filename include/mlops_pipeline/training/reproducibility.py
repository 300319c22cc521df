"""What a run needs to be reproduced: the code's commit, the Python environment, one seed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

UNKNOWN_COMMIT = "unknown"


def git_commit(home: Path) -> str:
    """``git rev-parse HEAD`` of the project home, or "unknown" when it is not a checkout (e.g. an image)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=home, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN_COMMIT
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) >= 7 else UNKNOWN_COMMIT


def git_is_dirty(home: Path) -> bool | None:
    """Whether tracked files differ from the commit (None when unknown)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=home, capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(result.stdout.strip()) if result.returncode == 0 else None


def installed_distributions() -> list[str]:
    """``name==version`` of every installed distribution, sorted: the full environment of the run."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = f"{name}=={dist.version}"
    return [found[key] for key in sorted(found)]


def python_version() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def pinned(*names: str) -> list[str]:
    """Pinned requirements for a logged model (exact versions of this environment)."""
    return [f"{name}=={metadata.version(name)}" for name in names]


def request_digest(payload: dict[str, Any]) -> str:
    """A stable digest of everything that determines a training result (data, config, seed, code)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

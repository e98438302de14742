"""Where a result comes from: the commit of the code that produced it and the machine it ran on (how busy).

Standard library only, so recipes, sweeps and benchmarks can all record it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit checked out where genret's code lives (``path``: another checkout), with ``-dirty`` when
    tracked files differ from it; None outside a git checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def machine_info() -> dict[str, object]:
    """CPU, cores and load: numbers measured on a shared machine say so through the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1_5_15": load,
        "python": platform.python_version(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }

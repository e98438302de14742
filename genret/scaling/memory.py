"""What a measurement reads of this process's memory and of a saved index: resident memory now, its peak
(resettable on Linux, so a phase's peak can be read apart from what came before), bytes on disk; and
which machine it ran on, how busy.

The one copy for the scaling sweeps and the benchmarks: standard library only (no torch, no numpy).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path


def _status(name: str) -> int | None:
    """A ``/proc/self/status`` memory field in bytes; None where there is none (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_now() -> int:
    """This process's resident memory now (``VmRSS``), bytes; 0 where unknown."""
    return _status("VmRSS") or 0


def peak_rss() -> int:
    """This process's peak resident memory since it started or the last :func:`reset_peak`, bytes:
    ``VmHWM``, or ``getrusage``'s ``ru_maxrss`` where there is no ``/proc`` (not resettable there)."""
    peak = _status("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # macOS reports bytes, others KiB


def reset_peak() -> bool:
    """Reset the peak to the current resident memory (Linux ``clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def machine_info() -> dict[str, object]:
    """CPU, cores and load: numbers measured on a shared machine say so through the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1_5_15": load, "python": platform.python_version(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}

"""What a measurement reads of this process's memory and of a saved index: resident memory now, its peak
(resettable on Linux, so a phase's peak can be read apart from what came before), bytes on disk. Which
machine it ran on, and how busy, is :mod:`genret.provenance`'s.

The one copy for the scaling sweeps and the benchmarks: standard library only (no torch, no numpy).
"""

from __future__ import annotations

import os
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

"""One sweep's results: ``results.jsonl``, one JSON object per finished (size, system) cell.

A row is written in one ``write`` + ``fsync`` after its cell finishes, so a killed sweep leaves only
whole rows (a torn last line from a crash mid-write is reported and ignored), and a rerun skips every
cell already present. Row fields:

- ``sweep`` (name), ``cell`` (``"size=N/system=S"``, the resume key), ``size`` (documents), ``system``;
- ``quality``: ``{nDCG@10, R@1, R@10, RR@10, ...}`` (absent in cost-only sweeps);
- ``cost``: any of ``params``, ``id_params`` (identifier embeddings), ``train_tokens``, ``train_s``,
  ``train_flops``, ``build_s``, ``index_bytes_disk``, ``index_bytes_memory``, ``peak_rss_bytes``,
  ``latency_p50_ms``, ``latency_p95_ms``, ``qps``;
- ``info``: free-form details (settings, query counts, machine), ``time`` (UTC ISO), ``genret_version``.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.jsonl"


def cell_key(size: int, system: str) -> str:
    """The resume key of one cell."""
    return f"size={size}/system={system}"


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete row of a results file (a folder means its ``results.jsonl``); [] when there is none."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):  # a write cut short by a kill: the cell reruns
                warnings.warn(f"{path}:{number}: incomplete last row ignored ({error.msg})", stacklevel=2)
                continue
            raise ValueError(f"{path}:{number}: not a JSON row: {error.msg}") from error
    return rows


def done_cells(path: str | os.PathLike) -> set[str]:
    """The ``cell`` keys already in a results file."""
    return {row["cell"] for row in read_rows(path) if "cell" in row}


def append_row(path: str | os.PathLike, row: dict[str, Any]) -> dict[str, Any]:
    """Append one finished cell (adds ``time`` and ``genret_version``); durable before returning."""
    from indexing.artifacts import genret_version

    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if "cell" not in row:
        row = {"cell": cell_key(row["size"], row["system"]), **row}
    row = {**row, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "genret_version": genret_version()}
    if path.is_file() and path.stat().st_size:  # drop a row torn by a kill mid-write: the file stays whole rows
        with open(path, "r+b") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":  # rare: only then is the whole file read
                handle.seek(0)
                handle.truncate(handle.read().rfind(b"\n") + 1)
    with open(path, "ab") as handle:
        handle.write((json.dumps(row, sort_keys=False) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())
    return row

"""Tables and figures of a sweep folder, drawn from its ``results.jsonl`` alone (``genret scale --report DIR``).

``write_report(folder)`` writes next to results.jsonl:

- ``results.md``: one markdown table, a row per (size, system) cell, with the quality columns (rows that
  have them) and the cost columns (whatever each row holds; a missing field is left blank);
- ``quality_vs_size.png``: nDCG@10 and R@10 against corpus size, a line per system (rows with ``quality``);
- ``cost_vs_size.png``: index + training time, index size on disk, parameters and per-query latency against
  corpus size, log axes (rows with ``cost``; a panel whose field no row has is left out).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genret.scaling.results import RESULTS_FILE, read_rows

QUALITY = ("nDCG@10", "R@1", "R@10", "RR@10")
TABLE_COST = (
    ("params", "params"),
    ("id_params", "id params"),
    ("train_tokens", "train tokens"),
    ("train_s", "train s"),
    ("train_flops", "train FLOPs"),
    ("build_s", "build s"),
    ("index_bytes_disk", "disk"),
    ("index_bytes_memory", "memory"),
    ("peak_rss_bytes", "peak RSS"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
    ("qps", "q/s"),
)
COST_PANELS = (
    (("build_s", "train_s"), "index + train time (s)"),
    (("index_bytes_disk",), "index on disk (bytes)"),
    (("params",), "parameters"),
    (("latency_p50_ms",), "latency p50 (ms / query)"),
)


def _number(value: Any, field: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if field.startswith(("index_bytes", "peak_rss")):
        return _bytes(value)
    if field in ("params", "id_params", "train_tokens", "train_flops"):
        return _si(value)
    if isinstance(value, float):
        return f"{value:.3f}" if field in QUALITY else f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return str(value)


def _si(value: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale * 0.9995:  # 999.6k reads 1M, not 1e+03k
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


def _bytes(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale * 0.9995:
            return f"{value / scale:.3g} {unit}"
    return f"{int(value)} B"


def _sorted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    systems = list(dict.fromkeys(r["system"] for r in rows))  # first-seen order: the recipe's
    return sorted(rows, key=lambda r: (r["size"], systems.index(r["system"])))


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of the rows: size, system, quality (where measured), cost (fields any row has)."""
    rows = _sorted(rows)
    quality = [m for m in QUALITY if any(m in (r.get("quality") or {}) for r in rows)]
    cost = [(f, label) for f, label in TABLE_COST if any(f in (r.get("cost") or {}) for r in rows)]
    header = ["size", "system", *quality, *(label for _, label in cost)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"{r['size']:,}", r["system"]]
        cells += [_number((r.get("quality") or {}).get(m), m) for m in quality]
        cells += [_number((r.get("cost") or {}).get(f), f) for f, _ in cost]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _series(rows: Sequence[dict[str, Any]], section: str, fields: Sequence[str]) -> dict[str, tuple[list, list]]:
    """Per system: sizes and the sum of ``fields`` (rows missing all of them are skipped)."""
    out: dict[str, tuple[list, list]] = {}
    for r in _sorted(rows):
        values = [(r.get(section) or {}).get(f) for f in fields]
        values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
        if values:
            xs, ys = out.setdefault(r["system"], ([], []))
            xs.append(r["size"])
            ys.append(sum(values))
    return out


def _figure(panels: list[tuple[str, dict[str, tuple[list, list]], bool]], title: str) -> Any:
    import matplotlib.pyplot as plt

    cols = min(2, len(panels))
    rows_ = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(5.5 * cols, 4 * rows_), squeeze=False)
    for ax, (label, series, log_y) in zip(axes.flat, panels, strict=False):
        for system, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", label=system)
        ax.set_xscale("log")
        if log_y and all(y > 0 for _, ys in series.values() for y in ys):
            ax.set_yscale("log")
        ax.set_xlabel("corpus size (documents)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def quality_figure(rows: Sequence[dict[str, Any]], title: str = "quality vs corpus size") -> Any:
    """nDCG@10 and R@10 against corpus size, a line per system; None when no row has ``quality``."""
    rows = [r for r in rows if r.get("quality")]
    if not rows:
        return None
    return _figure([(m, _series(rows, "quality", (m,)), False) for m in ("nDCG@10", "R@10")], title)


def cost_figure(rows: Sequence[dict[str, Any]], title: str = "cost vs corpus size") -> Any:
    """Time, index bytes, parameters and latency against corpus size; None when no row has any of them."""
    rows = [r for r in rows if r.get("cost")]
    panels = [(label, _series(rows, "cost", fields), True) for fields, label in COST_PANELS]
    panels = [p for p in panels if p[1]]
    return _figure(panels, title) if panels else None


def write_report(folder: str | os.PathLike) -> list[Path]:
    """``results.md`` and the PNG figures of ``folder/results.jsonl``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    folder = Path(folder)
    rows = [r for r in read_rows(folder) if "size" in r and "system" in r]
    if not rows:
        raise FileNotFoundError(f"{folder / RESULTS_FILE}: no results rows to report")
    name = rows[0].get("sweep", folder.name)
    written = [folder / "results.md"]
    written[0].write_text(f"# {name}\n\n{markdown_table(rows)}")
    for file, make, what in (
        ("quality_vs_size.png", quality_figure, "quality"),
        ("cost_vs_size.png", cost_figure, "cost"),
    ):
        fig = make(rows, f"{name}: {what} vs corpus size")
        if fig is not None:
            fig.savefig(folder / file, dpi=110)
            plt.close(fig)
            written.append(folder / file)
    return written

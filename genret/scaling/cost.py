"""The synthetic cost sweep (``kind: cost`` recipes, ``genret scale scaling-cost``): how index build time,
memory, index size and constrained-decoding latency grow with the number of documents, per scheme.

Corpora are synthetic (``indexing.synthetic.zipf_documents``: i.i.d. Zipfian token ids, nested sizes), so
retrieval quality means nothing here and is never measured. One cell = one (size, scheme): the recipe, the
resumable loop over cells and a cell's row are here; the builds are :mod:`genret.scaling.cost_build`'s, the
decoding latency :mod:`genret.scaling.cost_decode`'s.

Measured (fields of a ``genret.scaling.results`` row; details under ``info``):

- ``build_s``: wall time from the corpus in memory to the index in memory (semantic: embeddings included),
  after one unmeasured build over 200 other documents (imports, tokenizer and numba kernels loaded);
- ``index_bytes_disk``: every file of the saved index folder (manifest and document ids included);
  ``index_bytes_memory``: the arrays decoding uses (``DocidTrie.nbytes()``; ``NgramIndex.nbytes()``);
- ``peak_rss_bytes``: the cell's peak resident memory (``VmHWM``; reset through ``/proc/self/clear_refs``
  when the cell, its build and its decoding start, and read before each reset); with ``isolate: true`` each
  cell runs in a fresh process, so it covers the interpreter, torch, the corpus, the build, saving and
  decoding. ``info.build.rss_delta_bytes`` / ``info.decode.rss_delta_bytes``: the peak of that phase above
  the resident memory just before it;
- ``latency_p50_ms`` / ``latency_p95_ms``: per query (a batch's wall time / its queries), percentiles over
  the timed batches; ``qps`` = queries / their total time; ``info.decode.constraint_ms_p50``: the
  constraint's own time per batch; ``info.decode.valid_share`` must be 1.0.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genret.config import ConfigError, load_config, to_dict
from genret.provenance import machine_info
from genret.scaling.cost_build import DSI_SCHEMES, NGRAM_SCHEMES, measure_build, measure_disk, warm_up
from genret.scaling.cost_decode import measure_decoding
from genret.scaling.memory import reset_peak
from genret.scaling.report import write_report
from genret.scaling.results import append_row, cell_key, done_cells

SCHEMES = (*DSI_SCHEMES, *NGRAM_SCHEMES)


# ---------------------------------------------------------------------------------------------- config


@dataclass
class CorpusConfig:
    """The synthetic documents (``indexing.synthetic.zipf_documents``)."""

    vocab: int = 32000
    zipf: float = 1.0
    min_length: int = 48
    max_length: int = 80
    seed: int = 0


@dataclass
class SemanticConfig:
    """Semantic ids: hierarchical k-means (``k`` clusters, leaves of <= ``c``) over ``dim``-d TF-IDF SVD."""

    k: int = 10
    c: int = 100
    dim: int = 128


@dataclass
class DecodeConfig:
    """Constrained beam search with a tiny random T5 (``cost_decode.TINY_T5``): what each latency batch runs."""

    batch: int = 8
    beams: int = 20
    warmup: int = 1
    rounds: int = 5
    query_length: int = 16
    ngram_length: int = 10
    enumerate_width: int = 1000
    keep_top: int = 0
    """N-gram followers kept per wide row; 0 means 2 x beams (the beams of the full mask)."""
    threads: int = 1
    seed: int = 0


@dataclass
class CostSweepConfig:
    """A ``kind: cost`` recipe: sizes x schemes, each cell measured once (see the module docstring)."""

    name: str = "scaling-cost"
    kind: str = "cost"
    output_dir: str = "runs/scaling-cost"
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    schemes: list[str] = field(default_factory=lambda: list(SCHEMES))
    tokenizer: str | None = "minilm"
    """Text tokenizer of the DSI cells (its vocabulary comes first, naive ids are tokenized with it); null:
    identifiers of new tokens only (pad 0, eos 1; naive digits become 10 new tokens)."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    isolate: bool = True
    """Run each cell in a fresh Python process (clean memory figures); false: in this process (tests)."""
    work_dir: str | None = None
    """Where saved indexes are measured (deleted after each cell); null: a temporary folder."""

    def __post_init__(self) -> None:
        if self.kind != "cost":
            raise ValueError(f"kind: a cost sweep recipe has kind 'cost', got {self.kind!r}")
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError(f"sizes: expected a non-empty list of positive document counts, got {self.sizes}")
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if unknown or not self.schemes:
            raise ValueError(f"schemes: unknown {unknown or 'empty list'}; valid schemes: {', '.join(SCHEMES)}")
        if self.decode.beams < 2 or self.decode.batch < 1 or self.decode.rounds < 1:
            raise ValueError("decode: needs beams >= 2, batch >= 1 and rounds >= 1")


def load_cost_sweep(path: str | os.PathLike, overrides: list[str] | None = None) -> CostSweepConfig:
    """A cost sweep recipe (strict schema; errors name the file and the key)."""
    return load_config(CostSweepConfig, path, overrides)


# ---------------------------------------------------------------------------------------------- the sweep


def run_cost_sweep(recipe_path: str, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Measure every (size, scheme) cell not yet in ``output_dir/results.jsonl``; returns the folder."""
    from genret.recipe import resolve_recipe

    config = load_cost_sweep(resolve_recipe(recipe_path), overrides)
    return run_cost_config(config, progress)


def run_cost_config(config: CostSweepConfig, progress: bool = True) -> Path:
    """The sweep of ``config`` (resumable: finished cells are skipped), then its report."""
    from tqdm.auto import tqdm

    folder = Path(config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _check_same_sweep(folder, config)
    (folder / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
    cells = [(size, scheme) for size in sorted(config.sizes) for scheme in config.schemes]
    done = done_cells(folder)
    todo = [c for c in cells if cell_key(*c) not in done]
    with tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"{config.name} cells", unit="cell",
              disable=not progress, position=0) as bar:
        for size, scheme in todo:
            bar.set_postfix_str(cell_key(size, scheme))
            row = _run_isolated(config, size, scheme, progress) if config.isolate else \
                measure_cell(config, size, scheme, progress)
            append_row(folder, row)
            bar.update(1)
    write_report(folder)
    return folder


def _check_same_sweep(folder: Path, config: CostSweepConfig) -> None:
    """Refuse to resume into a folder whose rows were measured with other settings."""
    path = folder / "config.json"
    if not path.is_file() or not done_cells(folder):
        return
    old = json.loads(path.read_text())
    new = to_dict(config)
    keep = ("corpus", "semantic", "decode", "tokenizer")
    changed = [k for k in keep if old.get(k) != new.get(k)]
    if changed:
        raise ConfigError(f"{folder}: its rows were measured with other {', '.join(changed)} settings; use "
                          f"another output_dir (or delete {folder / 'results.jsonl'})")


def _run_isolated(config: CostSweepConfig, size: int, scheme: str, progress: bool) -> dict[str, Any]:
    """``measure_cell`` in a fresh interpreter; its row is the last line of its output."""
    spec = json.dumps({"config": to_dict(config), "size": size, "scheme": scheme, "progress": progress})
    done = subprocess.run([sys.executable, "-m", "genret.scaling.cost", "--cell", spec], stdout=subprocess.PIPE,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cell {cell_key(size, scheme)} failed (exit {done.returncode}); its output:\n"
                           f"{done.stdout[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- one cell


def measure_cell(config: CostSweepConfig, size: int, scheme: str, progress: bool = False) -> dict[str, Any]:
    """Build one scheme's index over ``size`` synthetic documents, save it, decode with it: one row."""
    from tqdm.auto import tqdm

    from indexing.synthetic import zipf_documents

    cfg = config.decode
    reset = reset_peak()  # then reset again at the build and at decoding: the cell's peak is the max of both
    stages = 3 + cfg.warmup + cfg.rounds  # corpus, build, save, then each decoded batch
    with tqdm(total=stages, desc=f"  {cell_key(size, scheme)}", unit="stage", disable=not progress, leave=False,
              position=1) as bar:
        c = config.corpus
        bar.set_postfix_str("warm-up")
        warm_up(config, scheme)
        bar.set_postfix_str("corpus")
        tokens, offsets = zipf_documents(size, c.vocab, c.zipf, c.min_length, c.max_length, c.seed)
        bar.update(1)
        bar.set_postfix_str("build")
        build = measure_build(config, scheme, tokens, offsets)
        del tokens
        bar.update(1)
        bar.set_postfix_str("save")
        disk = measure_disk(build.pop("index"), config.work_dir)
        bar.update(1)
        bar.set_postfix_str("decode")
        decode = measure_decoding(build.pop("decoder"), cfg, lambda: bar.update(1))
    rounds_ms = decode["per_query_ms"]
    cost = {
        "build_s": build["build_s"],
        "index_bytes_disk": disk["bytes"],
        "index_bytes_memory": build["index_bytes_memory"],
        "peak_rss_bytes": decode["cell_peak_bytes"],
        "latency_p50_ms": statistics.median(rounds_ms),
        "latency_p95_ms": float(np.percentile(rounds_ms, 95)),
        "qps": decode["queries"] / decode["seconds"],
    }
    info = {
        "corpus": {"documents": size, "tokens": int(offsets[-1]), "generator": "indexing.synthetic.zipf_documents",
                   **dataclasses.asdict(config.corpus)},
        "build": build,
        "save": disk,
        "decode": {k: v for k, v in decode.items() if k not in ("seconds", "cell_peak_bytes")},
        "warm_up": "one unmeasured build over 200 other documents first (imports, tokenizer, numba kernels)",
        "peak_rss": "cell process (fresh)" if config.isolate else "this process since the cell started"
        if reset else "this process since it started (peak counter not resettable)",
        "machine": machine_info(),
    }
    return {"sweep": config.name, "cell": cell_key(size, scheme), "size": size, "system": scheme, "cost": cost,
            "info": info}


# ---------------------------------------------------------------------------------------------- table


def cost_table(rows: list[dict[str, Any]]) -> str:
    """The README's markdown table of cost rows: build, bytes, memory, latency per (size, scheme), with the
    phase memory and constraint time that ``genret.scaling.report``'s generic table leaves out."""
    head = ("| documents | scheme | build s | index on disk | index in memory | build memory (peak above start) | "
            "peak RSS | latency p50 ms/query (batch) | constraint ms/batch | q/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    order = {s: i for i, s in enumerate(SCHEMES)}
    for r in sorted(rows, key=lambda r: (r["size"], order.get(r["system"], 99))):
        c, info = r["cost"], r.get("info", {})
        d = info.get("decode", {})
        lines.append(
            f"| {r['size']:,} | {r['system']} | {c['build_s']:.2f} | {_mb(c['index_bytes_disk'])} | "
            f"{_mb(c['index_bytes_memory'])} | {_mb(info.get('build', {}).get('rss_delta_bytes', float('nan')))} | "
            f"{_mb(c['peak_rss_bytes'])} | {c['latency_p50_ms']:.1f} ({statistics.median(d.get('batch_ms', [0])):.0f}) "
            f"| {d.get('constraint_ms_p50', float('nan')):.1f} | {c['qps']:.1f} |")
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB" if value < 2**30 else f"{value / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> None:
    """``python -m genret.scaling.cost RECIPE [key=value ...]``, or ``--cell SPEC`` (one cell, one row)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--cell"]:
        spec = json.loads(args[1])
        from genret.config import from_dict

        row = measure_cell(from_dict(CostSweepConfig, spec["config"]), spec["size"], spec["scheme"],
                           spec.get("progress", False))
        print(json.dumps(row), flush=True)
        return
    if not args:
        raise SystemExit("usage: python -m genret.scaling.cost RECIPE [key=value ...]")
    print(run_cost_sweep(args[0], args[1:]))


if __name__ == "__main__":
    main()

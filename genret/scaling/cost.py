"""The synthetic cost sweep (``kind: cost`` recipes, ``genret scale scaling-cost``): how index build time,
memory, index size and constrained-decoding latency grow with the number of documents, per scheme.

Corpora are synthetic (``indexing.synthetic.zipf_documents``: i.i.d. Zipfian token ids, nested sizes), so
retrieval quality means nothing here and is never measured. One cell = one (size, scheme): the resumable loop over
cells and a cell's row are here; the recipe's schema is :mod:`genret.scaling.cost_config`'s, the builds
:mod:`genret.scaling.cost_build`'s, the decoding latency :mod:`genret.scaling.cost_decode`'s.

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
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from genret.config import ConfigError, to_dict
from genret.provenance import machine_info
from genret.scaling.cost_build import measure_build, measure_disk, warm_up
from genret.scaling.cost_config import CostSweepConfig, load_cost_sweep
from genret.scaling.cost_decode import measure_decoding
from genret.scaling.memory import reset_peak
from genret.scaling.report import write_report
from genret.scaling.results import append_row, cell_key, done_cells

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
    with tqdm(
        total=len(cells),
        initial=len(cells) - len(todo),
        desc=f"{config.name} cells",
        unit="cell",
        disable=not progress,
        position=0,
    ) as bar:
        for size, scheme in todo:
            bar.set_postfix_str(cell_key(size, scheme))
            row = (
                _run_isolated(config, size, scheme, progress)
                if config.isolate
                else measure_cell(config, size, scheme, progress)
            )
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
        raise ConfigError(
            f"{folder}: its rows were measured with other {', '.join(changed)} settings; use "
            f"another output_dir (or delete {folder / 'results.jsonl'})"
        )


def _run_isolated(config: CostSweepConfig, size: int, scheme: str, progress: bool) -> dict[str, Any]:
    """``measure_cell`` in a fresh interpreter; its row is the last line of its output."""
    spec = json.dumps({"config": to_dict(config), "size": size, "scheme": scheme, "progress": progress})
    done = subprocess.run(
        [sys.executable, "-m", "genret.scaling.cost", "--cell", spec], stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"cell {cell_key(size, scheme)} failed (exit {done.returncode}); its output:\n{done.stdout[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- one cell


def measure_cell(config: CostSweepConfig, size: int, scheme: str, progress: bool = False) -> dict[str, Any]:
    """Build one scheme's index over ``size`` synthetic documents, save it, decode with it: one row."""
    from tqdm.auto import tqdm

    from indexing.synthetic import zipf_documents

    cfg = config.decode
    reset = reset_peak()  # then reset again at the build and at decoding: the cell's peak is the max of both
    stages = 3 + cfg.warmup + cfg.rounds  # corpus, build, save, then each decoded batch
    with tqdm(
        total=stages, desc=f"  {cell_key(size, scheme)}", unit="stage", disable=not progress, leave=False, position=1
    ) as bar:
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
        "corpus": {
            "documents": size,
            "tokens": int(offsets[-1]),
            "generator": "indexing.synthetic.zipf_documents",
            **dataclasses.asdict(config.corpus),
        },
        "build": build,
        "save": disk,
        "decode": {k: v for k, v in decode.items() if k not in ("seconds", "cell_peak_bytes")},
        "warm_up": "one unmeasured build over 200 other documents first (imports, tokenizer, numba kernels)",
        "peak_rss": "cell process (fresh)"
        if config.isolate
        else "this process since the cell started"
        if reset
        else "this process since it started (peak counter not resettable)",
        "machine": machine_info(),
    }
    return {
        "sweep": config.name,
        "cell": cell_key(size, scheme),
        "size": size,
        "system": scheme,
        "cost": cost,
        "info": info,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m genret.scaling.cost RECIPE [key=value ...]``, or ``--cell SPEC`` (one cell, one row)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--cell"]:
        spec = json.loads(args[1])
        from genret.config import from_dict

        row = measure_cell(
            from_dict(CostSweepConfig, spec["config"]), spec["size"], spec["scheme"], spec.get("progress", False)
        )
        print(json.dumps(row), flush=True)
        return
    if not args:
        raise SystemExit("usage: python -m genret.scaling.cost RECIPE [key=value ...]")
    print(run_cost_sweep(args[0], args[1:]))


if __name__ == "__main__":
    main()

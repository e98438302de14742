"""The synthetic cost sweep (``kind: cost`` recipes, ``genret scale scaling-cost``): how index build time,
memory, index size and constrained-decoding latency grow with the number of documents, per scheme.

Corpora are synthetic (``indexing.synthetic.zipf_documents``: i.i.d. Zipfian token ids, nested sizes), so
retrieval quality means nothing here and is never measured. One cell = one (size, scheme):

- ``dsi-atomic`` / ``dsi-naive`` / ``dsi-semantic``: ``make_scheme(...).assign`` over a ``datasets.Dataset``
  of the documents' ``_id`` (these schemes read nothing else; naive ids are tokenized with the recipe's
  tokenizer), then ``DocidTrie.from_docids``. Semantic ids cluster embeddings made by
  :func:`token_tfidf_embeddings` (TF-IDF over the token ids + truncated SVD: ``indexing.embeddings``'s
  ``tfidf`` encoder computed from the ids, whose text loop would hold one string per token, ~4 GB at 1M
  documents; MiniLM would take hours on a CPU); their time is part of the build.
- ``ngram-sa`` / ``ngram-fm``: ``NgramIndex.from_token_lists`` over the documents' token ids (no text
  tokenization), backend ``sa`` or ``fm``.

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
- latency: ``model.generate`` with constrained beam search (``decode.batch`` queries x ``decode.beams``
  beams; the DSI retriever's arguments for DSI, SEAL's for n-grams with ``max_new_tokens =
  decode.ngram_length``) of a tiny T5 built from a config with random weights and the scheme's
  vocabulary, so the output layer and the ``[rows, vocab]`` scores grow as they do for a real model
  (atomic ids add a token per document). ``decode.warmup`` untimed batches, then ``decode.rounds`` timed
  ones, each of new random queries. ``latency_p50_ms`` / ``latency_p95_ms``: per query (a batch's wall time
  / its queries), percentiles over the timed batches; ``qps`` = queries / their total time;
  ``info.decode.constraint_ms_p50``: the constraint's own time per batch (the processor's calls, inside
  the same ``generate``). Every returned sequence is checked (``info.decode.valid_share`` must be 1.0).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genret.config import ConfigError, load_config, to_dict
from genret.scaling.results import append_row, cell_key, done_cells, read_rows

DSI_SCHEMES = {"dsi-atomic": "atomic", "dsi-naive": "naive", "dsi-semantic": "semantic"}
NGRAM_SCHEMES = {"ngram-sa": "sa", "ngram-fm": "fm"}
SCHEMES = (*DSI_SCHEMES, *NGRAM_SCHEMES)
PAD, EOS = 0, 1  # the n-gram cells' model: pad (also the decoder start) and eos, never in a synthetic document
TINY_T5 = {"d_model": 64, "d_ff": 256, "d_kv": 16, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4}


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
    """Constrained beam search with a tiny random T5 (``TINY_T5``): what each latency batch runs."""

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
    try:
        from genret.scaling.report import write_report
    except ImportError:  # the shared report module lands separately; the table below stands in for it
        (folder / "results.md").write_text(f"# {config.name}\n\n{cost_table(read_rows(folder))}\n")
    else:
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


def warm_up(config: CostSweepConfig, scheme: str, docs: int = 200) -> None:
    """Build the scheme's index once over ``docs`` documents, unmeasured: modules imported, the tokenizer
    loaded, numba kernels loaded from their cache, so the measured build counts the build alone."""
    from indexing.synthetic import zipf_documents

    c = config.corpus
    tokens, offsets = zipf_documents(docs, c.vocab, c.zipf, c.min_length, c.max_length, c.seed + 1)
    build = measure_build(config, scheme, tokens, offsets)
    if build["decoder"]["kind"] == "dsi":  # the trie's batched kernels (lookup_batch checks decoded rows)
        build["decoder"]["trie"].lookup_batch(np.zeros((1, 1), dtype=np.int64))
    else:  # the n-gram store's extend / next-token kernels
        index = build["decoder"]["index"]
        index.next_tokens_csr(index.extend(index.root(1), tokens[:1]))


def measure_build(config: CostSweepConfig, scheme: str, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    """Build the index of ``scheme``; timings, bytes, memory, plus ``index`` (to save) and ``decoder``
    (what ``measure_decoding`` needs)."""
    rss_before = rss_now()
    reset_peak()
    out = _build_dsi(config, scheme, tokens, offsets) if scheme in DSI_SCHEMES else \
        _build_ngram(config, scheme, tokens, offsets)
    out["rss_before_bytes"] = rss_before
    out["rss_delta_bytes"] = peak_rss() - rss_before
    return out


def _build_dsi(config: CostSweepConfig, scheme: str, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    from datasets import Dataset

    from indexing.docids import make_scheme
    from indexing.index import DocidIndex
    from indexing.synthetic import doc_ids
    from indexing.trie import DocidTrie

    name = DSI_SCHEMES[scheme]
    tokenizer = _tokenizer(config.tokenizer) if config.tokenizer else None
    corpus = Dataset.from_dict({"_id": doc_ids(len(offsets) - 1)})
    times: dict[str, float] = {}
    start = time.perf_counter()
    if name == "semantic":
        s = config.semantic
        embeddings = token_tfidf_embeddings(tokens, offsets, config.corpus.vocab, s.dim, config.corpus.seed)
        times["embed_s"] = time.perf_counter() - start
        docids = make_scheme("semantic", k=s.k, c=s.c, seed=config.corpus.seed).assign(corpus, tokenizer, embeddings)
        del embeddings
    else:
        docids = make_scheme(name).assign(corpus, tokenizer)
    times["assign_s"] = time.perf_counter() - start - times.get("embed_s", 0.0)
    mark = time.perf_counter()
    trie = DocidTrie.from_docids(docids)
    times["trie_s"] = time.perf_counter() - mark
    build_s = time.perf_counter() - start
    pad = 0 if tokenizer is None else int(tokenizer.backend.token_to_id("[PAD]") or 0)
    base = docids.base_vocab_size
    return {
        "build_s": build_s, **times,
        "index_bytes_memory": trie.nbytes(),
        "docid_array_bytes": int(docids.offsets.nbytes + docids.values.nbytes),
        "trie_nodes": trie.n_nodes, "max_depth": trie.max_depth, "vocab_size": docids.vocab_size,
        "new_tokens": len(docids.new_tokens), "tokenizer": config.tokenizer,
        "scheme_params": docids.scheme,
        "index": DocidIndex(docids=docids, trie=trie, source="synthetic"),
        "decoder": {"kind": "dsi", "trie": trie, "vocab": docids.vocab_size, "pad": pad, "eos": docids.eos_token_id,
                    "query_vocab": base if base > 2 else docids.vocab_size},
    }


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str) -> Any:
    """The text tokenizer, loaded once per process (outside the measured build)."""
    from indexing.tokenizer import load_tokenizer

    return load_tokenizer(name)


def _build_ngram(config: CostSweepConfig, scheme: str, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    from indexing.ngrams import NgramIndex
    from indexing.synthetic import doc_ids

    backend = NGRAM_SCHEMES[scheme]
    ids = doc_ids(len(offsets) - 1)
    start = time.perf_counter()
    docs = (tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1))
    index = NgramIndex.from_token_lists(docs, backend=backend, doc_ids=ids,
                                        config={"vocab_size": config.corpus.vocab, "source": "synthetic"})
    build_s = time.perf_counter() - start
    return {
        "build_s": build_s, "tokens_per_s": index.n_tokens / build_s, "backend": backend,
        "index_bytes_memory": index.nbytes(), "bytes_per_token_memory": index.nbytes() / index.n_tokens,
        "source": "token ids (no text tokenization)",
        "index": index,
        "decoder": {"kind": "ngram", "index": index, "vocab": config.corpus.vocab, "pad": PAD, "eos": EOS,
                    "query_vocab": config.corpus.vocab},
    }


def measure_disk(index: Any, work_dir: str | None) -> dict[str, Any]:
    """Save ``index`` (``.save``: atomic folder, manifest and checksums), measure its files, delete it."""
    parent = Path(tempfile.mkdtemp(prefix="genret-cost-", dir=work_dir))
    try:
        start = time.perf_counter()
        index.save(parent / "index")
        save_s = time.perf_counter() - start
        files = [p for p in (parent / "index").rglob("*") if p.is_file()]
        return {"bytes": sum(p.stat().st_size for p in files), "files": len(files), "save_s": save_s}
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def token_tfidf_embeddings(tokens: np.ndarray, offsets: np.ndarray, vocab: int, dim: int, seed: int,
                           chunk: int = 65_536) -> np.ndarray:
    """``float32 [docs, dim]``, rows L2-normalised: TF-IDF of the token ids (sublinear tf, idf ``log((1 + N) /
    (1 + df)) + 1``, rows L2-normalised: ``indexing.embeddings.tfidf_matrix``'s weighting) reduced by a
    seeded truncated SVD (:func:`_top_right_vectors`), vectorised over the id arrays and projected in chunks
    of rows, so that memory stays near the sparse matrix's own (~1 GB at 1M documents of 64 tokens)."""
    import scipy.sparse as sp

    n = len(offsets) - 1
    matrix = sp.csr_matrix((np.ones(len(tokens)), tokens.astype(np.int32), offsets), shape=(n, vocab))
    matrix.sum_duplicates()  # sorts each row's token ids and adds up repeats: data = term counts
    df = np.bincount(matrix.indices, minlength=vocab)
    matrix.data = (1.0 + np.log(matrix.data)) * (np.log((1.0 + n) / (1.0 + df)) + 1.0)[matrix.indices]
    lengths = np.diff(matrix.indptr)
    norms = np.zeros(n)
    full = lengths > 0
    norms[full] = np.sqrt(np.add.reduceat(matrix.data**2, matrix.indptr[:-1][full]))
    matrix.data /= np.repeat(np.where(norms > 0, norms, 1.0), lengths)
    k = min(dim, min(matrix.shape) - 1)
    if k < 1:
        return np.ones((n, 1), dtype=np.float32)
    vt = _top_right_vectors(matrix, k, seed)
    out = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        emb = np.asarray(matrix[start : start + chunk] @ vt.T)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        out[start : start + chunk] = emb / np.where(norm > 0, norm, 1.0)
    return out


def _top_right_vectors(matrix: Any, k: int, seed: int) -> np.ndarray:
    """``[k, columns]``: the top ``k`` right singular vectors of a sparse matrix, largest first, signs fixed
    (largest loading positive). ARPACK on the smaller Gram operator, as ``scipy.sparse.linalg.svds`` does,
    without its last step (``matrix @ eigvec`` and an SVD of that: two dense ``[rows, k]`` arrays, 2 GB at
    1M documents); the subspace is the same, so the projected rows' dot products are too."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    rows, cols = matrix.shape
    side = min(rows, cols)
    if rows >= cols:
        gram = LinearOperator((cols, cols), matvec=lambda x: matrix.T @ (matrix @ x), dtype=np.float64)
    else:
        gram = LinearOperator((rows, rows), matvec=lambda x: matrix @ (matrix.T @ x), dtype=np.float64)
    values, vectors = eigsh(gram, k=k, v0=np.random.default_rng(seed).standard_normal(side), which="LM")
    vectors, _ = np.linalg.qr(vectors)
    order = np.argsort(-values, kind="stable")
    vectors = vectors[:, order]
    if rows >= cols:
        vt = vectors.T
    else:  # left vectors u: v = X^T u / s
        vt = np.asarray(matrix.T @ vectors).T
        vt /= np.maximum(np.linalg.norm(vt, axis=1, keepdims=True), 1e-300)
    return vt * np.where(np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)]) < 0, -1.0, 1.0)[:, None]


# ---------------------------------------------------------------------------------------------- decoding


def measure_decoding(decoder: dict[str, Any], cfg: DecodeConfig, tick: Any = None) -> dict[str, Any]:
    """Time constrained beam search of random queries with a tiny random T5 (see the module docstring)."""
    import torch
    from transformers import LogitsProcessorList

    from genret.constraints import ConstrainedLogitsProcessor

    torch.set_num_threads(cfg.threads)
    peak_before = peak_rss()  # the cell's peak so far (build and save), before the counter is reset
    rss_before = rss_now()
    reset_peak()
    model = tiny_model(decoder["vocab"], decoder["pad"], decoder["eos"], cfg.seed)
    constraint, generate_args, check = _constraint(decoder, cfg)
    walls, constraint_s, valid, steps = [], [], [], set()
    for rnd in range(cfg.warmup + cfg.rounds):
        gen = torch.Generator().manual_seed(cfg.seed + 1000 + rnd)
        input_ids = torch.randint(2, decoder["query_vocab"], (cfg.batch, cfg.query_length), generator=gen)
        timer = TimedProcessor(ConstrainedLogitsProcessor(constraint, num_beams=cfg.beams, inplace=True))
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 logits_processor=LogitsProcessorList([timer]), num_beams=cfg.beams,
                                 num_return_sequences=cfg.beams, do_sample=False, length_penalty=0.0,
                                 early_stopping="never", return_dict_in_generate=True, **generate_args)
        wall = time.perf_counter() - start
        sequences = out.sequences[:, 1:].numpy()
        del out
        valid.append(check(sequences))
        steps.add(sequences.shape[1])
        if rnd >= cfg.warmup:
            walls.append(wall)
            constraint_s.append(timer.seconds)
        if tick is not None:
            tick()
    return {
        "method": "model.generate, constrained beam search, tiny random T5", "model": TINY_T5,
        "model_params": int(sum(p.numel() for p in model.parameters())), "vocab_size": decoder["vocab"],
        "batch": cfg.batch, "beams": cfg.beams, "rows": cfg.batch * cfg.beams, "warmup": cfg.warmup,
        "rounds": cfg.rounds, "query_length": cfg.query_length, "torch_threads": torch.get_num_threads(),
        "decoder_steps": sorted(steps), "batch_ms": [w * 1e3 for w in walls],
        "per_query_ms": [w * 1e3 / cfg.batch for w in walls],
        "constraint_ms_p50": statistics.median(constraint_s) * 1e3,
        "constraint_share": sum(constraint_s) / sum(walls), "valid_share": float(np.mean(valid)),
        "queries": cfg.batch * cfg.rounds, "seconds": sum(walls),
        "rss_before_bytes": rss_before, "rss_delta_bytes": peak_rss() - rss_before,
        "cell_peak_bytes": max(peak_before, peak_rss()),
        **{k: v for k, v in generate_args.items() if k != "decoder_input_ids"},
    }


def _constraint(decoder: dict[str, Any], cfg: DecodeConfig) -> tuple[Any, dict[str, Any], Any]:
    """The scheme's constraint, its extra ``generate`` arguments, and a check of returned sequences
    (share of rows that are identifiers / corpus n-grams)."""
    import torch

    if decoder["kind"] == "dsi":
        from genret.constraints import TrieConstraint

        trie = decoder["trie"]

        def check_ids(seqs: np.ndarray) -> float:
            return float(np.mean(trie.lookup_batch(seqs) >= 0))

        return (TrieConstraint(trie, fill_token_id=decoder["pad"]),
                {"max_new_tokens": trie.max_depth, "output_scores": True}, check_ids)
    from genret.constraints.ngram import NgramConstraint

    index = decoder["index"]
    stop = {decoder["eos"], decoder["pad"]}

    def check_ngrams(seqs: np.ndarray) -> float:
        grams = [next((row[:j] for j, t in enumerate(row) if t in stop), row) for row in seqs.tolist()]
        return float(np.mean(index.find(grams).counts > 0))

    keep = cfg.keep_top or 2 * cfg.beams
    start = torch.full((cfg.batch, 1), decoder["pad"], dtype=torch.long)
    return (NgramConstraint(index, decoder["eos"], decoder["pad"], cfg.enumerate_width, keep),
            {"max_new_tokens": cfg.ngram_length, "decoder_input_ids": start}, check_ngrams)


def tiny_model(vocab: int, pad: int, eos: int, seed: int) -> Any:
    """A T5 of ``TINY_T5`` size with random weights and ``vocab`` tokens (its output layer grows with it)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=eos, **TINY_T5)
    return T5ForConditionalGeneration(config).eval()


class TimedProcessor:
    """Wraps a logits processor and adds up the wall time of its calls (the constraint's own work)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        start = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - start
        return out


# ---------------------------------------------------------------------------------------------- memory, machine


def _status(field_name: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where there is none: not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_now() -> int:
    """This process's resident memory now (``VmRSS``), bytes."""
    return _status("VmRSS")


def peak_rss() -> int:
    """This process's peak resident memory (``VmHWM``) since it started or the last ``reset_peak``, bytes."""
    return _status("VmHWM")


def reset_peak() -> bool:
    """Reset the peak to the current resident memory (Linux: ``clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine_info() -> dict[str, Any]:
    """CPU, cores and load: the numbers come from a shared machine unless the load says otherwise."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}


# ---------------------------------------------------------------------------------------------- table


def cost_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of cost rows (the README's): build, bytes, memory, latency per (size, scheme)."""
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

"""The n-gram index benchmark's builds and machine description (``ngram_index.py`` runs each build in a fresh
interpreter through ``--build-child``, so its memory figures are the build's own)."""

from __future__ import annotations

import gc
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from genret.scaling.memory import peak_rss, reset_peak, rss_now
from indexing.synthetic import zipf_token_stream

MB = 2**20
PAD = 0


def machine_info(note: str) -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    import torch

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "note": note,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_1_5_15": list(os.getloadavg()),
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "torch_threads": torch.get_num_threads(),
    }


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(all files, .npy files) under ``folder``, in bytes."""
    total = npy = 0
    for path in folder.rglob("*"):
        if path.is_file():
            size = path.stat().st_size
            total += size
            npy += size if path.suffix == ".npy" else 0
    return total, npy


def synthetic_files(workdir: Path, n_tokens: int, vocab: int, s: float, seed: int) -> dict[str, str]:
    """The corpus as ``.npy`` files in ``workdir`` (made once, reused by every build process)."""
    stem = workdir / f"zipf-{n_tokens}-v{vocab}-s{s:g}-seed{seed}"
    files = {"tokens": f"{stem}.tokens.npy", "offsets": f"{stem}.offsets.npy"}
    if not all(Path(f).is_file() for f in files.values()):
        tokens, offsets = zipf_token_stream(n_tokens, vocab, s, seed)  # indexing.synthetic
        np.save(files["tokens"], tokens)
        np.save(files["offsets"], offsets)
    return files


def build_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: build one index, save it, report time, memory and size."""
    from indexing.ngrams import NgramIndex, backend_class

    backend, out = spec["backend"], Path(spec["out"])
    # load the numba kernels (cache=True) outside the measurement
    NgramIndex.from_token_lists([[2, 3, 4], [3, 4]], backend=backend).next_tokens_csr(
        NgramIndex.from_token_lists([[2, 3]], backend=backend).root(1)
    )
    result: dict[str, Any] = {}
    if spec["kind"] == "synthetic":
        tokens = np.load(spec["tokens"]).astype(np.int64)
        offsets = np.load(spec["offsets"])
        gc.collect()
        rss_before, peak_reset = rss_now() / MB, reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        shard = backend_class(backend).build(tokens, offsets)
        index = NgramIndex([shard], config={"backend": backend, "vocab_size": spec["vocab"]})
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = peak_rss() / MB
        del tokens
    else:  # a real corpus: tokenized first (timed), then indexed like a synthetic one, then NgramIndex.build
        from indexing.columns import document_texts
        from indexing.corpus import load_corpus
        from indexing.tokenizer import load_tokenizer

        corpus = load_corpus(spec["data"], progress=False)
        tokenizer = load_tokenizer(spec["tokenizer"])
        tok_wall, tok_cpu = time.perf_counter(), time.process_time()
        n, docs = len(corpus), []
        for start in range(0, n, 1000):  # what NgramIndex.build does before indexing
            docs += tokenizer.encode_batch(document_texts(corpus[start : min(n, start + 1000)]))
        result["tokenize_wall_s"] = time.perf_counter() - tok_wall
        result["tokenize_cpu_s"] = time.process_time() - tok_cpu
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(d) for d in docs])
        tokens = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
        del docs
        gc.collect()
        rss_before, peak_reset = rss_now() / MB, reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        shard = backend_class(backend).build(tokens, offsets)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = peak_rss() / MB
        del shard, tokens
        gc.collect()
        total = time.perf_counter()
        index = NgramIndex.build(corpus, tokenizer, backend=backend, progress=False)
        result["ngram_index_build_wall_s"] = time.perf_counter() - total  # tokenization included
        result["eos_token_id"], result["vocab_size"] = tokenizer.eos_token_id, tokenizer.vocab_size
        pad = tokenizer.backend.token_to_id("[PAD]")
        result["pad_token_id"] = int(pad) if pad is not None else 0
    n_tokens = index.n_tokens
    save = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    index.save(out)
    save = time.perf_counter() - save
    disk, npy = folder_bytes(out)
    result.update(
        {
            "n_tokens": n_tokens,
            "n_docs": index.n_docs,
            "build_wall_s": wall,
            "build_cpu_s": cpu,
            "tokens_per_s_wall": n_tokens / wall,
            "tokens_per_s_cpu": n_tokens / cpu if cpu > 0 else None,
            "rss_before_build_mb": rss_before,
            "peak_rss_build_mb": peak,
            "build_peak_mb": peak - rss_before,
            "peak_counter_reset": peak_reset,
            "memory_bytes": index.nbytes(),
            "memory_bytes_per_token": index.nbytes() / n_tokens,
            "disk_bytes": disk,
            "disk_npy_bytes": npy,
            "disk_bytes_per_token": disk / n_tokens,
            "save_s": save,
        }
    )
    return result

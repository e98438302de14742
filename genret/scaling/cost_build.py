"""The cost sweep's index builds (:mod:`genret.scaling.cost`): one scheme's index over synthetic documents,
timed, sized in memory and on disk.

- ``dsi-atomic`` / ``dsi-naive`` / ``dsi-semantic``: ``make_scheme(...).assign`` over a ``datasets.Dataset``
  of the documents' ``_id`` (these schemes read nothing else; naive ids are tokenized with the recipe's
  tokenizer), then ``DocidTrie.from_docids``. Semantic ids cluster
  :func:`indexing.embeddings.token_tfidf_embeddings` of the token ids (MiniLM would take hours on a CPU);
  their time is part of the build.
- ``ngram-sa`` / ``ngram-fm``: ``NgramIndex.from_token_lists`` over the documents' token ids (no text
  tokenization), backend ``sa`` or ``fm``.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genret.scaling.cost_config import DSI_SCHEMES, NGRAM_SCHEMES
from genret.scaling.memory import folder_bytes, peak_rss, reset_peak, rss_now

if TYPE_CHECKING:
    from genret.scaling.cost_config import CostSweepConfig

PAD, EOS = 0, 1  # the n-gram cells' model: pad (also the decoder start) and eos, never in a synthetic document


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
    (what :func:`genret.scaling.cost_decode.measure_decoding` needs)."""
    rss_before = rss_now()
    reset_peak()
    out = (
        _build_dsi(config, scheme, tokens, offsets)
        if scheme in DSI_SCHEMES
        else _build_ngram(config, scheme, tokens, offsets)
    )
    out["rss_before_bytes"] = rss_before
    out["rss_delta_bytes"] = peak_rss() - rss_before
    return out


def _build_dsi(config: CostSweepConfig, scheme: str, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    """A DSI scheme's docids over the documents' ``_id`` and their trie (semantic: embeddings first)."""
    from datasets import Dataset

    from indexing.docid_index import DocidIndex
    from indexing.docids import make_scheme
    from indexing.embeddings import token_tfidf_embeddings
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
        "build_s": build_s,
        **times,
        "index_bytes_memory": trie.nbytes(),
        "docid_array_bytes": int(docids.offsets.nbytes + docids.values.nbytes),
        "trie_nodes": trie.n_nodes,
        "max_depth": trie.max_depth,
        "vocab_size": docids.vocab_size,
        "new_tokens": len(docids.new_tokens),
        "tokenizer": config.tokenizer,
        "scheme_params": docids.scheme,
        "index": DocidIndex(docids=docids, trie=trie, source="synthetic"),
        "decoder": {
            "kind": "dsi",
            "trie": trie,
            "vocab": docids.vocab_size,
            "pad": pad,
            "eos": docids.eos_token_id,
            "query_vocab": base if base > 2 else docids.vocab_size,
        },
    }


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str) -> Any:
    """The text tokenizer, loaded once per process (outside the measured build)."""
    from indexing.tokenizer import load_tokenizer

    return load_tokenizer(name)


def _build_ngram(config: CostSweepConfig, scheme: str, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Any]:
    """The n-gram store of the documents' token ids (backend ``sa`` or ``fm``)."""
    from indexing.ngrams import NgramIndex
    from indexing.synthetic import doc_ids

    backend = NGRAM_SCHEMES[scheme]
    ids = doc_ids(len(offsets) - 1)
    start = time.perf_counter()
    docs = (tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1))
    index = NgramIndex.from_token_lists(
        docs, backend=backend, doc_ids=ids, config={"vocab_size": config.corpus.vocab, "source": "synthetic"}
    )
    build_s = time.perf_counter() - start
    return {
        "build_s": build_s,
        "tokens_per_s": index.n_tokens / build_s,
        "backend": backend,
        "index_bytes_memory": index.nbytes(),
        "bytes_per_token_memory": index.nbytes() / index.n_tokens,
        "source": "token ids (no text tokenization)",
        "index": index,
        "decoder": {
            "kind": "ngram",
            "index": index,
            "vocab": config.corpus.vocab,
            "pad": PAD,
            "eos": EOS,
            "query_vocab": config.corpus.vocab,
        },
    }


def measure_disk(index: Any, work_dir: str | None) -> dict[str, Any]:
    """Save ``index`` (``.save``: atomic folder, manifest and checksums), measure its files, delete it."""
    parent = Path(tempfile.mkdtemp(prefix="genret-cost-", dir=work_dir))
    try:
        start = time.perf_counter()
        index.save(parent / "index")
        save_s = time.perf_counter() - start
        files = sum(1 for p in (parent / "index").rglob("*") if p.is_file())
        return {"bytes": folder_bytes(parent / "index"), "files": files, "save_s": save_s}
    finally:
        shutil.rmtree(parent, ignore_errors=True)

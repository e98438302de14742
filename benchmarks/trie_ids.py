"""The trie benchmark's identifier sets (genret's DocidTrie beside GENRE's Python trie over the same ids) and the
one ``generate`` call it times with either constraint (``constrained_decoding.py`` runs them)."""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decoding_common import EOS, ID_VOCAB, PAD, sync  # noqa: E402
from trie_build import GenreTrie, build_csr, dedupe, make_ids  # noqa: E402

from genret.constraints import ConstrainedLogitsProcessor, TrieConstraint  # noqa: E402
from indexing.trie import DocidTrie  # noqa: E402

ID_LENGTH, CODES = 8, 100
MB = 2**20


def rss_mb() -> float:
    """Current resident memory of this process (Linux), MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except OSError:  # not Linux: no figure
        return float("nan")


@dataclass
class IdSet:
    """One identifier set, its CSR trie and genret constraint, and GENRE's dict trie."""

    kind: str
    ids: np.ndarray  # [n, ID_LENGTH]
    trie: DocidTrie
    constraint: TrieConstraint
    anchor: GenreTrie
    build: dict[str, Any] = field(default_factory=dict)

    def prefix_allowed_tokens_fn(self, batch_id: int, sent: torch.Tensor) -> list[int]:
        """GENRE's: the dict trie's next tokens after the whole decoder sequence (start token included)."""
        return self.anchor.get(sent.tolist()) or [PAD]


def make_id_set(kind: str, n: int, seed: int, device: torch.device) -> IdSet:
    ids, vocab = make_ids(n, ID_LENGTH, ID_VOCAB, kind, CODES, seed)
    start = time.perf_counter()
    try:
        trie = build_csr(ids, vocab)
    except ValueError:  # two random identifiers collided: drop the repeats and build again
        ids = dedupe(ids)
        start = time.perf_counter()
        trie = build_csr(ids, vocab)
    csr_s = time.perf_counter() - start
    constraint = TrieConstraint(trie, fill_token_id=PAD)
    sync(device)
    start = time.perf_counter()
    constraint.tensors(device)
    sync(device)
    device_s = time.perf_counter() - start
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    anchor = GenreTrie([PAD, *row.tolist(), EOS] for row in ids)  # GENRE: sequences from the decoder start
    dict_s = time.perf_counter() - start
    gc.collect()
    build = {
        "kind": kind,
        "ids": len(ids),
        "length": ID_LENGTH,
        "vocab_size": vocab,
        "n_nodes": trie.n_nodes,
        "max_depth": trie.max_depth,
        "gather_width": constraint.width,
        "root_degree": constraint.root_degree,
        "csr_build_s": csr_s,
        "csr_host_mb": trie.nbytes() / MB,
        "genret_device_tensors_s": device_s,
        "genret_device_mb": constraint.nbytes(device) / MB,
        "dict_build_s": dict_s,
        "dict_rss_mb": rss_mb() - before,
    }
    return IdSet(kind, ids, trie, constraint, anchor, build)


def genret_processor(id_set: IdSet, beams: int, inplace: bool = True) -> ConstrainedLogitsProcessor:
    # in place only under beam search: greedy / sampling hand processors a tensor they also keep
    return ConstrainedLogitsProcessor(id_set.constraint, num_beams=beams, inplace=inplace and beams > 1)


def generate(
    model: Any, inputs: dict, beams: int, id_set: IdSet, method: str, before: list[LogitsProcessor] | None = None
) -> Any:
    """The retriever's generate call; ``method`` adds the constraint (``before``: processors run first)."""
    processors = list(before or [])
    kwargs: dict[str, Any] = {}
    if method == "genret":
        processors.append(genret_processor(id_set, beams))
    elif method == "anchor":
        kwargs["prefix_allowed_tokens_fn"] = id_set.prefix_allowed_tokens_fn
    elif method != "unconstrained":
        raise ValueError(method)
    if processors:
        kwargs["logits_processor"] = LogitsProcessorList(processors)
    with torch.inference_mode():
        return model.generate(
            **inputs,
            num_beams=beams,
            num_return_sequences=beams,
            do_sample=False,
            length_penalty=0.0,
            early_stopping="never",
            max_new_tokens=id_set.trie.max_depth,
            output_scores=True,
            return_dict_in_generate=True,
            **kwargs,
        )


def valid_share(id_set: IdSet, out: Any) -> float:
    """Share of returned sequences that are identifiers (+ eos, then padding)."""
    seqs = out.sequences[:, 1:].cpu().numpy().astype(np.int64)
    return float((id_set.trie.lookup_batch(seqs) >= 0).mean())

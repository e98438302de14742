"""SEAL-style training data: (source text -> corpus n-gram) pairs as a ``datasets.Dataset``.

The model learns to generate n-grams that identify the right passage (Bevilacqua et al. 2022,
``scripts/training/make_supervised_*`` and ``make_unsupervised_dataset.py`` in facebookresearch/SEAL):

- ``"retrieval"`` (a training query -> spans of each relevant passage): every ``span_tokens``-token
  window of the passage is scored by how many of its tokens occur in the query, and
  ``spans_per_query`` windows are sampled with probability ``softmax(overlap / temperature)``
  (SEAL: 10 spans chosen by fuzzy 3-gram overlap, softmax-sampled). Spans that echo the query are
  the n-grams the index can match.
- ``"retrieval_title"`` (a training query -> the passage's title, ``titles_per_query`` times; SEAL: 3):
  only with ``title_markers``, as ``begin title end``, the title view of the index. ``title_tokens`` cuts a
  longer title to its first tokens (``begin t1 .. tn``, no end marker: still an n-gram of the index): search
  decodes at most ``max_length`` tokens, so training on more only costs output-layer time.
- ``"pseudo_query"`` (queries made from the corpus, :func:`genret.distillation.pseudo_query_judgments`: keywords or
  word spans of a document, judged relevant to it and to a teacher's top documents): ``spans_per_pseudo_query``
  overlap-sampled spans per relevant passage, as for training queries. A keyword query's overlapping spans are
  mostly its own words in the passage's context, so this also teaches the decoder to copy from its source, which
  SEAL's scoring rewards (each query's own n-grams alone give nDCG@10 0.609 on scifact).
- ``"unsupervised"`` (a corpus with no training queries still trains): per document,
  ``unsupervised_per_doc`` random span -> another random span of the same document, and as many
  span -> title (with titles).

Targets are token ids of ``tokenizer`` (the index's and the model's) followed by its eos; sources
are text (a span is decoded back to text). ``task_weights`` scale each task as in
:func:`genret.dsi_pairs.build_training_pairs`; everything is deterministic for ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm

from genret.dsi_pairs import weighted_text_pairs
from indexing.columns import column, column_names, document_texts
from indexing.tokenizer import TextTokenizer

TASKS = ("retrieval", "retrieval_title", "unsupervised", "pseudo_query")


def overlap_spans(
    doc: list[int], query: set[int], span_tokens: int, n: int, temperature: float, rng: np.random.Generator
) -> list[list[int]]:
    """``n`` windows of ``doc`` sampled by token overlap with ``query`` (softmax over windows)."""
    if not doc:
        return []
    width = min(span_tokens, len(doc))
    hits = np.fromiter((t in query for t in doc), dtype=np.float64, count=len(doc))
    overlap = np.convolve(hits, np.ones(width), mode="valid")  # tokens of window i found in the query
    logits = overlap / max(temperature, 1e-6)
    p = np.exp(logits - logits.max())
    starts = rng.choice(len(overlap), size=n, replace=True, p=p / p.sum())
    return [doc[s : s + width] for s in starts.tolist()]


def random_span(doc: list[int], span_tokens: int, rng: np.random.Generator) -> list[int]:
    width = min(span_tokens, len(doc))
    start = int(rng.integers(0, len(doc) - width + 1))
    return doc[start : start + width]


def build_seal_pairs(
    corpus: Any,
    tokenizer: TextTokenizer,
    *,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    title_markers: tuple[int, int] | None = None,
    span_tokens: int = 10,
    spans_per_query: int = 10,
    titles_per_query: int = 3,
    temperature: float = 1.0,
    title_tokens: int | None = None,
    unsupervised_per_doc: int = 0,
    pseudo_queries: Mapping[str, str] | None = None,
    pseudo_qrels: Mapping[str, Mapping[str, int]] | None = None,
    spans_per_pseudo_query: int = 2,
    task_weights: Mapping[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> datasets.Dataset:
    """Training examples (columns ``source, target, target_ids, task, doc``); see the module docstring."""
    if (queries is None) != (qrels is None) or (pseudo_queries is None) != (pseudo_qrels is None):
        raise ValueError("queries and qrels go together (and pseudo_queries and pseudo_qrels): pass both, or neither")
    unknown = set(task_weights or {}) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) in task_weights: {sorted(unknown)}; tasks: {', '.join(TASKS)}")
    if span_tokens < 1:
        raise ValueError(f"span_tokens must be >= 1, got {span_tokens}")
    if title_tokens is not None and title_tokens < 1:
        raise ValueError(f"title_tokens must be >= 1 or None, got {title_tokens}")
    rng = np.random.default_rng(seed)
    doc_ids = [str(x) for x in column(corpus, "_id")]
    row_of = {d: i for i, d in enumerate(doc_ids)}
    texts = tokenizer.encode_batch(document_texts(corpus, ("text",)))
    has_titles = title_markers is not None and "title" in column_names(corpus)
    titles = tokenizer.encode_batch(document_texts(corpus, ("title",))) if has_titles else [[] for _ in doc_ids]
    eos = tokenizer.eos_token_id

    def title_target(row: int) -> list[int] | None:
        if not (has_titles and titles[row]):
            return None
        if title_tokens is not None and len(titles[row]) > title_tokens:
            return [title_markers[0], *titles[row][:title_tokens]]
        return [title_markers[0], *titles[row], title_markers[1]]

    examples: dict[str, list[tuple[str, list[int], int]]] = {task: [] for task in TASKS}

    def judged_spans(
        queries_: Mapping[str, str],
        qrels_: Mapping[str, Mapping[str, int]],
        n_spans: int,
        n_titles: int,
        task: str,
        desc: str,
    ) -> None:
        """(query -> overlap-sampled span) x ``n_spans`` and (query -> title) x ``n_titles`` per relevant passage."""
        missing = [
            (q, d)
            for q, rel in qrels_.items()
            for d, r in rel.items()
            if r > 0 and (q not in queries_ or d not in row_of)
        ]
        if missing:
            raise ValueError(
                f"{len(missing)} relevant judgments point at unknown queries or documents, "
                f"e.g. query {missing[0][0]!r} -> document {missing[0][1]!r}"
            )
        for qid, rel in tqdm(qrels_.items(), desc=desc, unit="query", disable=not progress):
            query = queries_[qid]
            query_tokens = set(tokenizer.encode(query))
            for d, r in rel.items():
                if r <= 0:
                    continue
                row = row_of[d]
                for span in overlap_spans(
                    texts[row] or titles[row], query_tokens, span_tokens, n_spans, temperature, rng
                ):
                    examples[task].append((query, span, row))
                target = title_target(row)
                if target and n_titles:
                    examples["retrieval_title"].extend([(query, target, row)] * n_titles)

    if queries is not None and qrels is not None:
        judged_spans(queries, qrels, spans_per_query, titles_per_query, "retrieval", "SEAL pairs")
    if pseudo_queries is not None and pseudo_qrels is not None:
        judged_spans(pseudo_queries, pseudo_qrels, spans_per_pseudo_query, 0, "pseudo_query", "SEAL pseudo-query pairs")
    for row in range(len(doc_ids)) if unsupervised_per_doc else ():
        doc = texts[row]
        if not doc:
            continue
        for _ in range(unsupervised_per_doc):
            source = tokenizer.decode(random_span(doc, span_tokens * 2, rng))
            examples["unsupervised"].append((source, random_span(doc, span_tokens, rng), row))
            target = title_target(row)
            if target:
                examples["unsupervised"].append((source, target, row))

    if not any(examples.values()):
        raise ValueError("no training pairs: pass training queries and qrels, or unsupervised_per_doc > 0")
    with_eos = {task: [(src, [*target, eos], row) for src, target, row in found] for task, found in examples.items()}
    return weighted_text_pairs(with_eos, task_weights, rng, lambda ids: tokenizer.decode(ids[:-1]))

"""DSI-style training data: (source text -> docid) pairs as a ``datasets.Dataset``, and the collator.

>>> pairs = build_training_pairs(corpus, docids, queries=train.queries, qrels=train.qrels,
...                              queries_per_doc=2, task_weights={"retrieval": 2.0})  # doctest: +SKIP
>>> loader = DataLoader(pairs, batch_size=32, collate_fn=Seq2SeqCollator(hf_tokenizer))  # doctest: +SKIP

Each row of the Dataset is one example: ``source`` (text the encoder reads), ``target`` (the
document's readable identifier), ``target_ids`` (its token ids followed by the end-of-id token,
what the decoder learns), ``task`` and ``doc`` (the corpus row). Three tasks, after DSI, DSI-QG
and NCI (Tay et al. 2022; Zhuang et al. 2022; Wang et al. 2022):

- ``"indexing"`` (memorise the corpus: document -> docid). ``document`` below is
  ``title + " " + text`` (just the text when the title is blank). ``index_views`` picks the
  deterministic views, any of:

  - ``"text"``: the whole document, one example per document (DSI). It is kept whole here; the
    collator truncates it to the first ``max_source_length`` tokens, DSI's "first L tokens".
  - ``"chunks"``: the document cut into consecutive runs of ``chunk_words`` whitespace-separated
    words (the last one shorter), one example each, so together they cover the whole document
    (NCI's "document as query").

  and ``spans_per_doc`` adds that many random spans per document, each ``span_words[0]`` to
  ``span_words[1]`` consecutive words long (the whole document when shorter), drawn with the seed.
- ``"retrieval"`` (query -> docid of every document judged relevant to it, relevance > 0): one
  example per (query, relevant document) in qrels order. Every relevant judgment must point at a
  document that has a docid and at a query in ``queries``; all offenders are counted and shown
  in one :class:`TrainingDataError`.
- ``"pseudo_query"`` (synthetic query -> docid, DSI-QG): the ``pseudo_queries`` generator (see
  :mod:`genret.pseudo_queries`; ``None`` means word spans) is called once on all non-empty
  documents with ``n=queries_per_doc`` and ``seed``.

The indexing:retrieval ratio is ``task_weights``, e.g. ``{"indexing": 1, "retrieval": 2,
"pseudo_query": 0.5}`` (tasks left out weigh 1). A task with ``c`` examples and weight ``w``
contributes ``round(w * c)`` examples: ``floor(w)`` full copies of each, plus a seeded sample
without replacement of the rest (weight 2.5 on 10 pairs gives 25: every pair twice, 5 of them a
third time; weight 0 drops the task). The result is shuffled with ``seed``; everything is
deterministic for the seed.

Empty documents (blank title and text) get no indexing or pseudo-query examples (they can still
be retrieval targets), and examples whose source is blank (empty queries, empty generated
queries) are dropped; both are counted in a ``DataWarning``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable
from tqdm.auto import tqdm

from genret.pseudo_queries import PseudoQueryGenerator, make_generator, sample_spans
from indexing.columns import document_texts
from indexing.docids.base import Docids, doc_ids_of
from indexing.qrels import examples, warn

__all__ = [
    "FEATURES",
    "INDEX_VIEWS",
    "TASKS",
    "Seq2SeqCollator",
    "TrainingDataError",
    "build_training_pairs",
    "document_texts",
]

TASKS = ("indexing", "retrieval", "pseudo_query")
INDEX_VIEWS = ("text", "chunks")
FEATURES = datasets.Features(
    {
        "source": datasets.Value("string"),
        "target": datasets.Value("string"),
        "target_ids": datasets.List(datasets.Value("int32")),
        "task": datasets.Value("string"),
        "doc": datasets.Value("int64"),
    }
)
# Independent random streams, so that e.g. adding spans does not change the task-weight sample.
_SPANS, _WEIGHTS, _SHUFFLE = 0, 1, 2


class TrainingDataError(ValueError):
    """The inputs to :func:`build_training_pairs` do not fit together (docids vs corpus, qrels, options)."""


def _check_alignment(corpus: Any, docids: Docids) -> None:
    doc_ids = doc_ids_of(corpus)
    if docids.doc_ids == doc_ids:
        return
    if len(docids.doc_ids) != len(doc_ids):
        raise TrainingDataError(
            f"the docids cover {len(docids.doc_ids)} documents but the corpus has {len(doc_ids)}; "
            f"assign docids to this corpus (scheme.assign(corpus))"
        )
    row = next(i for i, (a, b) in enumerate(zip(docids.doc_ids, doc_ids, strict=True)) if a != b)
    raise TrainingDataError(
        f"the docids and the corpus disagree at row {row}: docids have {docids.doc_ids[row]!r}, "
        f"the corpus has {doc_ids[row]!r}; docids must list the corpus's documents in "
        f"corpus order (assign them to this corpus)"
    )


def _check_options(
    index_views: Iterable[str],
    spans_per_doc: int,
    span_words: Sequence[int],
    chunk_words: int,
    queries_per_doc: int,
    task_weights: Mapping[str, float] | None,
) -> tuple[str, ...]:
    if isinstance(index_views, str):
        index_views = (index_views,)
    views = tuple(index_views)
    bad = [v for v in views if v not in INDEX_VIEWS]
    if bad:
        raise TrainingDataError(f"unknown index view(s) {', '.join(map(repr, bad))}; valid: {', '.join(INDEX_VIEWS)}")
    if len(set(views)) != len(views):
        raise TrainingDataError(f"index_views lists a view twice: {views}")
    for name, value in (("spans_per_doc", spans_per_doc), ("queries_per_doc", queries_per_doc)):
        if int(value) != value or value < 0:
            raise TrainingDataError(f"{name} must be an integer >= 0; got {value!r}")
    if int(chunk_words) != chunk_words or chunk_words < 1:
        raise TrainingDataError(f"chunk_words must be an integer >= 1; got {chunk_words!r}")
    if len(span_words) != 2 or not 1 <= span_words[0] <= span_words[1]:
        raise TrainingDataError(f"span_words must be (min, max) with 1 <= min <= max; got {span_words!r}")
    unknown = sorted(set(task_weights or {}) - set(TASKS))
    if unknown:
        raise TrainingDataError(f"unknown task(s) in task_weights: {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    for task, weight in (task_weights or {}).items():
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
            raise TrainingDataError(f"task weight of {task!r} must be a finite number >= 0; got {weight!r}")
    return views


def _indexing_examples(
    documents: list[str],
    views: tuple[str, ...],
    spans_per_doc: int,
    span_words: Sequence[int],
    chunk_words: int,
    seed: int,
    progress: bool,
) -> tuple[list[str], list[int]]:
    sources: list[str] = []
    docs: list[int] = []
    need_words = "chunks" in views or spans_per_doc > 0
    words = [d.split() for d in documents] if need_words else []
    bar = tqdm(range(len(documents)), desc="indexing examples", unit="doc", disable=not progress, mininterval=1.0)
    for i in bar:
        if "text" in views and documents[i]:
            sources.append(documents[i])
            docs.append(i)
        if "chunks" in views:
            w = words[i]
            for start in range(0, len(w), chunk_words):
                sources.append(" ".join(w[start : start + chunk_words]))
                docs.append(i)
    if spans_per_doc:
        rng = np.random.default_rng([seed, _SPANS])
        spans = sample_spans(words, spans_per_doc, span_words[0], span_words[1], rng)
        for i, doc_spans in enumerate(spans):
            sources.extend(doc_spans)
            docs.extend([i] * len(doc_spans))
    return sources, docs


def _retrieval_examples(
    queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], doc_ids: list[str]
) -> tuple[list[str], list[int]]:
    row_of = {d: i for i, d in enumerate(doc_ids)}
    relevant = [(qid, did) for qid, judged in qrels.items() for did, rel in judged.items() if rel > 0]
    no_doc = [(qid, did) for qid, did in relevant if did not in row_of]
    no_query = sorted({qid for qid, _ in relevant if qid not in queries})
    problems = []
    if no_doc:
        problems.append(
            f"{len(no_doc)} relevant judgments point at documents without a docid (not in the corpus): "
            f"{examples((f'{q!r} -> {d!r}' for q, d in no_doc), len(no_doc))}"
        )
    if no_query:
        problems.append(
            f"{len(no_query)} judged queries have no text in queries: {examples(map(repr, no_query), len(no_query))}"
        )
    if problems:
        raise TrainingDataError("; ".join(problems) + "; filter the qrels to the corpus and queries first")
    return [queries[qid] for qid, _ in relevant], [row_of[did] for _, did in relevant]


def pseudo_query_examples(
    generator: PseudoQueryGenerator, documents: list[str], n: int, seed: int
) -> tuple[list[str], list[int]]:
    """``n`` pseudo-queries of every non-empty document (its row beside each), checked for the count the
    generator promised: the one place both DSI's pairs and SEAL's pseudo-query judgments draw them from."""
    rows = [i for i, d in enumerate(documents) if d]
    generated = generator([documents[i] for i in rows], n, seed)
    if len(generated) != len(rows):
        raise TrainingDataError(f"the pseudo-query generator returned {len(generated)} lists for {len(rows)} documents")
    sources: list[str] = []
    docs: list[int] = []
    for i, doc_queries in zip(rows, generated, strict=True):
        if len(doc_queries) != n:
            raise TrainingDataError(
                f"the pseudo-query generator returned {len(doc_queries)} queries for document row {i}; expected {n}"
            )
        sources.extend(doc_queries)
        docs.extend([i] * n)
    return sources, docs


def weighted_copies(count: int, weight: float, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``count`` examples: ``floor(weight)`` full copies plus a sample to reach ``round(weight*count)``."""
    total = int(math.floor(weight * count + 0.5))
    full = int(math.floor(weight))
    extra = total - full * count
    picked = np.sort(rng.choice(count, size=extra, replace=False)) if extra else np.zeros(0, dtype=np.int64)
    return np.concatenate([np.tile(np.arange(count, dtype=np.int64), full), picked.astype(np.int64)])


def weighted_text_pairs(
    by_task: Mapping[str, Sequence[tuple[str, list[int], int]]],
    task_weights: Mapping[str, float] | None,
    rng: np.random.Generator,
    decode: Callable[[list[int]], str],
) -> datasets.Dataset:
    """Text-target examples ``{task: [(source, target_ids, row)]}`` as one shuffled dataset (columns ``source,
    target, target_ids, task, doc``; ``target`` is ``decode(target_ids)``): each task's examples copied by its
    weight (:func:`weighted_copies`, tasks in the mapping's order), then shuffled, all with ``rng``."""
    weights = dict(task_weights or {})
    rows: list[tuple[str, list[int], int, str]] = []
    for task, found in by_task.items():
        for j in weighted_copies(len(found), float(weights.get(task, 1.0)), rng).tolist():
            source, target, row = found[j]
            rows.append((source, target, row, task))
    rows = [rows[j] for j in rng.permutation(len(rows)).tolist()]
    return datasets.Dataset.from_dict(
        {
            "source": [r[0] for r in rows],
            "target": [decode(r[1]) for r in rows],
            "target_ids": [r[1] for r in rows],
            "task": [r[3] for r in rows],
            "doc": [r[2] for r in rows],
        }
    )


def _target_arrays(docids: Docids) -> tuple[pa.Array, pa.Array]:
    """Per-document identifiers and token ids with the end-of-id token appended, as arrow arrays."""
    offsets = np.asarray(docids.offsets, dtype=np.int64)
    values = np.insert(np.asarray(docids.values, dtype=np.int32), offsets[1:], np.int32(docids.eos_token_id))
    new_offsets = (offsets + np.arange(len(offsets), dtype=np.int64)).astype(np.int32)
    ids = pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), pa.array(values, pa.int32()))
    return pa.array(list(docids.identifiers), pa.string()), ids


def build_training_pairs(
    corpus: Any,
    docids: Docids,
    *,
    queries: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    pseudo_queries: PseudoQueryGenerator | str | None = None,
    queries_per_doc: int = 0,
    index_views: Sequence[str] = ("text",),
    spans_per_doc: int = 0,
    span_words: tuple[int, int] = (10, 24),
    chunk_words: int = 64,
    task_weights: Mapping[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> datasets.Dataset:
    """Training examples (columns ``source, target, target_ids, task, doc``) for a corpus and its docids.

    ``corpus``: a Dataset (or dict of lists) with ``_id``, ``title`` (optional) and ``text``;
    ``docids``: identifiers of exactly its documents in its order. ``queries``/``qrels`` (both or
    neither): training queries and their judgments, for the retrieval task. ``pseudo_queries``:
    a generator, a spec for :func:`~genret.pseudo_queries.make_generator` or ``None`` (word
    spans), used only when ``queries_per_doc > 0`` (otherwise not even loaded). See the module
    docstring for the views, the weights and the seed.
    """
    views = _check_options(index_views, spans_per_doc, span_words, chunk_words, queries_per_doc, task_weights)
    _check_alignment(corpus, docids)
    if (queries is None) != (qrels is None):
        raise TrainingDataError("queries and qrels go together: pass both for the retrieval task, or neither")
    documents = document_texts(corpus)
    empty = [i for i, d in enumerate(documents) if not d]
    if empty and (views or spans_per_doc or queries_per_doc):
        warn(
            f"{len(empty)} empty documents (no title, no text) get no indexing or pseudo-query examples: "
            f"{examples((repr(docids.doc_ids[i]) for i in empty[:6]), len(empty))}",
            stacklevel=2,
        )

    per_task: dict[str, tuple[list[str], list[int]]] = {}
    if views or spans_per_doc:
        per_task["indexing"] = _indexing_examples(
            documents, views, spans_per_doc, span_words, chunk_words, seed, progress
        )
    if qrels is not None and queries is not None:
        per_task["retrieval"] = _retrieval_examples(queries, qrels, docids.doc_ids)
    if queries_per_doc:
        generator = make_generator(pseudo_queries)
        per_task["pseudo_query"] = pseudo_query_examples(generator, documents, queries_per_doc, seed)

    blank: dict[str, int] = {}
    for task, (sources, docs) in per_task.items():
        keep = [j for j, s in enumerate(sources) if s.strip()]
        if len(keep) < len(sources):
            blank[task] = len(sources) - len(keep)
            per_task[task] = ([sources[j] for j in keep], [docs[j] for j in keep])
    if blank:
        counts = ", ".join(f"{n} {t}" for t, n in blank.items())
        warn(f"dropped examples with a blank source (query text): {counts}", stacklevel=2)

    weights = dict(task_weights or {})
    rng = np.random.default_rng([seed, _WEIGHTS])
    sources_all: list[str] = []
    docs_all: list[np.ndarray] = []
    tasks_all: list[np.ndarray] = []
    for code, task in enumerate(TASKS):
        if task not in per_task:
            continue
        sources, docs = per_task[task]
        idx = weighted_copies(len(sources), float(weights.get(task, 1.0)), rng)
        sources_all.extend(sources[j] for j in idx.tolist())
        docs_all.append(np.asarray(docs, dtype=np.int64)[idx] if len(idx) else np.zeros(0, dtype=np.int64))
        tasks_all.append(np.full(len(idx), code, dtype=np.int64))
    doc = np.concatenate(docs_all) if docs_all else np.zeros(0, dtype=np.int64)
    task_code = np.concatenate(tasks_all) if tasks_all else np.zeros(0, dtype=np.int64)
    order = np.random.default_rng([seed, _SHUFFLE]).permutation(len(doc))

    identifiers, token_ids = _target_arrays(docids)
    take = pa.array(doc[order], pa.int64())
    table = pa.table(
        {
            "source": pa.array([sources_all[j] for j in order.tolist()], pa.string()),
            "target": identifiers.take(take),
            "target_ids": token_ids.take(take),
            "task": pa.array(TASKS, pa.string()).take(pa.array(task_code[order], pa.int64())),
            "doc": take,
        }
    )
    return datasets.Dataset(
        InMemoryTable(table), info=datasets.DatasetInfo(features=FEATURES), fingerprint=generate_random_fingerprint()
    )


@dataclass
class Seq2SeqCollator:
    """Batches rows of :func:`build_training_pairs` for a seq2seq model.

    ``source`` is tokenized with the Hugging Face ``tokenizer`` (truncated to
    ``max_source_length`` tokens, padded to the longest in the batch); ``target_ids`` are padded
    with ``label_pad_id`` (-100: ignored by the loss) into ``labels``. Accepts a list of rows (what
    a DataLoader over the Dataset passes) or a dict of columns (a Dataset slice). Returns
    ``{"input_ids", "attention_mask", "labels"}`` as long tensors.
    """

    tokenizer: Any
    max_source_length: int = 64
    label_pad_id: int = -100

    def __call__(self, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> dict[str, torch.Tensor]:
        if isinstance(rows, Mapping):
            sources, targets = list(rows["source"]), list(rows["target_ids"])
        else:
            sources, targets = [r["source"] for r in rows], [r["target_ids"] for r in rows]
        enc = self.tokenizer(
            sources, truncation=True, max_length=self.max_source_length, padding="longest", return_tensors="pt"
        )
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": pad_labels(targets, self.label_pad_id),
        }


def pad_labels(targets: Sequence[Sequence[int]], pad_id: int = -100) -> torch.Tensor:
    """Target token ids as one long tensor, each row padded with ``pad_id`` (ignored by the loss) to the longest."""
    width = max((len(t) for t in targets), default=0)
    labels = torch.full((len(targets), width), pad_id, dtype=torch.long)
    for i, t in enumerate(targets):
        labels[i, : len(t)] = torch.as_tensor(t, dtype=torch.long)
    return labels

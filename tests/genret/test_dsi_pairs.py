"""Training pairs (indexing / retrieval / pseudo-query tasks), task weights, the collator and the
pseudo-query generators, on a hand-made corpus, on minicorpus and with a tiny local T5."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genret.dsi_pairs import Seq2SeqCollator, TrainingDataError, build_training_pairs, document_texts
from genret.pseudo_queries import PseudoQueryGenerator, Seq2SeqQueries, SpanQueries, make_generator, sample_spans
from indexing.corpus import load_beir
from indexing.docids import Docids, make_scheme
from indexing.qrels import DataWarning
from indexing.tokenizer import load_tokenizer, minilm_path

LONG = " ".join(f"word{i}" for i in range(150))  # unique words: every chunk/span has one place
DOCS = [
    {"_id": "cat", "title": "Cats", "text": "The cat sat on the mat. Cats purr when they are happy and warm."},
    {"_id": "dog", "title": "Dogs", "text": "The dog chased the cat around the garden all afternoon long."},
    {"_id": "zeb", "title": "", "text": "A zebra has stripes; the okapi is a rare relative of the giraffe."},
    {"_id": "long", "title": "Long", "text": LONG},
    {"_id": "car", "title": "Cars", "text": "A car has four wheels."},
    {"_id": "run", "title": "Running", "text": "She runs every morning; running keeps her fit and cheerful."},
]
QUERIES = {
    "q1": "which animal purrs",
    "q2": "dog in the garden",
    "q3": "striped horse",
    "q4": "pets",
    "q5": "numbered words",
    "q6": "vehicle wheels",
    "q7": "morning exercise",
    "q8": "giraffe relative",
    "q9": "unjudged query",
}
QRELS = {  # 10 relevant judgments; q4 has three, one of them not relevant
    "q1": {"cat": 1},
    "q2": {"dog": 2},
    "q3": {"zeb": 1},
    "q4": {"cat": 1, "dog": 1, "car": 0},
    "q5": {"long": 1},
    "q6": {"car": 1},
    "q7": {"run": 1, "long": 1},
    "q8": {"zeb": 1},
}
N_RELEVANT = 10


@pytest.fixture(scope="module")
def corpus() -> datasets.Dataset:
    return datasets.Dataset.from_list(DOCS)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


@pytest.fixture(scope="module", params=["naive", "atomic"])
def docids(request, corpus, tokenizer) -> Docids:
    return make_scheme(request.param).assign(corpus, tokenizer)


def words_of(row: int) -> list[str]:
    return document_texts(datasets.Dataset.from_list(DOCS))[row].split()


def contiguous_at(words: list[str], run: list[str]) -> list[int]:
    return [i for i in range(len(words) - len(run) + 1) if words[i : i + len(run)] == run]


def test_counts_per_task_and_targets(corpus, docids) -> None:
    pairs = build_training_pairs(
        corpus,
        docids,
        queries=QUERIES,
        qrels=QRELS,
        queries_per_doc=2,
        index_views=("text", "chunks"),
        spans_per_doc=3,
        chunk_words=64,
        progress=False,
    )
    n = len(DOCS)
    chunks = sum(-(-len(words_of(i)) // 64) for i in range(n))
    assert chunks == n + 2  # the long document has 3 chunks
    assert Counter(pairs["task"]) == {"indexing": n + chunks + 3 * n, "retrieval": N_RELEVANT, "pseudo_query": 2 * n}
    eos = docids.eos_token_id
    for row in pairs:
        assert row["target_ids"] == docids.tokens(row["doc"]).tolist() + [eos]
        assert row["target"] == docids.identifiers[row["doc"]]
        assert row["source"].strip()
    indexed = {(r["source"], r["doc"]) for r in pairs if r["task"] == "indexing"}
    assert all((doc, i) in indexed for i, doc in enumerate(document_texts(corpus)))  # "text": whole title + text
    assert document_texts(corpus)[2] == DOCS[2]["text"]  # blank title: just the text
    assert document_texts(corpus)[0] == "Cats " + DOCS[0]["text"]


def test_retrieval_pairs_match_qrels_exactly(corpus, docids) -> None:
    pairs = build_training_pairs(corpus, docids, queries=QUERIES, qrels=QRELS, index_views=(), progress=False)
    assert set(pairs["task"]) == {"retrieval"}
    row_of = {d["_id"]: i for i, d in enumerate(DOCS)}
    expected = Counter((QUERIES[q], row_of[d]) for q, judged in QRELS.items() for d, rel in judged.items() if rel > 0)
    assert Counter(zip(pairs["source"], pairs["doc"], strict=True)) == expected
    assert sum(expected.values()) == N_RELEVANT


def test_task_weights_give_expected_counts(corpus, docids) -> None:
    weights = {"indexing": 0.0, "retrieval": 2.5, "pseudo_query": 0.5}
    pairs = build_training_pairs(
        corpus, docids, queries=QUERIES, qrels=QRELS, queries_per_doc=2, task_weights=weights, progress=False
    )
    tasks = Counter(pairs["task"])
    assert tasks == {"retrieval": 25, "pseudo_query": 6}
    retrieval = Counter((r["source"], r["doc"]) for r in pairs if r["task"] == "retrieval")
    assert len(retrieval) == N_RELEVANT and sorted(Counter(retrieval.values()).items()) == [(2, 5), (3, 5)]
    pseudo = [(r["source"], r["doc"]) for r in pairs if r["task"] == "pseudo_query"]
    assert len(set(pseudo)) == 6  # the sample is without replacement
    unused = build_training_pairs(corpus, docids, pseudo_queries="no/such-model", queries_per_doc=0, progress=False)
    assert Counter(unused["task"]) == {"indexing": len(DOCS)}  # no pseudo-queries asked: the generator is not built
    whole = build_training_pairs(
        corpus, docids, queries=QUERIES, qrels=QRELS, task_weights={"retrieval": 3}, progress=False
    )
    assert Counter(whole["task"]) == {"indexing": len(DOCS), "retrieval": 3 * N_RELEVANT}


def test_deterministic_for_seed_and_different_across_seeds(corpus, docids) -> None:
    kwargs = dict(
        queries=QUERIES,
        qrels=QRELS,
        queries_per_doc=2,
        index_views=("text", "chunks"),
        spans_per_doc=2,
        task_weights={"retrieval": 1.5},
        progress=False,
    )
    a = build_training_pairs(corpus, docids, seed=3, **kwargs).to_dict()
    b = build_training_pairs(corpus, docids, seed=3, **kwargs).to_dict()
    c = build_training_pairs(corpus, docids, seed=4, **kwargs).to_dict()
    assert a == b
    assert a["source"] != c["source"]
    assert Counter(a["task"]) == Counter(c["task"])
    spans = lambda d: sorted(s for s, t in zip(d["source"], d["task"], strict=True) if t == "pseudo_query")  # noqa: E731
    assert spans(a) != spans(c)  # different random spans, not only a different order


def test_spans_are_contiguous_runs_within_bounds(corpus, docids) -> None:
    pairs = build_training_pairs(corpus, docids, index_views=(), spans_per_doc=20, span_words=(5, 9), progress=False)
    assert Counter(pairs["doc"]) == {i: 20 for i in range(len(DOCS))}
    lengths = set()
    for row in pairs:
        words, span = words_of(row["doc"]), row["source"].split()
        assert contiguous_at(words, span), (row["doc"], row["source"])
        assert 5 <= len(span) <= 9 or len(span) == len(words) < 5
        lengths.add(len(span))
    assert lengths == set(range(5, 10))  # every length drawn in 120 spans


def test_chunks_cover_the_document(corpus, docids) -> None:
    pairs = build_training_pairs(corpus, docids, index_views=("chunks",), chunk_words=16, progress=False)
    for i in range(len(DOCS)):
        words = words_of(i)
        chunks = [r["source"].split() for r in pairs if r["doc"] == i]
        assert len(chunks) == -(-len(words) // 16)
        covered = []
        for chunk in chunks:
            starts = [s for s in contiguous_at(words, chunk) if s % 16 == 0]
            assert starts and (len(chunk) == 16 or starts[0] + len(chunk) == len(words))
            covered.extend(range(starts[0], starts[0] + len(chunk)))
        assert sorted(covered) == list(range(len(words)))


def test_blank_documents_and_queries_are_dropped_with_a_warning(tokenizer) -> None:
    corpus = datasets.Dataset.from_list([*DOCS[:2], {"_id": "empty", "title": "", "text": "  "}])
    docids = make_scheme("naive").assign(corpus, tokenizer)
    with pytest.warns(DataWarning) as record:
        pairs = build_training_pairs(
            corpus,
            docids,
            queries={"q": "cat", "blank": " ", "e": "nothing"},
            qrels={"q": {"cat": 1}, "blank": {"dog": 1}, "e": {"empty": 1}},
            index_views=("text", "chunks"),
            spans_per_doc=1,
            queries_per_doc=1,
            progress=False,
        )
    messages = [str(w.message) for w in record]
    assert any("1 empty documents" in m and "'empty'" in m for m in messages)
    assert any("blank source" in m and "1 retrieval" in m for m in messages)
    assert Counter(pairs["task"]) == {"indexing": 6, "retrieval": 2, "pseudo_query": 2}
    assert Counter(pairs["doc"])[2] == 1  # the empty document is only the target of query "e"


def test_clear_errors(corpus, docids, tokenizer) -> None:
    shuffled = corpus.select([1, 0, 2, 3, 4, 5])
    with pytest.raises(TrainingDataError, match=r"row 0: docids have 'cat', the corpus has 'dog'"):
        build_training_pairs(shuffled, docids, progress=False)
    with pytest.raises(TrainingDataError, match="6 documents but the corpus has 5"):
        build_training_pairs(corpus.select(range(5)), docids, progress=False)
    dangling = {**QRELS, "q8": {"zeb": 1, "gone": 1}, "q9": {"missing": 2, "also": 0}}
    with pytest.raises(TrainingDataError, match=r"2 relevant judgments .*'q8' -> 'gone', 'q9' -> 'missing'"):
        build_training_pairs(corpus, docids, queries=QUERIES, qrels=dangling, progress=False)
    with pytest.raises(TrainingDataError, match=r"1 judged queries have no text.*'q0'"):
        build_training_pairs(corpus, docids, queries=QUERIES, qrels={**QRELS, "q0": {"cat": 1}}, progress=False)
    with pytest.raises(TrainingDataError, match="queries and qrels go together"):
        build_training_pairs(corpus, docids, qrels=QRELS, progress=False)
    with pytest.raises(TrainingDataError, match="unknown index view.*'title'"):
        build_training_pairs(corpus, docids, index_views=("text", "title"), progress=False)
    with pytest.raises(TrainingDataError, match="unknown task.*indexng"):
        build_training_pairs(corpus, docids, task_weights={"indexng": 1.0}, progress=False)
    with pytest.raises(TrainingDataError, match="must be a finite number >= 0"):
        build_training_pairs(corpus, docids, task_weights={"retrieval": -1}, progress=False)
    with pytest.raises(TrainingDataError, match="span_words"):
        build_training_pairs(corpus, docids, spans_per_doc=1, span_words=(5, 2), progress=False)


@pytest.mark.parametrize("scheme", ["naive", "title"])
def test_collator_pads_truncates_and_round_trips(scheme, corpus, tokenizer, hf_tokenizer) -> None:
    params = {"order": "shuffled", "seed": 1} if scheme == "naive" else {}
    docids = make_scheme(scheme, **params).assign(corpus, tokenizer)
    doc_of = {tuple(docids.tokens(i).tolist()): i for i in range(len(docids))}
    pairs = build_training_pairs(
        corpus, docids, queries=QUERIES, qrels=QRELS, index_views=("text", "chunks"), progress=False
    )
    collate = Seq2SeqCollator(hf_tokenizer, max_source_length=12)
    loader = torch.utils.data.DataLoader(pairs, batch_size=7, collate_fn=collate)
    seen = 0
    for batch in loader:
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[1] <= 12
        assert batch["labels"].dtype == torch.long
        rows = pairs[seen : seen + len(batch["labels"])]
        width = max(len(ids) for ids in rows["target_ids"])
        assert batch["labels"].shape == (len(rows["target_ids"]), width)
        for i, (source, target, ids) in enumerate(zip(rows["source"], rows["target"], rows["target_ids"], strict=True)):
            labels = batch["labels"][i]
            assert labels[: len(ids)].tolist() == ids and (labels[len(ids) :] == -100).all()
            kept = labels[labels != -100].tolist()
            assert kept[-1] == docids.eos_token_id
            assert docids.identifiers[doc_of[tuple(kept[:-1])]] == target  # labels map back to the identifier
            if scheme == "naive":
                assert hf_tokenizer.decode(kept[:-1]) == target
            expected = hf_tokenizer(source, truncation=True, max_length=12)["input_ids"]
            assert batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist() == expected
        seen += len(batch["labels"])
    assert seen == len(pairs)
    assert any(len(hf_tokenizer(s)["input_ids"]) > 12 for s in pairs["source"])  # truncation was exercised
    if scheme == "title":  # identifiers of different lengths: padding with -100 was exercised
        assert len({len(ids) for ids in pairs["target_ids"]}) > 1
    columns = collate(pairs[:3])  # a dict of columns (a Dataset slice) works too
    assert torch.equal(columns["labels"], collate([pairs[i] for i in range(3)])["labels"])


def test_minicorpus_end_to_end() -> None:
    data = load_beir("minicorpus", split="train")
    docids = make_scheme("atomic").assign(data.corpus, load_tokenizer("minilm"))
    start = time.perf_counter()
    pairs = build_training_pairs(
        data.corpus,
        docids,
        queries=data.queries,
        qrels=data.qrels,
        queries_per_doc=2,
        pseudo_queries="spans",
        progress=False,
    )
    assert time.perf_counter() - start < 5
    assert len(data.queries) == 200
    assert Counter(pairs["task"]) == {"indexing": 200, "retrieval": 200, "pseudo_query": 400}
    assert Counter(pairs["doc"]) == {i: 4 for i in range(200)}  # one train query per document
    row = pairs[0]
    assert row["target_ids"] == [docids.vocab_size - 200 + row["doc"], docids.eos_token_id]


def test_span_queries_and_make_generator() -> None:
    texts = ["one two three four five six seven eight nine ten eleven twelve thirteen", "short text", ""]
    gen = SpanQueries(min_words=3, max_words=5)
    out = gen(texts, 4, seed=7)
    assert [len(q) for q in out] == [4, 4, 4]
    assert out == gen(texts, 4, seed=7) and out != gen(texts, 4, seed=8)
    for q in out[0]:
        assert 3 <= len(q.split()) <= 5 and contiguous_at(texts[0].split(), q.split())
    assert out[1] == ["short text"] * 4 and out[2] == [""] * 4
    assert isinstance(gen, PseudoQueryGenerator)
    assert make_generator(None) == SpanQueries() == make_generator("spans")
    assert make_generator("spans", min_words=2) == SpanQueries(min_words=2)
    assert make_generator(gen) is gen
    name = "castorini/doc2query-t5-base-msmarco"
    assert make_generator(name) == Seq2SeqQueries(name)  # nothing is loaded before the first call
    with pytest.raises(ValueError):
        SpanQueries(min_words=5, max_words=2)


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), max_size=8),
    n=st.integers(0, 5),
    lo=st.integers(1, 6),
    extra=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_spans_property(sizes, n, lo, extra, seed) -> None:
    words = [[f"{d}_{i}" for i in range(size)] for d, size in enumerate(sizes)]
    spans = sample_spans(words, n, lo, lo + extra, np.random.default_rng(seed))
    assert len(spans) == len(words)
    for w, doc_spans in zip(words, spans, strict=True):
        assert len(doc_spans) == n
        for span in doc_spans:
            run = span.split()
            assert len(run) == min(len(w), len(run)) and (lo <= len(run) <= lo + extra or len(run) == len(w))
            assert contiguous_at(w, run)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    config = T5Config(
        vocab_size=len(tok),
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_seq2seq_queries_with_a_tiny_local_model(tiny_t5, corpus, tokenizer) -> None:
    gen = make_generator(str(tiny_t5), batch_size=2, max_new_tokens=4, progress=False)
    assert isinstance(gen, Seq2SeqQueries)
    texts = document_texts(corpus)[:3]  # two batches, the longest document first
    state = torch.get_rng_state()
    out = gen(texts, 2, seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert len(out) == len(texts) and all(len(q) == 2 and all(isinstance(s, str) for s in q) for q in out)
    assert any(s for q in out for s in q)
    assert gen(texts, 2, seed=5) == out
    assert gen(texts, 2, seed=6) != out
    assert gen(texts, 0, seed=5) == [[] for _ in texts]
    small = corpus.select(range(2))
    docids = make_scheme("naive").assign(small, tokenizer)
    pairs = build_training_pairs(
        small, docids, pseudo_queries=gen, queries_per_doc=2, index_views=(), seed=5, progress=False
    )
    assert set(pairs["task"]) <= {"pseudo_query"} and len(pairs) <= 4
    assert Counter(pairs["source"]) == Counter(s for q in gen(texts[:2], 2, seed=5) for s in q if s.strip())

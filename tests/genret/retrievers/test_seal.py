"""SealRetriever: a tiny model trained on tiny_beir's SEAL pairs finds its documents; every decoded n-gram
occurs in the corpus with all its prefixes kept; rescoring equals one-at-a-time scoring; save/load in a
fresh process gives the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from genret.dsi_pairs import Seq2SeqCollator
from genret.evaluation import evaluate
from genret.models import build_text_model
from genret.retrievers.seal import SealRetriever, SealSearchConfig
from genret.seal_pairs import build_seal_pairs
from genret.training import TrainConfig, train
from indexing.artifacts import ArtifactError
from indexing.corpus import load_beir
from indexing.ngrams import NgramIndex
from indexing.tokenizer import load_tokenizer
from tests.genret.tiny_models import tiny_model_config

TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny_beir"
MARKERS = (1, 2)


@pytest.fixture(scope="module")
def data():
    return load_beir(TINY, split="test")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> SealRetriever:
    """The BERT-shaped tiny model trained 120 steps on the queries' SEAL pairs and unsupervised spans."""
    tok = load_tokenizer("minilm")
    index = NgramIndex.build(data.corpus, tok, backend="sa", title_markers=MARKERS, progress=False)
    pairs = build_seal_pairs(
        data.corpus,
        tok,
        queries=data.queries,
        qrels=data.qrels,
        title_markers=MARKERS,
        spans_per_query=5,
        titles_per_query=2,
        unsupervised_per_doc=1,
        progress=False,
    )
    model, hf_tokenizer = build_text_model(tiny_model_config("minilm-decoder"), tok)
    config = TrainConfig(
        output_dir=str(tmp_path_factory.mktemp("seal-train")), max_steps=120, batch_size=32, lr=5e-3, log_every=60
    )
    result = train(model, pairs, Seq2SeqCollator(hf_tokenizer, 64), config, progress=False)
    assert result.loss < 1.0, result.history
    return SealRetriever(result.model, hf_tokenizer, index, SealSearchConfig(num_beams=5, batch_size=8))


def test_trained_model_finds_the_documents_of_its_training_queries(trained, data) -> None:
    run = trained.search(data.queries, k=5, progress=False)
    assert set(run) == set(data.queries)
    doc_ids = set(data.corpus["_id"])
    assert all(len(hits) <= 5 and set(hits) <= doc_ids for hits in run.values())
    assert all(list(hits.values()) == sorted(hits.values(), reverse=True) for hits in run.values())
    metrics = evaluate(run, data.qrels, ("R@1", "R@10"))
    assert metrics["R@1"] >= 0.6, metrics
    # an untrained model finds (almost) nothing: its n-grams are less likely than their corpus frequency
    model, hf_tokenizer = build_text_model(tiny_model_config("minilm-decoder"), load_tokenizer("minilm"))
    untrained = SealRetriever(model, hf_tokenizer, trained.index, trained.config).search(
        data.queries, k=5, progress=False
    )
    assert evaluate(untrained, data.qrels, ("R@1",))["R@1"] < 0.3


@pytest.mark.parametrize("view", ["body", "title"])
def test_every_decoded_ngram_occurs_and_keeps_its_prefixes(trained, data, view: str) -> None:
    texts = list(data.queries.values())[:6]
    with torch.inference_mode():
        found = trained._decode(*trained._encode(texts), view)
    prefix = trained.views[view]
    for ngrams in found:
        assert ngrams
        counts = trained.index.count(trained.index.find([list(g) for g in ngrams]))
        assert (counts > 0).all()
        for g in ngrams:
            assert list(g[: len(prefix)]) == prefix
            # keep-history: every shorter prefix of a decoded n-gram was itself a beam, hence recorded
            assert all(g[:m] in ngrams for m in range(len(prefix) + 1, len(g)))


def test_batched_rescoring_equals_scoring_one_ngram_at_a_time(trained, data) -> None:
    texts = list(data.queries.values())[:3]
    ngrams = [(2023, 2003), (1996,), (1, 2129, 2003, 1037), (3000, 2000, 1010, 2008, 1996)]
    owners, prefix_len = [0, 1, 2, 2], [0, 0, 1, 0]
    trained.config.rescore_batch = 3  # two chunks
    with torch.inference_mode():
        enc, hidden = trained._encode(texts)
        batched = trained._logprobs(enc, hidden, owners, ngrams, prefix_len)
        model = trained.model
        for i, (g, q, p) in enumerate(zip(ngrams, owners, prefix_len, strict=True)):
            ids = enc["input_ids"][q : q + 1, : int(enc["attention_mask"][q].sum())]
            hidden = model.get_encoder()(input_ids=ids).last_hidden_state
            seq = torch.tensor([[trained.decoder_start_token_id, *g]])
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=seq[:, :-1]
            ).logits.log_softmax(-1)
            expected = sum(float(logits[0, j, g[j]]) for j in range(p, len(g)))
            assert batched[i] == pytest.approx(expected, abs=1e-4)


def test_save_and_load_in_a_fresh_process_gives_the_same_run(trained, data, tmp_path) -> None:
    folder = trained.save_pretrained(tmp_path / "seal")
    queries = dict(list(data.queries.items())[:6])
    expected = trained.search(queries, k=5, progress=False)
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from genret.retrievers.seal import SealRetriever\n"
        "r = SealRetriever.from_pretrained(sys.argv[1], device='cpu')\n"
        "q = json.load(open(sys.argv[2]))\n"
        "print(json.dumps(r.search(q, k=5, progress=False)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "queries.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got.keys() == expected.keys()
    for qid in expected:
        assert list(got[qid]) == list(expected[qid])
        np.testing.assert_allclose(list(got[qid].values()), list(expected[qid].values()), rtol=1e-5)
    victim = next((folder / "index").rglob("*.npy"))
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError):
        SealRetriever.from_pretrained(folder)


def test_copy_path_candidates_are_the_query_ngrams_the_corpus_holds(trained, data) -> None:
    """``query_ngrams = N``: each query's n-grams of 1..N tokens (special tokens out) that occur in the corpus,
    against brute force over every document's tokens."""
    docs = [trained.index.doc_tokens(d).tolist() for d in range(len(trained.index.doc_ids))]
    in_corpus = {tuple(toks[s : s + n]) for toks in docs for n in range(1, 4) for s in range(len(toks) - n + 1)}
    texts = list(data.queries.values())[:6]
    trained.config.query_ngrams = 3
    try:
        with torch.inference_mode():
            enc, _ = trained._encode(texts)
            found = trained._query_ngrams(enc)
    finally:
        trained.config.query_ngrams = 0
    special = set(trained.tokenizer.all_special_ids)
    for text, ngrams in zip(texts, found, strict=True):
        tokens = [t for t in trained.tokenizer(text, truncation=True, max_length=64)["input_ids"] if t not in special]
        every = {tuple(tokens[s : s + n]) for n in range(1, 4) for s in range(len(tokens) - n + 1)}
        assert len(ngrams) == len(set(ngrams)) and set(ngrams) == every & in_corpus
        assert not any(t in special for g in ngrams for t in g)


def test_copy_path_scores_the_query_ngrams_beside_the_decoded_ones(trained, data) -> None:
    """With the copy path, a query's ranking is SEAL's scoring of the decoded n-grams plus its own corpus
    n-grams, each with its teacher-forced log-probability; a query of one document's rare words then finds it
    even when beam search is given a single one-token beam."""
    from genret.retrievers.seal_scoring import score_documents

    texts = list(data.queries.values())[:4]
    narrow = SealRetriever(
        trained.model,
        trained.tokenizer,
        trained.index,
        SealSearchConfig(num_beams=1, max_length=1, decode_titles=False, query_ngrams=4),
    )
    with torch.inference_mode():
        enc, hidden = narrow._encode(texts)
        decoded = narrow._decode(enc, hidden, "body")
        copied = narrow._query_ngrams(enc)
        for floor in (None, -1.0):  # copy_logprob: the query's n-grams count at least e^-1 likely
            narrow.config.copy_logprob = floor
            got = narrow.search_texts(texts, k=5)
            for q, (dec, cop) in enumerate(zip(decoded, copied, strict=True)):
                keys = list(dict.fromkeys([*dec, *cop]))
                lp = narrow._logprobs(enc, hidden, [q] * len(keys), keys, [0] * len(keys))
                if floor is not None:
                    lp = np.array([max(v, floor) if g in cop else v for g, v in zip(keys, lp, strict=True)])
                expected = score_documents(keys, lp, narrow.index, narrow.config.scoring)[:5]
                assert [d for d, _ in got[q]] == [d for d, _ in expected]  # other batches: float noise in scores
                np.testing.assert_allclose([s for _, s in got[q]], [s for _, s in expected], rtol=1e-4)
        narrow.config.copy_logprob = None
    # a document's own first 12 words as the query: the copy path finds it; one one-token beam alone does not
    texts = [" ".join(text.split()[:12]) for text in data.corpus["text"]]
    with_copy = [hits[0][0] if hits else -1 for hits in narrow.search_texts(texts, k=1)]
    narrow.config.query_ngrams = 0
    without = [hits[0][0] if hits else -1 for hits in narrow.search_texts(texts, k=1)]
    hit_with, hit_without = np.mean(np.arange(len(texts)) == with_copy), np.mean(np.arange(len(texts)) == without)
    assert hit_with >= 0.7 and hit_with >= hit_without + 0.5, (with_copy, without)  # measured 0.8 against 0.05

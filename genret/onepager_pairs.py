"""1-Pager training targets: a keyword path that narrows the corpus to the gold passage, then the answer.

**The path rule** (deterministic; what :class:`~genret.constraints.onepager.OnePagerConstraint` accepts by
construction). A passage's *keywords* are its words (the tokenizer's pre-tokenized words, each the token n-gram of
its word pieces), minus stopwords, punctuation and single characters. They are ranked:

1. words of the passage that are also words of the question (or pseudo-query), rarest first;
2. the passage's other words, rarest first;
3. pairs of adjacent words of the passage (one of them a keyword), in passage order (for passages that single
   words cannot single out);

rarest = fewest passages holding the word (ties: first position in the passage). Walking that ranking, a keyword
is taken when it narrows the candidates (the passages holding every keyword taken so far, at the start the whole
corpus) and skipped when it does not; the walk stops once at most ``max_candidates`` passages are left, or after
``max_keywords`` keywords. A path that does not get there is *incomplete*: its answer could not be decoded (the
answer marker needs the candidates narrowed), so such examples are counted and left out of the answer pairs.

**Targets**, token ids of the index's tokenizer: ``kw SEP kw SEP ... ANS answer EOS`` for a question with its
answer (the answer is the passage's own tokens at the answer's character offsets, so it is an n-gram of the
passage); ``kw SEP ... EOS`` for retrieval only (``answers=False``); and, with answers, ``kw SEP ... SEP`` for the
indexing pairs (source: the passage's text, or a pseudo-query of it), which teach the paths without an answer.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexing.ngrams import NgramIndex
from indexing.ngrams.within import all_docs, set_sizes
from indexing.tokenizer import TextTokenizer

Unit = tuple[int, ...]
TASKS = ("answer", "retrieval", "indexing", "pseudo_query", "cloze")


@dataclass
class PathStats:
    """What building the paths found: counts reported with the pairs (nothing is dropped silently)."""

    paths: int = 0
    incomplete: int = 0
    """Paths that did not narrow the candidates to ``max_candidates`` within ``max_keywords`` keywords."""
    keywords: int = 0
    unaligned_answers: int = 0
    """Answers whose character offsets did not fall on the passage's tokens (and whose tokens were not found)."""
    examples: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        mean = self.keywords / self.paths if self.paths else 0.0
        return {
            "paths": self.paths,
            "incomplete_paths": self.incomplete,
            "mean_keywords": round(mean, 3),
            "unaligned_answers": self.unaligned_answers,
            "examples": dict(self.examples),
        }


class PassageWords:
    """Every passage's tokens, words (as token n-grams) and character offsets, and how many passages hold each
    word: what the path rule reads."""

    def __init__(self, texts: Sequence[str], tokenizer: TextTokenizer) -> None:
        from bm25s.stopwords import STOPWORDS_EN_PLUS

        self.tokenizer = tokenizer
        self.tokens: list[list[int]] = []
        self.offsets: list[list[tuple[int, int]]] = []
        self.words: list[list[Unit]] = []
        stop = set(STOPWORDS_EN_PLUS)
        self._keyword_cache: dict[Unit, bool] = {}
        self._stop = stop
        for enc in tokenizer.backend.encode_batch(list(texts), add_special_tokens=False):
            self.tokens.append(list(enc.ids))
            self.offsets.append(list(enc.offsets))
            self.words.append(_words(enc.ids, enc.word_ids))
        self.df = Counter(w for words in self.words for w in set(words))

    def is_keyword(self, word: Unit) -> bool:
        """Not a stopword, not punctuation, not a single character."""
        if word not in self._keyword_cache:
            text = self.tokenizer.decode(list(word)).replace(" ##", "").replace("##", "")
            self._keyword_cache[word] = (
                len(text) > 1 and text.lower() not in self._stop and not all(c in string.punctuation for c in text)
            )
        return self._keyword_cache[word]

    def ranked(self, row: int, question_words: set[Unit]) -> list[Unit]:
        """The passage's keywords in the path rule's order (module docstring)."""
        words = self.words[row]
        first: dict[Unit, int] = {}
        for position, word in enumerate(words):
            if self.is_keyword(word):
                first.setdefault(word, position)
        singles = sorted(first, key=lambda w: (w not in question_words, self.df[w], first[w]))
        pairs: dict[Unit, int] = {}
        for position, (a, b) in enumerate(zip(words, words[1:], strict=False)):
            if self.is_keyword(a) or self.is_keyword(b):
                pairs.setdefault(a + b, position)
        return singles + sorted(pairs, key=lambda p: pairs[p])  # pairs: rarity checked by the index as walked


def keyword_path(
    index: NgramIndex, ranked: Sequence[Unit], max_candidates: int, max_keywords: int
) -> tuple[list[Unit], bool]:
    """``(keywords, complete)``: the ranked keywords that narrow the candidates, taken in order until at most
    ``max_candidates`` passages hold them all (complete) or ``max_keywords`` are taken."""
    candidates = all_docs(1, index.n_docs)
    size = index.n_docs
    path: list[Unit] = []
    if size <= max_candidates:
        return path, True
    if not ranked:
        return path, False
    ranges = index.find([list(w) for w in ranked])
    for j, word in enumerate(ranked):
        if len(path) >= max_keywords:
            break
        held = index.docs_within(ranges[[j]], candidates)
        held_size = int(set_sizes(held)[0])
        if 0 < held_size < size:
            path.append(word)
            candidates, size = held, held_size
            if size <= max_candidates:
                return path, True
    return path, False


def path_tokens(path: Sequence[Unit], sep_token_id: int) -> list[int]:
    """``kw SEP kw SEP ...``: every keyword closed by SEP."""
    out: list[int] = []
    for word in path:
        out.extend(word)
        out.append(sep_token_id)
    return out


def answer_span(
    tokens: Sequence[int], offsets: Sequence[tuple[int, int]], start: int, end: int
) -> tuple[int, int] | None:
    """``(first, last + 1)``: the passage tokens inside characters ``[start, end)``, or None when none are."""
    inside = [i for i, (a, b) in enumerate(offsets) if a >= start and b <= end and b > a]
    if not inside:
        return None
    return inside[0], inside[-1] + 1


def find_tokens(haystack: Sequence[int], needle: Sequence[int]) -> int | None:
    """Where ``needle`` first occurs in ``haystack`` (token lists), or None."""
    m = len(needle)
    if m == 0:
        return None
    for s in range(len(haystack) - m + 1):
        if list(haystack[s : s + m]) == list(needle):
            return s
    return None


def question_words(tokenizer: TextTokenizer, texts: Sequence[str]) -> list[set[Unit]]:
    """The words of each question (token n-grams), as the path rule matches them against passages."""
    encoded = tokenizer.backend.encode_batch(list(texts), add_special_tokens=False)
    return [set(_words(e.ids, e.word_ids)) for e in encoded]


def text_offset(title: str | None, text: str) -> int:
    """Where ``text``'s first character sits in the passage as indexed (``indexing.columns.document_texts``: the
    stripped title, a space, the stripped text), minus its leading whitespace."""
    head = (title or "").strip()
    lead = len(text) - len(text.lstrip())
    return (len(head) + 1 if head else 0) - lead


def _words(ids: Sequence[int], word_ids: Sequence[int | None]) -> list[Unit]:
    """Consecutive tokens of one pre-tokenized word, as tuples, in order."""
    words: list[Unit] = []
    current: list[int] = []
    last = None
    for token, word in zip(ids, word_ids, strict=True):
        if word != last and current:
            words.append(tuple(current))
            current = []
        current.append(int(token))
        last = word
    if current:
        words.append(tuple(current))
    return words


def build_onepager_pairs(
    corpus: Any,
    tokenizer: TextTokenizer,
    index: NgramIndex,
    markers: tuple[int, int],
    *,
    questions: Mapping[str, str] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    answers: Mapping[str, Any] | None = None,
    pseudo_queries: Mapping[str, str] | None = None,
    pseudo_qrels: Mapping[str, Mapping[str, int]] | None = None,
    cloze: tuple[Mapping[str, str], Mapping[str, Mapping[str, int]], Mapping[str, Any]] | None = None,
    index_passages: bool = True,
    max_candidates: int = 1,
    max_keywords: int = 4,
    task_weights: Mapping[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Any, PathStats]:
    """Training pairs (columns ``source, target, target_ids, task, doc``, as SEAL's) and the path statistics.

    ``markers``: the (SEP, ANS) token ids. Tasks: ``"answer"`` (question -> path ANS answer EOS; needs
    ``answers``, ``{qid: indexing.answers.Answers}``, the first gold answer with an offset is used), ``"retrieval"``
    (question -> path EOS, when there are no answers), ``"indexing"`` (passage text -> path) and
    ``"pseudo_query"`` (a pseudo-query -> the path of its passage, question words first) and, with answers,
    ``"cloze"`` (``cloze = (questions, qrels, answers)`` of :func:`genret.cloze_questions.cloze_questions`, made
    into targets as the gold questions are).
    """
    from tqdm.auto import tqdm

    from genret.dsi_pairs import weighted_text_pairs
    from indexing.columns import column, column_names, document_texts

    sep, ans = markers
    eos = tokenizer.eos_token_id
    with_answers = answers is not None
    doc_ids = [str(x) for x in column(corpus, "_id")]
    row_of = {d: i for i, d in enumerate(doc_ids)}
    texts = document_texts(corpus)
    titles = column(corpus, "title") if "title" in column_names(corpus) else [None] * len(doc_ids)
    raw = column(corpus, "text")
    words = PassageWords(texts, tokenizer)
    stats = PathStats()
    rng = np.random.default_rng(seed)
    examples: dict[str, list[tuple[str, list[int], int]]] = {task: [] for task in TASKS}

    def path_of(row: int, query_words: set[Unit]) -> tuple[list[int], bool]:
        path, complete = keyword_path(index, words.ranked(row, query_words), max_candidates, max_keywords)
        stats.paths += 1
        stats.keywords += len(path)
        stats.incomplete += not complete
        return path_tokens(path, sep), complete

    if index_passages:
        for row in tqdm(range(len(doc_ids)), desc="1-Pager passage paths", unit="passage", disable=not progress):
            path, complete = path_of(row, set())
            target = path if with_answers else [*path, eos]
            if path and (complete or with_answers):
                examples["indexing"].append((texts[row], target, row))
    if cloze is not None and not with_answers:
        raise ValueError("cloze questions train answers: pass answers too (or no cloze questions)")
    cloze_queries, cloze_qrels, cloze_answers = cloze if cloze is not None else (None, None, None)
    sets = (
        ("answer", questions, qrels, answers),
        ("pseudo_query", pseudo_queries, pseudo_qrels, None),
        ("cloze", cloze_queries, cloze_qrels, cloze_answers),
    )
    for task, queries_, qrels_, answers_ in sets:
        if queries_ is None or qrels_ is None:
            continue
        judged = [(q, d) for q, rel in qrels_.items() for d, r in rel.items() if r > 0]
        missing = [(q, d) for q, d in judged if q not in queries_ or d not in row_of]
        if missing:
            raise ValueError(
                f"{len(missing)} relevant judgments point at unknown questions or passages, e.g. {missing[0][0]!r} "
                f"-> {missing[0][1]!r}"
            )
        qwords = question_words(tokenizer, [queries_[q] for q, _ in judged])
        for (qid, doc), qw in tqdm(
            list(zip(judged, qwords, strict=True)), desc=f"1-Pager {task} paths", unit=task, disable=not progress
        ):
            row = row_of[doc]
            path, complete = path_of(row, qw)
            if task == "pseudo_query":
                if path and (complete or with_answers):
                    examples["pseudo_query"].append((queries_[qid], path if with_answers else [*path, eos], row))
                continue
            if not with_answers:
                if complete:
                    examples["retrieval"].append((queries_[qid], [*path, eos], row))
                continue
            span = _answer_tokens(words, row, answers_.get(qid), titles[row], raw[row], tokenizer)
            if span is None:
                stats.unaligned_answers += 1
            elif complete:
                examples[task].append((queries_[qid], [*path, ans, *span, eos], row))
    for task, found in examples.items():
        stats.examples[task] = len(found)
    if not any(examples.values()):
        raise ValueError("no 1-Pager training pairs: no passage got a path (is the corpus empty?)")
    return weighted_text_pairs(examples, task_weights, rng, tokenizer.decode), stats


def _answer_tokens(
    words: PassageWords, row: int, gold: Any, title: str | None, text: str, tokenizer: TextTokenizer
) -> list[int] | None:
    """The passage's tokens of the first gold answer: at its character offset when given, else where its own
    tokens first occur in the passage; None when neither works."""
    if gold is None:
        return None
    tokens = words.tokens[row]
    shift = text_offset(title, text)
    for j, answer in enumerate(gold.texts):
        if gold.starts is not None:
            start = gold.starts[j] + shift
            span = answer_span(tokens, words.offsets[row], start, start + len(answer))
            if span is not None:
                return tokens[span[0] : span[1]]
        at = find_tokens(tokens, tokenizer.encode(answer))
        if at is not None:
            return tokens[at : at + len(tokenizer.encode(answer))]
    return None

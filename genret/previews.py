"""What a person sees of a retrieved document (``genret search``): its title, or its first words."""

from __future__ import annotations

import sys
from collections.abc import Callable

PREVIEW_WORDS = 12


def document_previews(retriever: object, data: str | None) -> Callable[[str], str]:
    """``doc_id -> its title, or its first words``: from the corpus ``--data`` names, else the corpus recorded in
    the folder (DSI: the path it was built from, if it is still there), else the document's own tokens (SEAL's
    n-gram index holds them); empty when none is at hand (a note says to pass --data)."""
    from indexing.columns import column
    from indexing.corpus import load_corpus
    from indexing.ngrams import NgramIndex

    def first_words(text: str) -> str:
        words = " ".join(text.split()).split(" ")
        return " ".join(words[:PREVIEW_WORDS]) + (" ..." if len(words) > PREVIEW_WORDS else "")

    index = retriever.index  # type: ignore[attr-defined]
    corpus = load_corpus(data) if data else None
    source = index.manifest_config().get("source")
    if corpus is None and source:
        try:
            corpus = load_corpus(source)
        except (OSError, ValueError):  # moved or deleted since: fall back to what the folder holds
            corpus = None
    if corpus is not None:
        titles = column(corpus, "title") if "title" in corpus.column_names else [""] * len(corpus)
        shown = {
            str(d): first_words(t if t.strip() else x)
            for d, t, x in zip(column(corpus, "_id"), titles, column(corpus, "text"), strict=True)
        }
        return lambda doc: shown.get(doc, "")
    if isinstance(index, NgramIndex):  # SEAL: the index holds every document's tokens
        row = {d: i for i, d in enumerate(index.doc_ids)}
        markers = set(index.manifest_config().get("title_markers") or ())
        tokenizer = retriever.tokenizer  # type: ignore[attr-defined]

        def decoded(doc: str) -> str:
            tokens = [t for t in index.doc_tokens(row[doc])[: 4 * PREVIEW_WORDS].tolist() if t not in markers]
            return first_words(tokenizer.decode(tokens, skip_special_tokens=True))

        return decoded
    print("(pass --data CORPUS to see each document's title or first words)", file=sys.stderr)
    return lambda doc: ""

"""DSI: documents get identifiers (atomic, naive, semantic, title, url docids), a model learns text -> identifier,
and decoding is constrained to the identifiers' trie (recipe sections ``docids`` and ``search``)."""

from __future__ import annotations

from typing import Any

from genret.systems.base import Prepared, System
from indexing.trec import Qrels


def prepare_dsi(
    recipe: Any, corpus: Any, queries: dict[str, str] | None, qrels: Qrels | None, progress: bool
) -> Prepared:
    """Docids and their trie, DSI pairs (indexing, retrieval, pseudo-queries), a model sized to the docids."""
    from genret.decoder_init import init_decoder_as_mean_pooling
    from genret.distillation import distill_pairs
    from genret.docid_init import freeze_docid_rows, init_docid_rows
    from genret.dsi_pairs import build_training_pairs
    from genret.models import build_model
    from genret.retrievers.dsi import DsiRetriever
    from indexing.docid_index import build_index
    from indexing.docids import make_scheme
    from indexing.embeddings import encode_corpus
    from indexing.tokenizer import load_tokenizer

    name = recipe.docids.tokenizer
    tokenizer = None if name is None or name.lower() == "none" else load_tokenizer(name)
    scheme = make_scheme(recipe.docids.scheme, **recipe.docids.params)
    if hasattr(scheme, "progress") and "progress" not in recipe.docids.params:
        scheme.progress = progress  # embedding a corpus for semantic ids takes minutes on a CPU: show it
    index = build_index(corpus, scheme, tokenizer, source=recipe.data.path)
    pairs = build_training_pairs(
        corpus,
        index.docids,
        queries=queries,
        qrels=qrels,
        pseudo_queries=recipe.pairs.pseudo_queries,
        queries_per_doc=recipe.pairs.queries_per_doc,
        index_views=tuple(recipe.pairs.index_views),
        spans_per_doc=recipe.pairs.spans_per_doc,
        task_weights=recipe.pairs.task_weights or None,
        seed=recipe.pairs.seed,
        progress=progress,
    )
    if recipe.pairs.teacher:
        pairs = distill_pairs(
            pairs,
            corpus,
            index.docids,
            teacher=recipe.pairs.teacher,
            depth=recipe.pairs.teacher_depth,
            samples=recipe.pairs.teacher_samples,
            temperature=recipe.pairs.teacher_temperature,
            seed=recipe.pairs.seed,
        )
    model, hf_tokenizer = build_model(recipe.model, index.docids)
    if recipe.model.init_docids_from:
        embeddings = encode_corpus(corpus, recipe.model.init_docids_from, progress=progress)  # memoised per process
        init_docid_rows(model, index.docids, embeddings, seed=recipe.model.seed)
    if recipe.model.freeze_docid_rows:
        freeze_docid_rows(model)
    if recipe.model.init_decoder == "mean-pooling":
        init_decoder_as_mean_pooling(model)
    return Prepared(
        pairs,
        model,
        hf_tokenizer,
        len(index),
        lambda m, device=None: DsiRetriever(m, hf_tokenizer, index, recipe.search, device=device),
    )


DSI = System(
    name="dsi", sections=("docids", "search"), prepare=prepare_dsi, retriever="genret.retrievers.dsi:DsiRetriever"
)

"""SEAL: any n-gram of the corpus is an identifier; the model generates n-grams constrained to the corpus's n-gram
index (FM-index or suffix array) and documents are scored by the n-grams they hold (recipe section ``seal``)."""

from __future__ import annotations

from typing import Any

from genret.systems.base import Prepared, System, refuse_docid_options
from indexing.trec import Qrels


def prepare_seal(
    recipe: Any, corpus: Any, queries: dict[str, str] | None, qrels: Qrels | None, progress: bool
) -> Prepared:
    """The corpus's n-gram index, SEAL pairs (query -> spans and title, unsupervised spans), a text model."""
    from genret.distillation import pseudo_query_judgments
    from genret.models import build_text_model
    from genret.retrievers.seal import SealRetriever
    from genret.seal_pairs import build_seal_pairs
    from indexing.ngrams import NgramIndex
    from indexing.tokenizer import load_tokenizer

    seal = recipe.seal
    tokenizer = load_tokenizer(seal.tokenizer)
    markers = tuple(seal.title_markers) if seal.title_markers else None
    index = NgramIndex.build(corpus, tokenizer, backend=seal.backend, title_markers=markers, progress=progress)
    made_queries, made_qrels = None, None
    if recipe.pairs.queries_per_doc:
        p = recipe.pairs
        made_queries, made_qrels = pseudo_query_judgments(
            corpus,
            p.pseudo_queries,
            p.queries_per_doc,
            teacher=p.teacher,
            depth=p.teacher_depth,
            samples=p.teacher_samples,
            temperature=p.teacher_temperature,
            seed=p.seed,
        )
    pairs = build_seal_pairs(
        corpus,
        tokenizer,
        queries=queries,
        qrels=qrels,
        title_markers=markers,
        span_tokens=seal.span_tokens,
        spans_per_query=seal.spans_per_query,
        titles_per_query=seal.titles_per_query,
        temperature=seal.temperature,
        title_tokens=seal.title_tokens,
        pseudo_queries=made_queries,
        pseudo_qrels=made_qrels,
        spans_per_pseudo_query=seal.spans_per_pseudo_query,
        unsupervised_per_doc=seal.unsupervised_per_doc,
        task_weights=seal.task_weights or None,
        seed=seal.seed,
        progress=progress,
    )
    model, hf_tokenizer = build_text_model(recipe.model, tokenizer, max_new_tokens=seal.search.max_length)
    return Prepared(
        pairs,
        model,
        hf_tokenizer,
        index.n_docs,
        lambda m, device=None: SealRetriever(m, hf_tokenizer, index, seal.search, device=device),
    )


def check_seal_recipe(recipe: Any) -> list[str]:
    """A SEAL model decodes the tokenizer's own tokens: the docid-token options of ``model`` do not apply."""
    return refuse_docid_options(recipe, "SEAL")


SEAL = System(
    name="seal",
    sections=("seal",),
    prepare=prepare_seal,
    retriever="genret.retrievers.seal:SealRetriever",
    check_recipe=check_seal_recipe,
)

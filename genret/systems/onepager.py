"""1-Pager: one decoding pass writes corpus keywords that narrow the passages, then an answer inside the one left
(recipe section ``onepager``). Besides retrieval it answers: the pipeline adds answer EM / F1 (beside the
closed-book reading of the same model) and the checks that every answer and keyword lies in its evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genret.systems.base import Prepared, System, refuse_docid_options
from indexing.trec import Qrels


def prepare_onepager(
    recipe: Any, corpus: Any, queries: dict[str, str] | None, qrels: Qrels | None, progress: bool
) -> Prepared:
    """The corpus's n-gram index, keyword-path pairs (questions with their answers, passages), a text model."""
    from genret.distillation import pseudo_query_judgments
    from genret.models import build_text_model
    from genret.onepager_pairs import build_onepager_pairs
    from genret.retrievers.onepager import OnePagerRetriever
    from indexing.answers import ANSWERS_FILE, load_answers
    from indexing.columns import document_texts
    from indexing.ngrams import NgramIndex
    from indexing.tokenizer import load_tokenizer

    config = recipe.onepager
    search = config.search
    tokenizer = load_tokenizer(config.tokenizer)
    index = NgramIndex.build(corpus, tokenizer, backend=config.backend, progress=progress)
    answers_path = Path(recipe.data.path) / ANSWERS_FILE
    answers = load_answers(answers_path) if search.answers else None
    made_queries, made_qrels = None, None
    if recipe.pairs.queries_per_doc:
        p = recipe.pairs
        made_queries, made_qrels = pseudo_query_judgments(
            corpus, p.pseudo_queries, p.queries_per_doc, teacher=None, seed=p.seed
        )
    cloze = None
    if config.cloze_per_doc and answers is not None:
        from genret.cloze_questions import cloze_questions

        cloze = cloze_questions(corpus, config.cloze_per_doc, seed=config.seed)
    pairs, stats = build_onepager_pairs(
        corpus,
        tokenizer,
        index,
        (search.sep_token_id, search.answer_token_id),
        questions=queries,
        qrels=qrels,
        answers=answers,
        pseudo_queries=made_queries,
        pseudo_qrels=made_qrels,
        cloze=cloze,
        index_passages=config.index_passages,
        max_candidates=search.max_candidates,
        max_keywords=config.max_keywords,
        task_weights=config.task_weights or None,
        seed=config.seed,
        progress=progress,
    )
    passages = document_texts(corpus)
    model, hf_tokenizer = build_text_model(recipe.model, tokenizer, max_new_tokens=search.max_length)

    def evaluate_answers(retriever: Any, eval_queries: dict[str, str], progress_: bool) -> dict[str, Any]:
        from genret.retrievers.onepager import answer_scores, evidence_checks

        if answers is None:
            return {}
        gold = {q: a.texts for q, a in answers.items()}
        onepager, found = answer_scores(retriever, eval_queries, gold, progress=progress_)
        closed_book, _ = answer_scores(retriever, eval_queries, gold, closed_book=True, progress=progress_)
        by_system = {"onepager": onepager, "closed_book": closed_book}
        return {
            "metrics": {"answers": {name: {"EM": m["EM"], "F1": m["F1"]} for name, m in by_system.items()}},
            "answered_questions": onepager["questions"],
            "checks": evidence_checks(retriever, found),
            "paths": stats.as_dict(),
        }

    return Prepared(
        pairs,
        model,
        hf_tokenizer,
        index.n_docs,
        lambda m, device=None: OnePagerRetriever(m, hf_tokenizer, index, search, device=device, passages=passages),
        evaluate_extra=evaluate_answers,
    )


def check_onepager_recipe(recipe: Any) -> list[str]:
    """A 1-Pager model decodes the tokenizer's own tokens: the docid-token options of ``model`` do not apply; cloze
    questions train answers, so they need ``search.answers``."""
    problems = refuse_docid_options(recipe, "1-Pager")
    if recipe.onepager.cloze_per_doc and not recipe.onepager.search.answers:
        problems.append("onepager.cloze_per_doc needs onepager.search.answers: true (cloze questions train answers)")
    return problems


ONEPAGER = System(
    name="onepager",
    sections=("onepager",),
    prepare=prepare_onepager,
    retriever="genret.retrievers.onepager:OnePagerRetriever",
    check_recipe=check_onepager_recipe,
)

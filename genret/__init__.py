"""genret: generative retrieval. Corpus in, docids and indexes out, a seq2seq model that memorizes
the corpus, constrained decoding back to documents, and evaluation against BM25 and dense baselines.

One flow, every step a name here (the corpus side's from the sibling package ``indexing``), loaded on first use:

>>> data = genret.load_beir("minicorpus", split="test")                               # doctest: +SKIP
>>> index = genret.build_index(data.corpus, genret.make_scheme("atomic"), genret.load_tokenizer("minilm"))
>>> pairs = genret.build_training_pairs(data.corpus, index.docids)                    # text -> identifier
>>> model, tokenizer = genret.build_model(genret.ModelConfig(name_or_path="t5"), index.docids)
>>> result = genret.train(model, pairs, genret.Seq2SeqCollator(tokenizer), genret.TrainConfig(max_steps=100))
>>> retriever = genret.DsiRetriever(result.model, tokenizer, index)
>>> genret.evaluate(retriever.search(data.queries, k=10), data.qrels)

or the whole of it from a recipe: ``genret.run_recipe(genret.load_recipe("quickstart"))``.
"""

from __future__ import annotations

import importlib
from typing import Any

from indexing.artifacts import genret_version

__version__ = genret_version()

_EXPORTS = {
    # load a corpus
    "load_beir": "indexing.corpus",
    "load_corpus": "indexing.corpus",
    "load_queries": "indexing.corpus",
    "load_qrels": "indexing.corpus",
    # identifiers / index
    "load_tokenizer": "indexing.tokenizer",
    "make_scheme": "indexing.docids",
    "build_index": "indexing.docid_index",
    "NgramIndex": "indexing.ngrams",
    # train
    "build_training_pairs": "genret.dsi_pairs",
    "build_seal_pairs": "genret.seal_pairs",
    "Seq2SeqCollator": "genret.dsi_pairs",
    "ModelConfig": "genret.models",
    "build_model": "genret.models",
    "build_text_model": "genret.models",
    "TrainConfig": "genret.training",
    "train": "genret.training",
    # retrieve
    "DsiRetriever": "genret.retrievers.dsi",
    "SearchConfig": "genret.retrievers.dsi",
    "SealRetriever": "genret.retrievers.seal",
    "SealSearchConfig": "genret.retrievers.seal",
    "DenseRetriever": "genret.retrievers.dense",
    "load_retriever": "genret.retrievers",
    # evaluate
    "evaluate": "genret.evaluation",
    "read_trec_run": "genret.evaluation",
    "write_trec_run": "genret.evaluation",
    "RetrievalEvaluator": "genret.evaluation",
    "BM25Retriever": "genret.retrievers",
    "Retriever": "genret.retrievers",
    # the whole flow from a recipe
    "load_recipe": "genret.recipe",
    "run_recipe": "genret.pipeline",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genret' has no attribute {name!r}")

"""genret: generative retrieval. Corpus in, docids and indexes out, a seq2seq model that memorizes
the corpus, constrained decoding back to documents, and evaluation against BM25 and dense baselines."""

from indexing.artifacts import genret_version

__version__ = genret_version()

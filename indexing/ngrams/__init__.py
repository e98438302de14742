"""The n-gram store (SEAL's identifiers): every n-gram of a tokenized corpus, constrained decoding and locate.

``NgramIndex`` (index.py) presents one or more shards as one index; a shard is a ``sa`` (suffix
array, suffix.py + sa.py) or ``fm`` (compressed FM-index, fm.py + wavelet.py) backend behind the
``NgramShard`` interface (base.py); ``Ranges`` (ranges.py) is what a beam keeps per step.
"""

from indexing.ngrams.ngram_index import BACKENDS, NgramIndex, backend_class
from indexing.ngrams.ranges import Ranges

__all__ = ["BACKENDS", "NgramIndex", "Ranges", "backend_class"]

"""A cost sweep recipe (``kind: cost``): its sizes, schemes, synthetic corpus and decoding settings.

The schema only; :mod:`genret.scaling.cost` runs it, :mod:`genret.scaling.cost_build` and
:mod:`genret.scaling.cost_decode` measure a cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from genret.config import load_config

DSI_SCHEMES = {"dsi-atomic": "atomic", "dsi-naive": "naive", "dsi-semantic": "semantic"}
NGRAM_SCHEMES = {"ngram-sa": "sa", "ngram-fm": "fm"}
SCHEMES = (*DSI_SCHEMES, *NGRAM_SCHEMES)


@dataclass
class CorpusConfig:
    """The synthetic documents (``indexing.synthetic.zipf_documents``)."""

    vocab: int = 32000
    zipf: float = 1.0
    min_length: int = 48
    max_length: int = 80
    seed: int = 0


@dataclass
class SemanticConfig:
    """Semantic ids: hierarchical k-means (``k`` clusters, leaves of <= ``c``) over ``dim``-d TF-IDF SVD."""

    k: int = 10
    c: int = 100
    dim: int = 128


@dataclass
class DecodeConfig:
    """Constrained beam search with a tiny random T5 (``cost_decode.TINY_T5``): what each latency batch runs."""

    batch: int = 8
    beams: int = 20
    warmup: int = 1
    rounds: int = 5
    query_length: int = 16
    ngram_length: int = 10
    enumerate_width: int = 1000
    keep_top: int = 0
    """N-gram followers kept per wide row; 0 means 2 x beams (the beams of the full mask)."""
    threads: int = 1
    seed: int = 0


@dataclass
class CostSweepConfig:
    """A ``kind: cost`` recipe: sizes x schemes, each cell measured once (see the module docstring)."""

    name: str = "scaling-cost"
    kind: str = "cost"
    output_dir: str = "runs/scaling-cost"
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    schemes: list[str] = field(default_factory=lambda: list(SCHEMES))
    tokenizer: str | None = "minilm"
    """Text tokenizer of the DSI cells (its vocabulary comes first, naive ids are tokenized with it); null:
    identifiers of new tokens only (pad 0, eos 1; naive digits become 10 new tokens)."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    isolate: bool = True
    """Run each cell in a fresh Python process (clean memory figures); false: in this process (tests)."""
    work_dir: str | None = None
    """Where saved indexes are measured (deleted after each cell); null: a temporary folder."""

    def __post_init__(self) -> None:
        if self.kind != "cost":
            raise ValueError(f"kind: a cost sweep recipe has kind 'cost', got {self.kind!r}")
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError(f"sizes: expected a non-empty list of positive document counts, got {self.sizes}")
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if unknown or not self.schemes:
            raise ValueError(f"schemes: unknown {unknown or 'empty list'}; valid schemes: {', '.join(SCHEMES)}")
        if self.decode.beams < 2 or self.decode.batch < 1 or self.decode.rounds < 1:
            raise ValueError("decode: needs beams >= 2, batch >= 1 and rounds >= 1")


def load_cost_sweep(path: str | os.PathLike, overrides: list[str] | None = None) -> CostSweepConfig:
    """A cost sweep recipe (strict schema; errors name the file and the key)."""
    return load_config(CostSweepConfig, path, overrides)

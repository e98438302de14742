"""The schema of a quality sweep recipe (``genret scale RECIPE``): corpus, sizes, systems, budget, evaluation.

Loaded strictly like every recipe (``genret.config``): unknown keys and wrong types are errors naming
the key path, and ``key.sub=value`` overrides apply first (``sizes=[1000,2500]``,
``corpus=[scifact]``, ``budget.epochs=2``). A top-level ``kind`` says which sweep a file is:
``quality`` (this schema) or ``cost`` (the synthetic cost sweep, ``genret.scaling.cost``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genret.config import load_config, read_yaml
from genret.retrievers.baselines import BASELINES
from genret.systems import SYSTEMS


@dataclass
class CollectionConfig:
    """One BEIR collection of the corpus."""

    path: str
    """A BEIR folder (relative to the working directory) or a hub dataset name with the network."""
    eval_split: str = "test"
    """qrels split evaluated in every cell."""
    train_split: str | None = None
    """qrels split whose queries train the generative systems; None: the collection has none."""
    max_eval_queries: int | None = None
    """Evaluate only the first N judged queries of eval_split; None = all."""


@dataclass
class SystemConfig:
    """One system of the sweep: a baseline, or a generative recipe with overrides."""

    name: str
    """Its name in results.jsonl and the figures (e.g. ``dsi-atomic``)."""
    system: str
    """A baseline (bm25 | dense) or a registered generative system (dsi | seal | ...)."""
    recipe: str | None = None
    """dsi/seal: the base recipe (packaged name or path); its data section is replaced by the sweep's corpus."""
    overrides: list[str] = field(default_factory=list)
    """``key.path=value`` overrides of the base recipe (e.g. ``docids.scheme=atomic``)."""

    def __post_init__(self) -> None:
        known = (*BASELINES, *SYSTEMS)
        if self.system not in known:
            raise ValueError(f"system {self.system!r} of {self.name!r}: expected one of {', '.join(known)}")
        if self.system in BASELINES and (self.recipe or self.overrides):
            raise ValueError(f"{self.name!r}: the {self.system} baseline takes no recipe or overrides")


@dataclass
class BudgetConfig:
    """How long every generative system trains in every cell (replaces its recipe's train.epochs/max_steps).

    ``max_steps`` or ``train_tokens`` (at most one) is a fixed compute budget, the same at every size;
    without them, ``epochs`` fixed passes over the cell's pairs (compute grows with the corpus).
    """

    epochs: float = 1.0
    """Passes over the cell's training pairs, when neither max_steps nor train_tokens is set."""
    max_steps: int | None = None
    """Fixed optimizer steps in every cell."""
    train_tokens: int | None = None
    """Fixed training tokens (source + target, non-padding), turned into steps from the pairs' mean length."""

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.train_tokens is not None:
            raise ValueError("set max_steps or train_tokens, not both")
        if self.epochs <= 0 or (self.max_steps or 1) < 1 or (self.train_tokens or 1) < 1:
            raise ValueError("epochs, max_steps and train_tokens must be positive")


@dataclass
class SweepEvalConfig:
    """Evaluation and timing of every cell."""

    k: int = 10
    """Documents retrieved per query."""
    measures: list[str] = field(default_factory=lambda: ["nDCG@10", "R@1", "R@10", "RR@10"])
    batch_size: int = 32
    """Queries per timed search call, the same for every system (latency = call time / queries in it)."""


@dataclass
class SweepConfig:
    """A quality sweep: every (size, system) cell is indexed, trained, evaluated and timed."""

    name: str = "sweep"
    kind: str = "quality"
    output_dir: str = "runs/sweep"
    collections: dict[str, CollectionConfig] = field(default_factory=dict)
    """Every collection the recipe knows, by name."""
    corpus: list[str] | None = None
    """Names of the collections merged into the corpus (ids prefixed ``name/`` when several); None = all."""
    sizes: list[int | str | None] = field(default_factory=lambda: ["all"])
    """Corpus sizes in documents ("all" or null = the whole corpus); subsets are nested."""
    seed: int = 0
    """Seeds the subsets' permutation."""
    keep_train_judged: bool = True
    """Keep the training queries' judged documents in every subset too (else their queries are dropped
    where their documents are)."""
    systems: list[SystemConfig] = field(default_factory=list)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: SweepEvalConfig = field(default_factory=SweepEvalConfig)
    keep_artifacts: bool = False
    """Keep each cell's trained retriever and checkpoints under ``cells/`` (else removed once measured)."""

    def __post_init__(self) -> None:
        if self.kind != "quality":
            raise ValueError(f"kind {self.kind!r}: this schema is the quality sweep's")
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ValueError(f"system names must be unique, got {names}")
        unknown = [c for c in self.corpus or [] if c not in self.collections]
        if unknown:
            raise ValueError(f"corpus names {unknown} are not under collections ({', '.join(self.collections)})")

    def selected(self) -> dict[str, CollectionConfig]:
        """The collections that make the corpus, in the order named."""
        return {name: self.collections[name] for name in (self.corpus or list(self.collections))}


def sweep_kind(path: str | Path) -> str:
    """A sweep recipe's top-level ``kind`` (``quality`` when absent)."""
    return str(read_yaml(path).get("kind", "quality"))


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """A quality sweep recipe with overrides applied (strict schema; errors name the file and key)."""
    return load_config(SweepConfig, path, overrides)


def to_collection_dicts(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """The selected collections as plain mappings (what ``load_sweep_data`` takes)."""
    return {name: vars(c) for name, c in config.selected().items()}

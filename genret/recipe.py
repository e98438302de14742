"""The recipe schema: one YAML file says which corpus, system (DSI or SEAL), pairs, model, training and search.

``load_recipe(path, overrides)`` reads ``recipes/*.yaml`` into these dataclasses; unknown keys and
wrong types are errors naming the key path (``genret.config``). ``expected`` holds the metrics the
recipe's header promises, checked by ``genret run --check`` (pyserini's 2CR habit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genret.config import ConfigError, check_numbers, load_config, to_dict
from genret.models import ModelConfig
from genret.retrievers.baselines import BASELINES
from genret.retrievers.dsi import SearchConfig
from genret.retrievers.onepager import OnePagerSearchConfig
from genret.retrievers.seal import SealSearchConfig
from genret.systems import SYSTEMS
from genret.training import TrainConfig
from indexing.qrels import check_option

RECIPES = Path(__file__).resolve().parent / "recipes"


@dataclass
class DataConfig:
    """Where the corpus, training queries and evaluation queries come from."""

    path: str = "minicorpus"
    """A BEIR folder, a built-in name (``minicorpus``) or a hub dataset with the network."""
    train_split: str | None = "train"
    """qrels split whose queries train the retrieval task; None when the corpus has none."""
    eval_split: str = "test"
    """qrels split evaluated at the end."""
    heldout_queries: int = 0
    """Train-split queries withheld from training and evaluated at every train.eval_every (never test)."""
    max_docs: int | None = None
    """Keep every document judged in the train/eval splits plus the first others up to this many."""
    max_eval_queries: int | None = None
    """Evaluate only the first N judged queries (quick runs); None = all."""
    memorization_docs: int | None = None
    """Documents probed for memorization (their own first tokens as the query); None = all."""
    on_duplicate: str = "error"
    """A document or query id given twice: "error" refuses the collection, "warn" keeps the first of each."""

    def __post_init__(self) -> None:
        check_option("on_duplicate", self.on_duplicate)
        check_numbers(
            self, non_negative=("heldout_queries",), positive=("max_docs", "max_eval_queries", "memorization_docs")
        )


@dataclass
class DocidConfig:
    """Which identifiers the model learns to generate."""

    scheme: str = "semantic"
    """atomic | naive | semantic | title | url (``indexing.docids``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Scheme parameters, e.g. ``{k: 10, c: 100, encoder: minilm}``."""
    tokenizer: str | None = "minilm"
    """Tokenizer the identifiers are encoded for; must be the model's. ``none`` (or null): a standalone docid
    vocabulary (pad, eos and the scheme's own tokens only), so the decoder's output layer has a row per docid
    token instead of the tokenizer's ~30k; for the encoder-decoder models ("minilm", "bert")."""


@dataclass
class PairsConfig:
    """Training pairs (``genret.dsi_pairs.build_training_pairs``)."""

    index_views: list[str] = field(default_factory=lambda: ["text"])
    """Document views for the indexing task: "text" (first tokens), "chunks" (consecutive segments)."""
    spans_per_doc: int = 0
    """Random word spans per document, as extra indexing examples."""
    pseudo_queries: str | None = "spans"
    """Pseudo-query generator: "spans" (offline), a seq2seq model name (doc2query), or None."""
    queries_per_doc: int = 0
    """Pseudo-queries per document."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Multiples per task, e.g. {indexing: 1, retrieval: 2}: the indexing:retrieval ratio."""
    max_source_length: int = 64
    """Source tokens kept in training (documents are cut to their first L tokens)."""
    teacher: str | None = None
    """Rank distillation (``genret.distillation``): "bm25", "dense" or "bm25+dense" (the two fused by
    reciprocal rank) labels each pseudo-query with its top documents; None = off. Training only: search never
    uses the teacher."""
    teacher_depth: int = 10
    """Teacher documents per pseudo-query that targets are drawn from."""
    teacher_samples: int = 4
    """Teacher-labelled rows per pseudo-query (drawn from softmax(score / top score / temperature))."""
    teacher_temperature: float = 0.1
    """Sharpness of the teacher's distribution (lower: closer to its top document)."""
    seed: int = 0


@dataclass
class SealConfig:
    """The SEAL system (``system: seal``): n-gram index, training pairs (``genret.seal_pairs``), search."""

    backend: str = "sa"
    """N-gram index backend: "sa" (suffix array, fastest) or "fm" (compressed FM-index, ~2.4 bytes/token)."""
    tokenizer: str = "minilm"
    """Tokenizer of the index and of the model's targets."""
    title_markers: list[int] | None = field(default_factory=lambda: [1, 2])
    """Token ids around each title in the index (the title view); MiniLM's [unused0], [unused1]. None: no view."""
    span_tokens: int = 10
    """Length of the passage spans the model learns to generate."""
    spans_per_query: int = 10
    """Spans of each relevant passage per training query, sampled by overlap with the query."""
    titles_per_query: int = 3
    """Copies of (query -> title) per relevant passage."""
    temperature: float = 1.0
    """Softmax temperature of the span sampling (lower: spans closer to the query)."""
    title_tokens: int | None = None
    """Title tokens kept in a title target (a longer title is cut, without its end marker); None: whole titles.
    Search decodes at most ``search.max_length`` tokens, so more only cost training time."""
    unsupervised_per_doc: int = 0
    """Random (span -> span) and (span -> title) pairs per document: training without queries."""
    spans_per_pseudo_query: int = 2
    """Spans per relevant passage of each pseudo-query (``pairs.pseudo_queries`` x ``pairs.queries_per_doc``,
    judged relevant to their document and, with ``pairs.teacher``, to ``pairs.teacher_samples`` teacher draws)."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Multiples per task: retrieval, retrieval_title, unsupervised, pseudo_query."""
    seed: int = 0
    search: SealSearchConfig = field(default_factory=SealSearchConfig)

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("span_tokens", "title_tokens", "temperature"),
            non_negative=("spans_per_query", "titles_per_query", "unsupervised_per_doc", "spans_per_pseudo_query"),
        )


@dataclass
class OnePagerConfig:
    """The 1-Pager system (``system: onepager``): n-gram index, keyword-path targets (``genret.onepager_pairs``),
    search. The markers and ``max_candidates`` of ``search`` are also the ones the targets are built with."""

    backend: str = "sa"
    """N-gram index backend: "sa" or "fm"."""
    tokenizer: str = "minilm"
    """Tokenizer of the index and of the model's targets."""
    max_keywords: int = 4
    """Keywords in a target path at most (the walk stops earlier once the passage is singled out)."""
    index_passages: bool = True
    """Also train passage -> path pairs (memorizing the corpus's paths)."""
    cloze_per_doc: int = 0
    """Cloze questions per passage trained as answered questions (``genret.cloze_questions``); 0 = none."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Multiples per task: answer, retrieval, indexing, pseudo_query, cloze."""
    seed: int = 0
    search: OnePagerSearchConfig = field(default_factory=OnePagerSearchConfig)

    def __post_init__(self) -> None:
        check_numbers(self, positive=("max_keywords",), non_negative=("cloze_per_doc",))


@dataclass
class EvalConfig:
    """Final evaluation."""

    k: int = 10
    """Documents retrieved per query by the DSI model (beams >= k)."""
    measures: list[str] = field(default_factory=lambda: ["nDCG@10", "R@1", "R@10", "RR@10"])
    baselines: list[str] = field(default_factory=lambda: ["bm25"])
    """Baselines run on the same queries: "bm25", "dense" (all-MiniLM-L6-v2)."""
    during_training: int = 0
    """Documents probed for memorization at each train.eval_every (plus data.heldout_queries); 0 = no probe."""

    def __post_init__(self) -> None:
        from genret.evaluation import parse_measures

        check_numbers(self, positive=("k",), non_negative=("during_training",))
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown {', '.join(map(repr, unknown))}; known: {', '.join(BASELINES)}")
        parse_measures(self.measures)


@dataclass
class Recipe:
    """A complete experiment: index -> pairs -> model -> train -> search -> evaluate."""

    name: str = "recipe"
    output_dir: str = "runs/recipe"
    system: str = "dsi"
    """"dsi" (docids + trie: docids, pairs, search sections), "seal" (corpus n-grams: the seal section) or
    "onepager" (keyword path then answer: the onepager section)."""
    data: DataConfig = field(default_factory=DataConfig)
    docids: DocidConfig = field(default_factory=DocidConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    seal: SealConfig = field(default_factory=SealConfig)
    onepager: OnePagerConfig = field(default_factory=OnePagerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    expected: dict[str, dict[str, float]] = field(default_factory=dict)
    """Metrics the recipe header promises: {system: {measure: value}}; checked within a tolerance."""


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: a path, or the bare name of a packaged recipe (``quickstart``, ``quickstart.yaml``).

    Anything with a folder in it is a path and must exist: a mistyped ``my/quickstart.yaml`` is an error, never
    the packaged recipe of the same file name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    bare = str(name_or_path) == path.name
    packaged = RECIPES / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if bare and packaged.is_file():
        return packaged
    if not bare:
        raise FileNotFoundError(f"recipe file not found: {path} (a packaged recipe is named without a folder: {names})")
    raise FileNotFoundError(f"no recipe {name_or_path!r}: not a file, and not one of the packaged recipes ({names})")


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML (strict schema) with ``key.sub=value`` overrides applied.

    An override of ``docids.scheme`` drops the file's ``docids.params`` (they are the other scheme's) unless
    ``docids.params`` is overridden too: ``genret quickstart docids.scheme=atomic`` just works."""
    path = resolve_recipe(name_or_path)
    overrides = list(overrides or [])
    keys = [item.partition("=")[0] for item in overrides]
    if "docids.scheme" in keys and not any(k == "docids.params" or k.startswith("docids.params.") for k in keys):
        overrides.insert(keys.index("docids.scheme"), "docids.params={}")
    recipe = load_config(Recipe, path, overrides)
    check_system(recipe, path)
    return recipe


def check_system(recipe: Recipe, where: str | Path) -> None:
    """ConfigError unless ``recipe.system`` is a registered system and that system accepts the recipe."""
    system = SYSTEMS.get(recipe.system)
    if system is None:
        raise ConfigError(f"{where}: system: expected one of {', '.join(SYSTEMS)}, got {recipe.system!r}")
    default = Recipe()
    foreign = sorted(
        {
            f"{section} (system {other.name})"
            for other in SYSTEMS.values()
            if other is not system
            for section in other.sections
            if section not in system.sections
            and to_dict(getattr(recipe, section)) != to_dict(getattr(default, section))
        }
    )
    problems = (
        [f"{', '.join(foreign)}: another system's settings, which system {system.name} never reads; remove them"]
        if foreign
        else []
    )
    problems += system.check_recipe(recipe) if system.check_recipe else []
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))

"""Every recipe loads against the schema and says in its first lines how to run it and what to expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from genret.config import ConfigError, load_config
from genret.recipe import Recipe, load_recipe, resolve_recipe

ALL_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
# sweep recipes (genret scale) say which sweep they are with a top-level `kind`; the others are run recipes
SWEEPS = [p for p in ALL_RECIPES if "kind" in (yaml.safe_load(p.read_text()) or {})]
RECIPES = [p for p in ALL_RECIPES if p not in SWEEPS]


def test_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "dsi-scifact", "dsi-nq320k", "dsi-msmarco100k"} <= names
    assert {"scaling-shared", "scaling-msmarco"} <= {p.stem for p in SWEEPS}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_documents_itself(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    header = [line for line in path.read_text().splitlines()[:12] if line.startswith("#")]
    assert any("genret " in line for line in header), "first lines must give the exact command"
    assert any("xpected" in line for line in header), "first lines must give the expected metrics"
    search = {"seal": recipe.seal.search, "onepager": recipe.onepager.search}.get(recipe.system, recipe.search)
    assert recipe.pairs.max_source_length == search.max_source_length


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_recipe_loads_and_documents_itself(path: Path) -> None:
    from genret.scaling.config import load_sweep, sweep_kind
    from genret.scaling.sweep import system_recipe

    header = [line for line in path.read_text().splitlines()[:12] if line.startswith("#")]
    assert any("genret scale " in line for line in header), "first lines must give the exact command"
    assert any("xpected" in line for line in header), "first lines must give the expected metrics"
    if sweep_kind(path) != "quality":
        return  # the cost sweep's schema is genret.scaling.cost's, tested there
    sweep = load_sweep(path)
    assert sweep.name == path.stem and sweep.systems and sweep.sizes
    for system in sweep.systems:
        if system.system in ("dsi", "seal"):
            recipe = system_recipe(system)  # the base recipe and overrides load
            search = recipe.seal.search if recipe.system == "seal" else recipe.search
            assert recipe.pairs.max_source_length == search.max_source_length


def test_packaged_names_resolve() -> None:
    assert resolve_recipe("quickstart").name == "quickstart.yaml"
    assert resolve_recipe("quickstart.yaml").name == "quickstart.yaml"
    with pytest.raises(FileNotFoundError, match="packaged recipes"):
        resolve_recipe("no-such-recipe")


def test_a_mistyped_recipe_path_is_an_error_not_the_packaged_recipe(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="recipe file not found: .*no-such-dir/quickstart.yaml"):
        resolve_recipe(tmp_path / "no-such-dir" / "quickstart.yaml")
    with pytest.raises(FileNotFoundError, match="recipe file not found"):
        load_recipe("no-such-dir/quickstart")
    own = tmp_path / "quickstart.yaml"
    own.write_text("name: mine\n")
    assert resolve_recipe(own) == own


def test_overrides_apply_with_types() -> None:
    recipe = load_recipe(
        "quickstart",
        ["train.epochs=2", "docids.scheme=atomic", "data.max_docs=50", "docids.params={}", "train.lr=1e-3"],
    )
    assert recipe.train.epochs == 2.0 and isinstance(recipe.train.epochs, float)
    assert recipe.docids.scheme == "atomic" and recipe.docids.params == {} and recipe.data.max_docs == 50
    assert recipe.train.lr == 1e-3


def test_overriding_the_scheme_drops_the_other_schemes_params(tmp_path: Path) -> None:
    path = tmp_path / "semantic.yaml"
    path.write_text("name: semantic\ndocids: {scheme: semantic, params: {k: 10, c: 10, encoder: minilm}}\n")
    assert load_recipe(path).docids.params  # semantic: k, c, encoder
    assert load_recipe(path, ["docids.scheme=atomic"]).docids.params == {}
    kept = load_recipe(path, ["docids.scheme=semantic", "docids.params.k=5"]).docids.params
    assert kept["k"] == 5 and "c" in kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: {pth: x}", "unknown key.*data.pth"),
        ("trian: {}", "unknown key.*trian"),
        ("train: {batch_size: many}", "train.batch_size: expected int"),
        ("train: {epochs: [1]}", "train.epochs"),
        ("pairs: {index_views: text}", "pairs.index_views: expected a list"),
        ("eval: {k: true}", "eval.k: expected int, got bool"),
        ("- just a list", "mapping at the top level"),
        ("data: {path: [unclosed", "not valid YAML"),
    ],
)
def test_bad_recipes_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(Recipe, path)


def test_bad_override_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key.path=value"):
        load_recipe("quickstart", ["train.epochs"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_recipe("quickstart", ["train.epoch=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=nan", "train: lr must be a finite positive number, got nan"),
        ("train.lr=-1", "train: lr must be a finite positive number"),
        ("train.epochs=.inf", "train: epochs must be a finite positive number, got inf"),
        ("train.warmup_ratio=5", "train: warmup_ratio must be below 1"),
        ("train.weight_decay=-0.1", "train: weight_decay must be a finite non-negative number"),
        ("eval.k=0", "eval: k must be a finite positive number, got 0"),
        ("eval.baselines=[bm25,splade]", "eval: baselines: unknown 'splade'; known: bm25, dense"),
        ("eval.measures=[bogus]", "eval: unknown measure 'bogus'"),
        ("search.num_beams=0", "search: num_beams must be a finite positive number"),
        ("seal.search.num_beams=-1", "seal.search: num_beams must be a finite positive number"),
    ],
)
def test_bad_values_are_refused_when_the_recipe_loads(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_recipe("quickstart", [override])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n", "line 4: key 'lr' is given twice in one mapping (first on line 3)"),
        ("name: a\nname: b\n", "key 'name' is given twice"),
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level"),
    ],
)
def test_recipe_files_with_repeated_keys_or_nothing_in_them_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(path)


def test_a_recipe_that_is_not_utf8_or_an_override_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="override 'train.lr=\\[1': the value is not valid YAML"):
        load_recipe("quickstart", ["train.lr=[1"])


def test_docid_row_options_are_refused_for_seal() -> None:
    with pytest.raises(ConfigError, match="init_docids_from"):
        load_recipe("seal-scifact", ["model.init_docids_from=minilm"])
    with pytest.raises(ConfigError, match="freeze_docid_rows"):
        load_recipe("seal-scifact", ["model.freeze_docid_rows=true"])
    with pytest.raises(ConfigError, match="init_decoder"):
        load_recipe("seal-scifact", ["model.init_decoder=mean-pooling"])
    with pytest.raises(ConfigError, match="init_decoder must be one of mean-pooling"):
        load_recipe("pseudo-beir", ["model.init_decoder=pooled"])


QUALITY = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "quality"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_expected_figures_are_the_recorded_runs(path: Path) -> None:
    """2CR: a recipe's ``expected`` is what its recorded run (``benchmarks/results/quality/<recipe>-<collection>.json``,
    the collection of its default ``data.path``) measured, within the band ``--check`` allows; a recipe with figures
    but no recorded run, or a recorded run of another recipe, fails."""
    from genret.pipeline import check_expected

    recipe = load_recipe(path)
    if not recipe.expected:
        return
    recorded = QUALITY / f"{recipe.name}-{Path(recipe.data.path).name}.json"
    assert recorded.is_file(), f"{path.name} promises figures but {recorded.name} is not recorded"
    results = json.loads(recorded.read_text())
    assert results["recipe"] == recipe.name and results["commit"] and results["machine"]
    assert check_expected(results, recipe.expected) == []

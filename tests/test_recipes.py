"""Every recipe loads against the schema and says in its first lines how to run it and what to expect."""

from __future__ import annotations

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
    search = recipe.seal.search if recipe.system == "seal" else recipe.search
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
    with pytest.raises(FileNotFoundError, match="packaged recipes"):
        resolve_recipe("no-such-recipe")


def test_overrides_apply_with_types() -> None:
    recipe = load_recipe("quickstart", ["train.epochs=2", "docids.scheme=atomic", "data.max_docs=50",
                                        "docids.params={}", "train.lr=1e-3"])
    assert recipe.train.epochs == 2.0 and isinstance(recipe.train.epochs, float)
    assert recipe.docids.scheme == "atomic" and recipe.docids.params == {} and recipe.data.max_docs == 50
    assert recipe.train.lr == 1e-3


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

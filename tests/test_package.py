"""Packaging and the layering rule: indexing imports neither torch nor genret; the CLI answers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_indexing_does_not_import_torch() -> None:
    code = (
        "import sys, indexing, indexing.corpus, indexing.docids, indexing.trie, indexing.docid_index, indexing.ngrams, "
        "indexing.trec, indexing.qrels, indexing.artifacts, indexing.tokenizer, indexing.kmeans, indexing.embeddings\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'genret') if m in sys.modules)\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing indexing pulled in: {out.stdout.strip()}"


def test_indexing_source_never_imports_genret() -> None:
    for path in (ROOT / "indexing").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "genret" or n.startswith("genret.") for n in names), f"{path} imports genret"


def test_cli_help_for_every_subcommand() -> None:
    for args in ([], ["index"], ["evaluate"], ["inspect"]):
        out = subprocess.run(
            [sys.executable, "-m", "genret", *args, "--help"], capture_output=True, text=True, check=True
        )
        assert "usage: genret" in out.stdout


def test_top_level_names_resolve() -> None:
    import genret
    import indexing

    for package in (indexing, genret):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"

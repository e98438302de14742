"""No import cycles among the project's modules (genret, indexing, benchmarks), whether an import is at the top of
a file, inside a function or under ``TYPE_CHECKING``: a cycle is a design knot even where Python tolerates it.

The graph is read from the source (``ast``), so the test needs nothing imported; the finder is checked on a small
tree with a known cycle first, so that a finder that finds nothing cannot pass for a clean house.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("genret", "indexing", "benchmarks")
SCRIPT_FOLDERS = ("benchmarks",)  # folders of scripts that import their siblings by bare name


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """``{dotted module name: file}``; a package's ``__init__.py`` is the package's own name."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path], scripts: str | None) -> str | None:
    """The project module ``name`` refers to (``a.b.c`` may be the attribute ``c`` of module ``a.b``); scripts in
    the ``scripts`` folder import their siblings by bare name (``from trie_build import ...``)."""
    if scripts and f"{scripts}.{name.split('.')[0]}" in modules:
        name = f"{scripts}.{name}"
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(
    root: Path,
    packages: tuple[str, ...],
    script_folders: tuple[str, ...] = SCRIPT_FOLDERS,
) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over every import statement in every file."""
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        scripts = module.split(".")[0] if module.split(".")[0] in script_folders else None
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            targets.update(t for t in (_owner(n, modules, scripts) for n in names) if t)
        targets.discard(module)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_finder_finds_a_known_cycle(tmp_path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.sub.b import thing\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    from ..c import other\n")
    (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    (tmp_path / "pkg" / "leaf.py").write_text("import os\nfrom pkg import c\n")
    (tmp_path / "scripts" / "one.py").write_text("from two import x\n")
    (tmp_path / "scripts" / "two.py").write_text("def g():\n    from one import y\n")
    graph = import_graph(tmp_path, ("pkg", "scripts"), script_folders=("scripts",))
    assert graph["pkg.leaf"] == {"pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"], ["scripts.one", "scripts.two"]]


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 75, "the finder read too few modules"
    assert cycles(graph) == []


def test_trec_runs_and_qrels_are_a_leaf() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert graph["indexing.trec"] == set()
    defined = [
        name
        for name, path in module_files(ROOT, ("genret", "indexing")).items()
        if any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "Qrels" for t in n.targets)
            for n in ast.parse(path.read_text()).body
        )
    ]
    assert defined == ["indexing.trec"]

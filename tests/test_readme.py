"""The README's examples run as written: its Python blocks and its command-line block."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_blocks_run(tmp_path: Path) -> None:
    blocks = [b for b in _blocks("python") if "genret.train(" not in b]  # that one: the test below
    assert blocks, "README has no python example"
    for block in blocks:
        out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]


def test_readme_train_and_search_memorizes(tmp_path: Path) -> None:
    """The Python section's first block trains a model in about 15 lines; what it prints is what it claims."""
    block = next(b for b in _blocks("python") if "genret.train(" in b)
    assert len([line for line in block.splitlines() if line.strip() and not line.startswith("import")]) <= 20
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert metrics["R@1"] >= 0.8 and metrics["R@10"] >= 0.95, metrics


def test_readme_command_line_examples_run(tmp_path: Path) -> None:
    section = README.read_text().split("## Indexing from the command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.startswith("genret ")]
    assert len(commands) >= 5
    for command in commands:
        argv = [sys.executable, "-m", "genret", *shlex.split(command)[1:]]
        out = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, f"{command}\n{out.stderr[-3000:]}"
    assert (tmp_path / "runs" / "bm25.trec").is_file()

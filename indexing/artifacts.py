"""Artifact folders: ``manifest.json`` plus plain files, written atomically, verified on load.

Every index genret writes (docids, tries, n-gram stores, trained retrievers) is a folder. The
manifest records the format version, the kind of artifact, the genret version, the config that
built it, counts, and the sha256 and size of every file, so a damaged, truncated or foreign
folder is refused with a message that says what is wrong instead of loading garbage.
No pickle anywhere: arrays are ``.npy`` (``allow_pickle=False``), metadata is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """An artifact folder is missing, damaged, of another kind or of an unknown format."""


def genret_version() -> str:
    """The installed genret version (read from package metadata, so indexing never imports genret)."""
    try:
        return metadata.version("genret")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_artifact(
    out_dir: str | os.PathLike,
    kind: str,
    write_files: Callable[[Path], None],
    config: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an artifact folder atomically.

    ``write_files(tmp)`` writes the plain files into a temporary folder next to ``out_dir``;
    the manifest is added and the folder is renamed into place, so an interrupted build leaves
    nothing that loads. An existing folder is replaced only with ``overwrite=True``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write_files(tmp)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            files[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "genret_version": genret_version(),
            "config": config or {},
            "counts": counts or {},
            "files": files,
        }
        manifest["digest"] = _digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_manifest(path: str | os.PathLike, kind: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read and check an artifact's manifest; with ``verify`` also every file's size and sha256."""
    folder = Path(path)
    rebuild = "rebuild it with the command that wrote it (genret index, train or run)"
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not an artifact folder (it does not exist or is not a directory)")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST}; this is not a genret artifact or its build was interrupted")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{manifest_path}: damaged manifest ({err}); {rebuild}") from None
    if not isinstance(manifest, dict) or "format_version" not in manifest or "files" not in manifest:
        raise ArtifactError(f"{manifest_path}: not a genret manifest (no format_version/files)")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format version {manifest['format_version']}, this genret reads "
            f"{FORMAT_VERSION}; {rebuild} with this version"
        )
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{folder}: holds a {manifest.get('kind')!r} artifact, expected {kind!r}")
    if manifest.get("digest") != _digest(manifest):
        raise ArtifactError(f"{manifest_path}: the manifest was modified or damaged (its digest does not match "
                            f"its content); {rebuild}")
    if verify:
        verify_files(folder, manifest)
    return manifest


def _digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's content without its own digest, so edits to the manifest are caught too."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Check every listed file exists with the recorded size and sha256, and nothing unlisted is there."""
    problems = []
    for rel, info in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != info["size"]:
            problems.append(f"{rel}: size {path.stat().st_size} bytes, manifest says {info['size']}")
        elif sha256_file(path) != info["sha256"]:
            problems.append(f"{rel}: sha256 mismatch (the file was modified or damaged)")
    listed = set(manifest["files"]) | {MANIFEST}
    for path in folder.rglob("*"):
        if path.is_file() and path.relative_to(folder).as_posix() not in listed:
            problems.append(f"{path.relative_to(folder).as_posix()}: not listed in the manifest")
    if problems:
        raise ArtifactError(f"{folder}: damaged artifact:\n  " + "\n  ".join(problems))


def save_npy(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(folder: Path, name: str, mmap: bool = False) -> np.ndarray:
    return np.load(folder / name, mmap_mode="r" if mmap else None, allow_pickle=False)


def save_json(folder: Path, name: str, obj: Any) -> None:
    (folder / name).write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))

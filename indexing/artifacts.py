"""Artifact folders: ``manifest.json`` plus plain files, written atomically, verified on load.

Every index genret writes (docids, tries, n-gram stores, trained retrievers) is a folder. The
manifest records the format version, the kind of artifact, the genret version, the config that
built it, counts, and the sha256 and size of every file, so a damaged, truncated or foreign
folder is refused with a message that says what is wrong instead of loading garbage.
No pickle anywhere: arrays are ``.npy`` (``allow_pickle=False``), metadata is JSON.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
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


def check_output(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """The folder ``write_artifact`` may write, checked before any work: absent, or (with ``overwrite``) an
    existing genret artifact; never a file, a folder of other things, or a path under a file."""
    out = Path(os.path.abspath(out_dir))
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise FileExistsError(f"cannot write {out_dir}: {parent} is a file, not a folder")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{out_dir} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        if out.is_symlink() or not out.is_dir() or not _is_artifact(out):
            raise FileExistsError(
                f"refusing to overwrite {out_dir}: it is not a genret artifact folder (no genret "
                f"{MANIFEST}), and overwriting would delete it; choose another output folder"
            )
    return out


def _is_artifact(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"format_version", "kind", "files"} <= set(manifest)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_leftovers(out_dir: str | os.PathLike) -> list[Path]:
    """Remove the ``.NAME.tmp-PID-*`` and ``.NAME.old-PID`` folders that writes of ``out_dir`` killed mid-way
    left behind, only where process PID no longer runs (a live write keeps its own); returns what it removed."""
    out = Path(os.path.abspath(out_dir))
    removed = []
    if not out.parent.is_dir():
        return removed
    for path in out.parent.glob(f".{glob.escape(out.name)}.*"):
        rest = path.name[len(out.name) + 2 :]
        kind, _, tail = rest.partition("-")
        pid = tail.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and path.is_dir() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        warnings.warn(
            f"removed {len(removed)} folder(s) left by an interrupted write of {out_dir}: "
            f"{', '.join(p.name for p in removed)}",
            stacklevel=2,
        )
    return removed


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
    nothing that loads (and the next write removes what it left). An existing folder is replaced
    only with ``overwrite=True`` and only if it is a genret artifact (:func:`check_output`). The
    folder gets the permissions the user's umask gives a new folder.
    """
    out = check_output(out_dir, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700: a shared index must be readable by the group
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
            check_output(out, overwrite)  # still an artifact (nothing replaced it while we wrote)
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Path(out_dir)


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
    _check_entries(folder, manifest)
    if manifest.get("digest") != _digest(manifest):
        raise ArtifactError(
            f"{manifest_path}: the manifest was modified or damaged (its digest does not match its content); {rebuild}"
        )
    if verify:
        verify_files(folder, manifest)
    return manifest


def _check_entries(folder: Path, manifest: dict[str, Any]) -> None:
    """Every listed file is a plain relative path inside ``folder`` with an int size and a hex sha256: checked
    before anything is opened, so a crafted manifest cannot make a loader read (or size) a file elsewhere."""
    files = manifest["files"]
    where = folder / MANIFEST
    if not isinstance(files, dict):
        raise ArtifactError(f"{where}: files: expected a mapping of names to size and sha256")
    root = folder.resolve()
    for name, info in files.items():
        parts = name.split("/")
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or ":" in name
            or any(p in ("", ".", "..") for p in parts)
            or name == MANIFEST
        ):
            raise ArtifactError(f"{where}: files: {name!r} is not a plain relative path inside the folder")
        if not (folder / name).resolve().is_relative_to(root):
            raise ArtifactError(f"{where}: files: {name!r} leads outside the folder (a symbolic link)")
        if (
            not isinstance(info, dict)
            or type(info.get("size")) is not int
            or info["size"] < 0
            or not isinstance(info.get("sha256"), str)
            or len(info["sha256"]) != 64
        ):
            raise ArtifactError(f"{where}: files: {name!r}: expected {{size: int >= 0, sha256: 64 hex digits}}")
    for key in ("config", "counts"):
        if not isinstance(manifest.get(key, {}), dict):
            raise ArtifactError(f"{where}: {key}: expected a mapping")


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
        if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
            problems.append(f"{path.relative_to(folder).as_posix()}: a symbolic link leading outside the folder")
        elif path.is_file() and path.relative_to(folder).as_posix() not in listed:
            problems.append(f"{path.relative_to(folder).as_posix()}: not listed in the manifest")
    if problems:
        raise ArtifactError(f"{folder}: damaged artifact:\n  " + "\n  ".join(problems))


@contextlib.contextmanager
def reading(folder: str | os.PathLike) -> Iterator[None]:
    """Turn what a verified folder's files or config cannot give a loader (a key missing from the config, a value
    of the wrong type or shape) into an ArtifactError naming the folder, instead of a KeyError deep in a loader."""
    try:
        yield
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise ArtifactError(
            f"{folder}: the manifest's config or files cannot be read as this kind of artifact "
            f"({type(err).__name__}: {err}); rebuild it with the command that wrote it"
        ) from None


def check_counts(folder: str | os.PathLike, manifest: dict[str, Any], actual: dict[str, int]) -> None:
    """ArtifactError unless the manifest's ``counts`` are what the loaded files hold: a manifest edited to say
    ``documents: 999`` (digest recomputed) is refused, not believed."""
    recorded = manifest.get("counts", {})
    wrong = {k: (recorded.get(k), v) for k, v in actual.items() if recorded.get(k) != v}
    if wrong:
        shown = ", ".join(f"{k}: manifest {r!r}, files {v!r}" for k, (r, v) in wrong.items())
        raise ArtifactError(f"{folder}: the manifest's counts do not match its files ({shown})")


def save_npy(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(folder: Path, name: str, mmap: bool = False) -> np.ndarray:
    return np.load(folder / name, mmap_mode="r" if mmap else None, allow_pickle=False)


def save_json(folder: Path, name: str, obj: Any) -> None:
    (folder / name).write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text(encoding="utf-8"))

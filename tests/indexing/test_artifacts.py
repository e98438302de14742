"""Artifact folders: atomic writes, manifest checks, and refusal of damaged or foreign folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from indexing.artifacts import (
    ArtifactError,
    load_json,
    load_npy,
    read_manifest,
    save_json,
    save_npy,
    sha256_file,
    write_artifact,
)


def _write(tmp: Path) -> None:
    save_npy(tmp, "a.npy", np.arange(10, dtype=np.int32))
    (tmp / "sub").mkdir()
    save_json(tmp / "sub", "meta.json", {"x": [1, 2, 3]})


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    out = write_artifact(tmp_path / "art", "test-kind", _write, config={"p": 1}, counts={"n": 10})
    manifest = read_manifest(out, kind="test-kind")
    assert manifest["kind"] == "test-kind"
    assert manifest["config"] == {"p": 1} and manifest["counts"] == {"n": 10}
    assert set(manifest["files"]) == {"a.npy", "sub/meta.json"}
    for rel, info in manifest["files"].items():
        assert info["size"] == (out / rel).stat().st_size
        assert info["sha256"] == sha256_file(out / rel)
    assert load_npy(out, "a.npy").tolist() == list(range(10))
    assert load_npy(out, "a.npy", mmap=True)[3] == 3
    assert load_json(out / "sub", "meta.json") == {"x": [1, 2, 3]}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


@pytest.mark.parametrize("rel", ["a.npy", "sub/meta.json"])
@pytest.mark.parametrize("where", [0, 7, -1])
def test_flipped_byte_in_any_file_is_refused(tmp_path: Path, rel: str, where: int) -> None:
    out = write_artifact(tmp_path / "art", "k", _write)
    _flip_byte(out / rel, where)
    with pytest.raises(ArtifactError, match=f"{rel}: sha256 mismatch"):
        read_manifest(out)


def test_damaged_manifest_missing_extra_and_truncated_files(tmp_path: Path) -> None:
    out = write_artifact(tmp_path / "art", "k", _write)
    (out / "extra.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="extra.bin: not listed"):
        read_manifest(out)
    (out / "extra.bin").unlink()
    (out / "a.npy").write_bytes((out / "a.npy").read_bytes()[:-4])
    with pytest.raises(ArtifactError, match="a.npy: size"):
        read_manifest(out)
    (out / "a.npy").unlink()
    with pytest.raises(ArtifactError, match="a.npy: missing"):
        read_manifest(out)
    _flip_byte(out / "manifest.json", 0)
    with pytest.raises(ArtifactError, match="damaged manifest"):
        read_manifest(out)


def test_foreign_wrong_kind_and_future_format(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_manifest(tmp_path / "plain")
    out = write_artifact(tmp_path / "art", "bm25", _write)
    with pytest.raises(ArtifactError, match="holds a 'bm25' artifact, expected 'docid-index'"):
        read_manifest(out, kind="docid-index")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 999
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 999"):
        read_manifest(out)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    def failing(tmp: Path) -> None:
        _write(tmp)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_artifact(tmp_path / "art", "k", failing)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_is_explicit_and_atomic(tmp_path: Path) -> None:
    out = write_artifact(tmp_path / "art", "k", _write, config={"v": 1})
    with pytest.raises(FileExistsError, match="overwrite"):
        write_artifact(out, "k", _write, config={"v": 2})
    write_artifact(out, "k", _write, config={"v": 2}, overwrite=True)
    assert read_manifest(out)["config"] == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_edited_manifest_is_refused(tmp_path: Path) -> None:
    out = write_artifact(tmp_path / "art", "k", _write, config={"num_beams": 10})
    text = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(text.replace('"num_beams": 10', '"num_beams": 11'))
    with pytest.raises(ArtifactError, match="manifest was modified"):
        read_manifest(out)


def _digest_of(manifest: dict) -> str:
    from indexing.artifacts import _digest

    return _digest(manifest)


@pytest.mark.parametrize(
    "name",
    ["../../../../etc/passwd", "/etc/passwd", "sub/../../x", "./a.npy", "a\\b", "", "sub//meta.json", "manifest.json"],
)
def test_manifest_entries_must_stay_inside_the_folder(tmp_path: Path, name: str) -> None:
    out = write_artifact(tmp_path / "art", "k", _write)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][name] = {
        "sha256": sha256_file(Path("/etc/hostname")) if Path("/etc/hostname").exists() else "0" * 64,
        "size": 5,
    }
    manifest["digest"] = _digest_of(manifest)  # recomputed with the project's own function
    (out / "manifest.json").write_text(json.dumps(manifest))
    for verify in (True, False):
        with pytest.raises(ArtifactError, match="not a plain relative path inside the folder"):
            read_manifest(out, verify=verify)


def test_a_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")

    def write(tmp: Path) -> None:
        _write(tmp)
        (tmp / "link.txt").symlink_to(secret)

    out = write_artifact(tmp_path / "art", "k", write)
    with pytest.raises(ArtifactError, match="leads outside the folder"):
        read_manifest(out)


@pytest.mark.parametrize(
    "entry", [{"size": "5", "sha256": "0" * 64}, {"size": -1, "sha256": "0" * 64}, {"size": 3}, "oops"]
)
def test_malformed_file_entries_are_refused(tmp_path: Path, entry: object) -> None:
    out = write_artifact(tmp_path / "art", "k", _write)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["a.npy"] = entry
    manifest["digest"] = _digest_of(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'a.npy': expected"):
        read_manifest(out)


def test_overwrite_replaces_only_a_genret_artifact(tmp_path: Path) -> None:
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "corpus.jsonl").write_text("{}\n")
    with pytest.raises(FileExistsError, match="not a genret artifact folder"):
        write_artifact(mine, "k", _write, overwrite=True)
    assert (mine / "corpus.jsonl").read_text() == "{}\n"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a genret artifact folder"):
        write_artifact(a_file, "k", _write, overwrite=True)
    with pytest.raises(FileExistsError, match="notes.txt is a file, not a folder"):
        write_artifact(a_file / "sub", "k", _write)
    assert a_file.read_text() == "keep me"


def test_a_write_removes_what_a_killed_write_left_and_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    leftovers = [tmp_path / f".art.tmp-{pid}-x1y2", tmp_path / f".art.old-{pid}"]
    live = tmp_path / f".art.tmp-{os.getpid()}-live"  # a write in progress (this process): kept
    other = tmp_path / f".art2.tmp-{pid}-zz"  # another artifact's: kept
    for folder in (*leftovers, live, other):
        folder.mkdir()
        (folder / "part.npy").write_bytes(b"x")
    with pytest.warns(UserWarning, match="removed 2 folder"):
        write_artifact(tmp_path / "art", "k", _write)
    assert not any(p.exists() for p in leftovers) and live.exists() and other.exists()


def test_artifact_folders_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = write_artifact(tmp_path / "art", "k", _write)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("kind", ["docids", "ngrams"])
def test_manifest_counts_must_match_the_files(tmp_path: Path, kind: str) -> None:
    from indexing.artifacts import _digest
    from indexing.corpus import load_corpus
    from indexing.docid_index import DocidIndex, build_index
    from indexing.docids import make_scheme
    from indexing.ngrams import NgramIndex
    from indexing.tokenizer import load_tokenizer

    corpus = load_corpus("minicorpus", progress=False).select(range(20))
    tok = load_tokenizer("minilm")
    if kind == "docids":
        index, loader = build_index(corpus, make_scheme("atomic"), tok), DocidIndex.load
    else:
        index, loader = NgramIndex.build(corpus, tok), NgramIndex.load
    out = index.save(tmp_path / "idx")
    assert loader(out).counts() == index.counts()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["counts"]["documents"] = 999
    manifest["digest"] = _digest(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="counts do not match its files .*documents: manifest 999, files 20"):
        loader(out)


def test_a_config_the_loader_cannot_read_is_an_artifact_error(tmp_path: Path) -> None:
    from indexing.artifacts import _digest
    from indexing.corpus import load_corpus
    from indexing.docid_index import DocidIndex, build_index
    from indexing.docids import make_scheme
    from indexing.tokenizer import load_tokenizer

    corpus = load_corpus("minicorpus", progress=False).select(range(10))
    out = build_index(corpus, make_scheme("atomic"), load_tokenizer("minilm")).save(tmp_path / "idx")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["config"]["docids"]
    manifest["digest"] = _digest(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="cannot be read as this kind of artifact .*KeyError"):
        DocidIndex.load(out)

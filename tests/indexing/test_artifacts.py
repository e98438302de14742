"""Artifact folders: atomic writes, manifest checks, and refusal of damaged or foreign folders."""

from __future__ import annotations

import json
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

"""A docid index: a corpus's identifiers and the trie of valid identifiers, saved as one artifact.

``build_index(corpus, scheme, tokenizer)`` assigns identifiers and builds the ``DocidTrie``;
``DocidIndex.save(dir)`` writes ``docids/`` and ``trie/`` as plain files under one manifest;
``DocidIndex.load(dir)`` verifies the manifest and every checksum first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing.artifacts import check_counts, read_manifest, reading, write_artifact
from indexing.docids.base import Docids, DocidScheme
from indexing.tokenizer import TextTokenizer
from indexing.trie import DocidTrie

KIND = "docid-index"


@dataclass
class DocidIndex:
    """Identifiers of every document plus the trie that constrains decoding to them."""

    docids: Docids
    trie: DocidTrie
    source: str | None = None

    def __len__(self) -> int:
        return len(self.docids)

    @property
    def doc_ids(self) -> list[str]:
        """The corpus ids of the indexed documents, in index order (as on ``NgramIndex``)."""
        return self.docids.doc_ids

    def counts(self) -> dict[str, int]:
        return {
            "documents": len(self.docids),
            "new_tokens": len(self.docids.new_tokens),
            "vocab_size": self.docids.vocab_size,
            "max_id_length": self.docids.max_length(),
            "trie_nodes": self.trie.n_nodes,
        }

    def manifest_config(self) -> dict[str, Any]:
        """What a manifest records about this index (scheme, tokenizer, vocabulary, source)."""
        return {"docids": self.docids.info(), "source": self.source}

    def write_files(self, folder: Path) -> None:
        """Write ``docids/`` and ``trie/`` into ``folder`` (inside an artifact being written)."""
        (folder / "docids").mkdir(parents=True)
        (folder / "trie").mkdir()
        self.docids.save(folder / "docids")
        self.trie.save(folder / "trie")

    @classmethod
    def from_files(cls, folder: Path, config: dict[str, Any], mmap: bool = False) -> DocidIndex:
        """Read what ``write_files`` wrote; ``config`` is ``manifest_config()`` as recorded in the manifest."""
        docids = Docids.load(folder / "docids", config["docids"])
        trie = DocidTrie.load(folder / "trie", mmap=mmap)
        return cls(docids=docids, trie=trie, source=config.get("source"))

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the index folder atomically (see ``indexing.artifacts``)."""
        return write_artifact(
            path, KIND, self.write_files, config=self.manifest_config(), counts=self.counts(), overwrite=overwrite
        )

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> DocidIndex:
        """Load an index folder, refusing it if the manifest or any checksum does not match."""
        folder = Path(path)
        manifest = read_manifest(folder, kind=KIND, verify=verify)
        with reading(folder):
            index = cls.from_files(folder, manifest["config"], mmap=mmap)
        check_counts(folder, manifest, index.counts())
        return index


def build_index(
    corpus: Any,
    scheme: DocidScheme,
    tokenizer: TextTokenizer | None = None,
    source: str | None = None,
) -> DocidIndex:
    """Assign identifiers to ``corpus`` with ``scheme`` and build their trie."""
    docids = scheme.assign(corpus, tokenizer)
    trie = DocidTrie.from_docids(docids)
    return DocidIndex(docids=docids, trie=trie, source=source)

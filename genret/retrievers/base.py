"""The ``Retriever`` protocol: queries in, a run out; saved and loaded as an artifact folder.

Every retriever genret offers has this shape: the baselines (BM25, dense) and the generative
ones (DSI with trie-constrained decoding over docids, SEAL with n-gram constrained decoding
over the corpus). Evaluation (:class:`genret.evaluation.RetrievalEvaluator`), the CLI and the
experiment recipes only ever call these three methods, so any retriever drops in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from indexing.trec import Run

#: ``search_texts(texts, k)``: for each text its top-k ``(document row, score)`` pairs, best first
SearchTexts = Callable[[list[str], int], list[list[tuple[int, float]]]]


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks documents for queries and lives in a folder.

    ``search`` takes ``{qid: query text}`` and returns ``{qid: {doc _id: score}}`` with at most
    ``k`` documents per query, higher scores first when sorted; every qid of the input is a key of
    the output (with an empty dict where nothing matched). ``save_pretrained(path)`` writes an
    artifact folder (``indexing.artifacts``: manifest plus plain files, no pickle) and
    ``from_pretrained(path)`` loads it back, refusing a damaged or foreign folder.
    """

    def search(self, queries: dict[str, str], k: int = 100) -> Run: ...

    def save_pretrained(self, path: str | os.PathLike) -> None: ...

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Retriever: ...


def save_generative(
    retriever: Any, path: str | os.PathLike, overwrite: bool = False, extra: Callable[[Path], None] | None = None
) -> Path:
    """A generative retriever's model (safetensors), tokenizer, index files and search config as one verified folder
    of manifest kind ``retriever.KIND``; :func:`load_generative` reads it back. ``extra(folder)`` writes the
    retriever's own further files (checksummed with the rest)."""
    from genret.config import to_dict
    from genret.models import save_model
    from indexing.artifacts import write_artifact

    def write(tmp: Path) -> None:
        save_model(retriever.model, retriever.tokenizer, tmp / "model")
        retriever.index.write_files(tmp / "index")
        if extra is not None:
            extra(tmp)

    config = {"search": to_dict(retriever.config), "index": retriever.index.manifest_config()}
    return write_artifact(
        path, retriever.KIND, write, config=config, counts=retriever.index.counts(), overwrite=overwrite
    )


def load_generative(
    cls: Any, path: str | os.PathLike, index_cls: Any, search_cls: Any, device: str | None = None
) -> Any:
    """``cls(model, tokenizer, index, search config, device=device)`` from a folder :func:`save_generative` wrote."""
    return cls(*load_saved(Path(path), cls.KIND, index_cls, search_cls), device=device)


def load_saved(folder: Path, kind: str, index_cls: Any, search_cls: Any) -> tuple[Any, Any, Any, Any]:
    """``(model, tokenizer, index, search config)`` of a saved generative retriever folder of ``kind``: manifest and
    checksums verified, a config the loaders cannot read refused as an ArtifactError, counts checked against the
    index. ``index_cls.from_files`` reads ``folder/index``, ``search_cls`` is the search config's dataclass."""
    from genret.config import from_dict
    from genret.models import load_model
    from indexing.artifacts import check_counts, read_manifest, reading

    manifest = read_manifest(folder, kind=kind)
    with reading(folder):
        model, tokenizer = load_model(folder / "model")
        index = index_cls.from_files(folder / "index", manifest["config"]["index"])
        search = from_dict(search_cls, manifest["config"]["search"])
    check_counts(folder, manifest, index.counts())
    return model, tokenizer, index, search


def special_ids(model: Any) -> tuple[int, int, int]:
    """``(eos, pad, decoder start)`` token ids of a seq2seq model: pad falls back to eos, the decoder start to the
    model config's (what a text model's constrained decoding needs)."""
    gen = model.generation_config
    eos = int(gen.eos_token_id if not isinstance(gen.eos_token_id, list) else gen.eos_token_id[0])
    pad = int(gen.pad_token_id if gen.pad_token_id is not None else eos)
    start = gen.decoder_start_token_id
    return eos, pad, int(start if start is not None else model.config.decoder_start_token_id)


def check_k(k: int) -> None:
    """Every ``search`` refuses a ``k`` that is not a positive integer (0 would return nothing, -1 all but one)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def resolve_device(name: str | None) -> Any:
    """``torch.device`` for a retriever: ``None``/``"auto"`` means CUDA when available, else CPU."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def search_in_batches(
    search_texts: SearchTexts,
    doc_ids: Sequence[str],
    queries: dict[str, str],
    k: int,
    batch_size: int,
    progress: bool = True,
) -> Run:
    """A Run from a batched ``search_texts``: queries in batches of ``batch_size``, rows mapped to ``doc_ids``.

    Under ``accelerate launch`` the queries are split across processes and the one Run is gathered
    on every process (the generative retrievers search this way).
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object, parse_flag_from_env

    # cpu= as Accelerator reads it: without it a CPU run under `accelerate launch` (ACCELERATE_USE_CPU=1)
    # is not seen as distributed and every process would search every query
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    qids = list(queries)
    if state.num_processes > 1:
        with state.split_between_processes(qids) as mine:
            local = _search_batches(
                search_texts, doc_ids, list(mine), queries, k, batch_size, progress and state.is_main_process
            )
        run: Run = {}
        for part in gather_object([local]):
            run.update(part)
        return run
    return _search_batches(search_texts, doc_ids, qids, queries, k, batch_size, progress)


def _search_batches(
    search_texts: SearchTexts,
    doc_ids: Sequence[str],
    qids: list[str],
    queries: dict[str, str],
    k: int,
    size: int,
    progress: bool,
) -> Run:
    from tqdm.auto import tqdm

    run: Run = {}
    bar = tqdm(total=len(qids), desc="search", unit="q", disable=not progress or len(qids) <= size)
    for start in range(0, len(qids), size):
        batch = qids[start : start + size]
        for qid, hits in zip(batch, search_texts([queries[q] for q in batch], k), strict=True):
            run[qid] = {doc_ids[d]: s for d, s in hits}
        bar.update(len(batch))
    bar.close()
    return run

"""What a generative retrieval system is to the rest of genret: one small declaration per system.

The recipe loader, the pipeline, ``load_retriever``, the CLI and the scaling sweep ask a system only what
:class:`System` holds, so a new system (1-Pager, GRACE, a user's own) is one module that builds a ``System`` and
registers it (:func:`genret.systems.register`); nothing else keeps a list of systems.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Prepared:
    """What a system brings to the shared loop: its training pairs, untrained model, and a retriever maker."""

    pairs: Any
    """``datasets.Dataset`` with source, target and task columns."""
    model: Any
    hf_tokenizer: Any
    documents: int
    """Documents indexed (results.json reports it)."""
    make_retriever: Callable[..., Any]
    """``(trained model, device=None) -> retriever`` over the system's index."""
    evaluate_extra: Callable[..., dict[str, Any]] | None = None
    """``(trained retriever, eval queries, progress) -> {"metrics": {set: {system: {measure: value}}}, ...}``: what
    the system measures beyond retrieval (1-Pager: answers); merged into results.json. None: nothing more."""


Prepare = Callable[..., Prepared]
"""``(recipe, corpus, train queries, train qrels, progress) -> Prepared``: identifiers or index, pairs, model."""


@dataclass(frozen=True)
class System:
    """One generative system, as every part of genret that is not the system itself sees it."""

    name: str
    """The recipe's ``system:`` value (``dsi``, ``seal``)."""
    sections: tuple[str, ...]
    """Recipe sections that hold this system's own settings, besides the shared data / pairs / model / train /
    eval (DSI: ``docids``, ``search``; SEAL: ``seal``)."""
    prepare: Prepare
    """Builds identifiers or index, training pairs and the untrained model from a recipe and a corpus."""
    retriever: str
    """``"module:Class"`` of its trained retriever, imported on first use (declaring a system imports no torch);
    the class's ``KIND`` is the manifest kind of its saved folders, which ``load_retriever`` dispatches on."""
    check_recipe: Callable[[Any], list[str]] | None = None
    """Problems with a recipe that only this system can see (each a message naming the key); None: none."""

    def retriever_class(self) -> type:
        module, _, name = self.retriever.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def kind(self) -> str:
        """The manifest kind of this system's saved retriever folders."""
        return self.retriever_class().KIND


def refuse_docid_options(recipe: Any, system: str) -> list[str]:
    """A system whose model decodes the tokenizer's own tokens (SEAL, 1-Pager) refuses the docid-token options of
    ``model`` (``System.check_recipe``)."""
    model = recipe.model
    if model.init_docids_from or model.freeze_docid_rows or model.init_decoder:
        return [
            f"model.init_docids_from, freeze_docid_rows and init_decoder are for docid tokens (system dsi); a "
            f"{system} model decodes the tokenizer's own tokens"
        ]
    return []

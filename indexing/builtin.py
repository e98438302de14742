"""Collections that ship inside the package, so the quickstart and the tests need no download.

``minicorpus``: 200 encyclopedia-style documents on 20 topics, 200 test and 200 train queries,
written for genret and released CC0 (see ``indexing/data/minicorpus/SOURCE.txt``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
BUILTIN = {"minicorpus": DATA / "minicorpus"}


def resolve(source: str | os.PathLike[str]) -> str | os.PathLike[str]:
    """The folder of a built-in collection named ``source``; any other source unchanged.

    A file or folder that exists under that name wins, so a local path is never shadowed.
    """
    if isinstance(source, str) and source in BUILTIN and not os.path.exists(source):
        return BUILTIN[source]
    return source


def looks_like_path(name: str | os.PathLike[str]) -> bool:
    """True when ``name`` can only be a local path, not a hub name (``name`` or ``org/name``): a PathLike, an
    absolute path, one starting with ``.`` or ``~``, one with a backslash or with more than one ``/``. A local
    path that does not exist is then an error, instead of a confusing attempt to download it."""
    if not isinstance(name, str):
        return True
    return os.path.isabs(name) or name.startswith((".", "~")) or "\\" in name or name.count("/") > 1

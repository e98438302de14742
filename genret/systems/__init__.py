"""The registry of generative systems: the one list that recipes, the pipeline, the CLI, ``load_retriever`` and the
scaling sweep read. Each system is a module here that declares a :class:`System` (importing one loads no torch:
the work is imported inside ``prepare``); a user's own system registers itself the same way:

>>> from genret.systems import System, register                                   # doctest: +SKIP
>>> register(System(name="mine", sections=(), prepare=prepare_mine, retriever="mypkg.retriever:Mine"))
"""

from __future__ import annotations

from typing import Any

from genret.systems.base import Prepared, System
from genret.systems.dsi import DSI
from genret.systems.onepager import ONEPAGER
from genret.systems.seal import SEAL

__all__ = ["SYSTEMS", "Prepared", "System", "get_system", "register", "system_for_kind", "system_of", "unregister"]

SYSTEMS: dict[str, System] = {}
"""name -> System, in registration order (built-ins first)."""


def register(system: System, replace: bool = False) -> System:
    """Add ``system`` under its name; an existing name is an error unless ``replace``."""
    if system.name in SYSTEMS and not replace:
        raise ValueError(f"a system named {system.name!r} is registered already; pass replace=True to replace it")
    SYSTEMS[system.name] = system
    return system


def unregister(name: str) -> None:
    """Remove a registered system (a test's toy system, a user's replaced one)."""
    SYSTEMS.pop(name, None)


def get_system(name: str) -> System:
    """The registered system called ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; registered systems: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


def system_of(retriever: Any) -> System:
    """The registered system whose retriever class ``retriever`` is (its own class, not a subclass's)."""
    cls = type(retriever)
    for system in SYSTEMS.values():
        if system.retriever == f"{cls.__module__}:{cls.__qualname__}":
            return system
    raise ValueError(f"{cls.__qualname__} is not the retriever of a registered system ({', '.join(SYSTEMS)})")


def system_for_kind(kind: str | None) -> System | None:
    """The registered system whose saved retriever folders have manifest ``kind``, or None."""
    return next((s for s in SYSTEMS.values() if s.kind == kind), None)


register(DSI)
register(SEAL)
register(ONEPAGER)

"""Router kinds: the one map from an artifact's ``kind`` to the class that loads it.

Built-in kinds are listed in :data:`BUILTIN` as ``"module:Class"`` and imported on first use.
Other packages add kinds through the entry-point group ``routekit.routers``; in their
``pyproject.toml``::

    [project.entry-points."routekit.routers"]
    knn = "routekit_knn:KNNRouter"

A router class takes ``(manifest, *, providers, threads, strong, weak, <its own options>)``
(see :class:`routekit.router.Router`); :func:`check_options` refuses any other keyword before the
class is built.  An artifact of a kind no one registered raises :class:`UnknownKindError`.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import Any

from routekit.errors import BadArtifactError, BadInputError, UnknownKindError

ENTRY_POINT_GROUP = "routekit.routers"

#: kind -> "module:Class" of the routers that ship with routekit.
BUILTIN = {
    "mf": "routekit.routers.mf:MFRouter",
    "sw": "routekit.routers.sw:SWRouter",
    "bert": "routekit.routers.bert:BertRouter",
    "causal": "routekit.routers.causal:CausalRouter",
    "linear": "routekit.routers.linear:LinearRouter",
    "random": "routekit.routers.random:RandomRouter",
    "length": "routekit.routers.length:LengthRouter",
    "irt": "routekit.routers.irt:IRTRouter",
}

#: Keywords every router class accepts (``load()`` passes them to all kinds).
COMMON = ("providers", "threads", "strong", "weak")


def _plugins() -> dict[str, metadata.EntryPoint]:
    """Entry points of installed packages in :data:`ENTRY_POINT_GROUP` (built-in kinds win)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def kinds() -> tuple[str, ...]:
    """Every known router kind: the built-in ones, then installed plugins' (sorted)."""
    return tuple(BUILTIN) + tuple(sorted(_plugins()))


def check_kind(kind: Any, where: str = "") -> str:
    """``kind`` if some router class loads it, else :class:`UnknownKindError` naming the known ones."""
    if isinstance(kind, str) and kind in BUILTIN:
        return kind
    known = kinds()
    if kind not in known:
        prefix = f"{where}: " if where else ""
        raise UnknownKindError(f"{prefix}unknown router kind {kind!r} (known: {', '.join(known)}; other kinds "
                               f"come from packages registered in the entry-point group {ENTRY_POINT_GROUP!r})")
    return kind


def router_class(kind: str) -> type:
    """The class that loads artifacts of ``kind`` (imported now)."""
    check_kind(kind)
    if kind in BUILTIN:
        module, _, name = BUILTIN[kind].partition(":")
        return getattr(importlib.import_module(module), name)
    ep = _plugins()[kind]
    try:
        cls = ep.load()
    except Exception as exc:  # a broken third-party package: say which one
        raise BadArtifactError(f"router kind {kind!r}: cannot import {ep.value!r} ({type(exc).__name__}: {exc})") from exc
    if not (inspect.isclass(cls) and callable(getattr(cls, "route", None))):
        raise BadArtifactError(f"router kind {kind!r}: {ep.value!r} is not a Router class")
    return cls


def known_options(cls: type) -> tuple[str, ...] | None:
    """Options a router class takes beyond :data:`COMMON` (``None``: it takes ``**kwargs`` and checks them)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, manifest
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in COMMON)


def check_options(kind: str, cls: type, options: dict[str, Any]) -> None:
    """Raise :class:`BadInputError` for a keyword the router class of ``kind`` does not take."""
    known = known_options(cls)
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        takes = f"it takes {', '.join(known)}" if known else "it takes no options"
        raise BadInputError(f"unknown option(s) for a {kind!r} router: {', '.join(unknown)} ({takes})")

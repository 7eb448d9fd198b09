"""``load()``: a router from a shipped name, ``random[:SEED]``, ``length`` or an artifact folder, through the registry;
``route()`` with the module-level default router (loaded once, on first use)."""

from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from routekit import artifact, registry
from routekit.errors import BadInputError
from routekit.router import Decision, Router


def load(name_or_path: str | os.PathLike = "default", *, providers: Sequence[str] | None = None,
         threads: int | None = None, strong: str | None = None, weak: str | None = None,
         verify: bool = True, **options: Any) -> Router:
    """Load a router by shipped name (``default``, ``linear``, ``mf``, ``sw``, ``sw-static``, ``bert``,
    ``random[:SEED]``, ``length``; see ``routekit artifacts list``) or artifact folder of any kind in
    :func:`routekit.registry.kinds`: {kinds} and those of installed plugins.

    ``strong``/``weak`` pick another pair from the artifact's model table (MF and SW routers).
    ``providers``/``threads`` configure onnxruntime.  Files are hash-checked unless ``verify=False``.
    Other keywords are the kind's own options (e.g. SW's ``mode="fast"``); one the kind does not
    take raises :class:`BadInputError`.
    """
    key = _router_key(name_or_path)
    from routekit.encoders.session import resolve_threads

    threads = resolve_threads(threads)  # once, here: a bad count is refused before anything is read
    kw = dict(providers=providers, threads=threads, strong=strong, weak=weak, **options)
    if key == "random" or key.startswith("random:"):
        cls = registry.router_class("random")
        registry.check_options("random", cls, options)
        if ":" in key:
            if "seed" in options:
                raise BadInputError(f"give the seed once: {key!r} or seed=, not both")
            kw["seed"] = key.split(":", 1)[1]
        return cls(None, **kw)
    if key == "length":  # the length-only baseline: built in, no artifact
        cls = registry.router_class("length")
        registry.check_options("length", cls, options)
        return cls(None, **kw)
    folder = artifact.resolve(name_or_path)
    manifest = artifact.read_manifest(folder, verify=verify)
    cls = registry.router_class(manifest.kind)  # imported (and its kind checked) by read_manifest already
    registry.check_options(manifest.kind, cls, options)
    router = cls(manifest, **kw)
    if key == "default" and "name" not in manifest.data:  # the one shipped name that is not its folder's
        router.name = folder.name  # the manifest is not changed after its hash was checked
    return router


def _router_key(name_or_path: Any) -> str:
    if isinstance(name_or_path, bool) or not isinstance(name_or_path, (str, os.PathLike)):
        raise BadInputError(f"a router is a shipped name or an artifact folder path, got "
                            f"{type(name_or_path).__name__}")
    key = os.fspath(name_or_path)
    if not isinstance(key, str):
        raise BadInputError("a router path must be str, not bytes")
    if not key.strip() or "\0" in key:
        raise BadInputError(f"invalid router name {key!r}")
    return key


if load.__doc__:  # one list of kinds: the registry's (python -OO drops docstrings)
    load.__doc__ = load.__doc__.format(kinds=", ".join(f"``{k}``" for k in registry.BUILTIN))


_DEFAULT: Router | None = None
_DEFAULT_LOCK = threading.Lock()


def route(prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None) -> Decision:
    """Route one prompt with the default shipped router (loaded once, on first use, by one thread)."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = load("default")
    return _DEFAULT.route(prompt, threshold=threshold, strong_fraction=strong_fraction)

"""``load()``: a router from a shipped name, ``random[:SEED]``, ``length`` or an artifact folder, through the registry;
``route()`` with the module-level default router (loaded once, on first use)."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Mapping, Sequence

from routekit import artifact, registry
from routekit.errors import BadInputError, UnknownRouterError
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


class RouterCache:
    """Routers loaded once per configured name and shared (routers are thread-safe).

    ``routers`` maps the names clients may use to what :func:`routekit.load` accepts (a shipped
    name, ``random[:seed]`` or an artifact folder).  Names not in the map are refused, so a request
    can never make the process load an arbitrary path.
    """

    def __init__(self, routers: Mapping[str, str] | Sequence[str], *, threads: int | None = None,
                 loader: Callable[..., Any] | None = None):
        if isinstance(routers, Mapping):
            self.specs = {str(k): str(v) for k, v in routers.items()}
        else:
            self.specs = {str(r): str(r) for r in routers}
        if not self.specs:
            raise BadInputError("at least one router must be configured")
        self.threads = threads
        self._loader = loader
        self._routers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def default(self) -> str:
        return next(iter(self.specs))

    def loaded(self) -> list[str]:
        return list(self._routers)

    def get(self, name: str | None = None):
        name = self.default if name is None else name
        router = self._routers.get(name)
        if router is not None:
            return router
        if name not in self.specs:
            raise UnknownRouterError(
                f"router {name!r} is not configured here (configured: {', '.join(self.specs)})")
        with self._lock:  # one load per name even when many requests arrive at once
            router = self._routers.get(name)
            if router is None:
                if self._loader is not None:
                    loader = self._loader
                else:
                    loader = load
                router = loader(self.specs[name], threads=self.threads)
                self._routers[name] = router
        return router

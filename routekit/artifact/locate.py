"""Where artifacts are: the shipped ones (package data or ``artifacts/`` in a checkout), the user
cache folder, and the name-or-path resolution ``load()`` and ``routekit artifacts`` use."""

from __future__ import annotations

import os
from pathlib import Path

from routekit.artifact import schema as _schema
from routekit.artifact.manifest import MANIFEST
from routekit.errors import BadArtifactError, UnknownArtifactError


def cache_dir() -> Path:
    """routekit's user cache folder: ``$ROUTEKIT_CACHE``, else ``$XDG_CACHE_HOME/routekit`` (~/.cache/routekit).
    Never inside the installed package."""
    base = os.environ.get("ROUTEKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "routekit")
    return Path(base)


def artifacts_root() -> Path:
    """Folder holding the shipped artifacts: package data when installed, ``artifacts/`` in a checkout."""
    env = os.environ.get("ROUTEKIT_ARTIFACTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent  # the routekit package
    installed = here / "_artifacts"
    if installed.is_dir():
        return installed
    return here.parent / "artifacts"


def shipped() -> dict[str, Path]:
    """Short name -> folder of every shipped artifact (plus ``default``)."""
    root = artifacts_root()
    out: dict[str, Path] = {}
    if root.is_dir():
        for sub in sorted(root.iterdir()):
            if sub.is_dir() and (sub / MANIFEST).is_file():
                out[sub.name] = sub
        default = default_name()
        if default in out:
            out["default"] = out[default]
    return out


def repository_only() -> tuple[str, ...]:
    """Artifact names kept in the repository but not installed with the package (``index.json``)."""
    data = _index()
    names = data.get("repository_only") if isinstance(data, dict) else None
    return tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()


def _index() -> dict | None:
    """The shipped artifacts folder's ``index.json`` (None: absent or unreadable)."""
    index = artifacts_root() / "index.json"
    if not index.is_file():
        return None
    try:
        data = _schema.parse(index.read_bytes(), str(index), max_bytes=1 << 20)
    except (BadArtifactError, OSError):
        return None
    return data if isinstance(data, dict) else None


def default_name() -> str | None:
    """The shipped artifact ``default`` names (``index.json``), or None."""
    default = (_index() or {}).get("default")
    return default if isinstance(default, str) else None


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Turn a shipped short name or a folder path into an artifact folder.

    A relative path is looked up from the current folder first, then in the shipped artifacts
    folder, so ``artifacts/mf`` (as the README writes it) works from any folder."""
    known = shipped()
    key = str(name_or_path)
    if key in known:
        return known[key]
    path = Path(name_or_path).expanduser()
    for candidate in _candidates(path):
        if candidate.is_dir():
            return candidate
    if key == "random" or key.startswith("random:"):
        raise UnknownArtifactError(f"{key!r} is the built-in random router: it has no artifact folder")
    if key == "length":
        raise UnknownArtifactError(f"{key!r} is the built-in length-only baseline: it has no artifact folder")
    names = ", ".join(sorted(known)) or "(none shipped)"
    if key in repository_only():
        raise UnknownArtifactError(
            f"router {key!r} is not installed: it is kept in the routekit repository's artifacts/ folder only, "
            f"because it does not beat the length-only baseline (docs/quality.md); load that folder by path, or "
            f"set ROUTEKIT_ARTIFACTS to the repository's artifacts/ (installed here: {names})")
    raise UnknownArtifactError(
        f"Unknown router {key!r}: not a shipped artifact ({names}; or random[:SEED], length) and not a folder."
    )


def _candidates(path: Path) -> list[Path]:
    if path.is_absolute():
        return [path]
    root = artifacts_root()
    out = [path, root / path]
    if len(path.parts) > 1 and path.parts[0] in ("artifacts", root.name):
        out.append(root.joinpath(*path.parts[1:]))
    return out

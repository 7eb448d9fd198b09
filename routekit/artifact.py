"""The artifact format: a folder with ``manifest.json`` plus the files it lists, each with a sha256.

Loading never unpickles anything: arrays are read with ``numpy.load(allow_pickle=False)``, models
are ONNX files, tokenizers are ``tokenizer.json``.  Every file the manifest lists is hashed on load
and a mismatch is refused with :class:`~routekit.errors.BadArtifactError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import registry
from ._io import check_output_dir, sigterm_raises
from .errors import BadArtifactError, UnknownArtifactError

FORMAT = "routekit-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = tuple(registry.BUILTIN)  #: built-in router kinds; installed plugins add theirs: registry.kinds()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    here = Path(__file__).resolve().parent
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
        index = root / "index.json"
        if index.is_file():
            default = json.loads(index.read_text()).get("default")
            if default in out:
                out["default"] = out[default]
    return out


def default_name() -> str | None:
    index = artifacts_root() / "index.json"
    if index.is_file():
        return json.loads(index.read_text()).get("default")
    return None


def resolve(name_or_path: str | os.PathLike) -> Path:
    """Turn a shipped short name or a folder path into an artifact folder."""
    known = shipped()
    key = str(name_or_path)
    if key in known:
        return known[key]
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    names = ", ".join(sorted(known)) or "(none shipped)"
    raise UnknownArtifactError(
        f"Unknown router {key!r}: not a shipped artifact ({names}, random) and not a folder."
    )


def _safe_member(folder: Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``folder``; refuse absolute paths, ``..`` escapes and symlinks."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or Path(rel).is_absolute():
        raise BadArtifactError(f"{folder}: manifest names an invalid file path {rel!r}")
    parts = Path(rel).parts
    if ".." in parts:
        raise BadArtifactError(f"{folder}: manifest path {rel!r} points outside the artifact folder")
    path = folder / rel
    probe = folder
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            raise BadArtifactError(f"{folder}: {rel!r} is a symlink; artifacts must hold real files")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise BadArtifactError(f"{folder}: manifest path {rel!r} points outside the artifact folder")
    return path


@dataclass
class Manifest:
    """The parsed ``manifest.json`` of an artifact folder."""

    data: dict[str, Any]
    folder: Path = field(default_factory=Path)
    verified: bool = False  #: every file's sha256 was checked on load

    def file_key(self, rel: str) -> str:
        """Cache key for a listed file: its sha256 when verified, else its path, size and mtime."""
        if self.verified:
            return self.files[rel]["sha256"]
        path = self.path(rel).resolve()
        st = path.stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def name(self) -> str:
        return self.data.get("name", self.folder.name)

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.data.get("files", {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.data[key]
        except KeyError:
            raise BadArtifactError(f"{self.folder}: manifest has no {key!r} section") from None

    def path(self, rel: str) -> Path:
        """Absolute path of a file the manifest lists (refuses anything it does not list)."""
        if rel not in self.files:
            raise BadArtifactError(f"{self.folder}: {rel!r} is used but not listed in the manifest's files")
        return _safe_member(self.folder, rel)

    def array(self, rel: str) -> np.ndarray | dict[str, np.ndarray]:
        """Load a ``.npy``/``.npz`` file listed in the manifest, without pickle."""
        path = self.path(rel)
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadArtifactError(f"{path}: not a valid numpy array file ({exc})") from exc
        if isinstance(loaded, np.lib.npyio.NpzFile):
            try:
                with loaded:
                    return {k: loaded[k] for k in loaded.files}
            except (ValueError, OSError, EOFError) as exc:
                raise BadArtifactError(f"{path}: not a valid numpy archive ({exc})") from exc
        return loaded

    @property
    def content_hash(self) -> str:
        """A short id of the artifact's content (hash over the file hashes)."""
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(f"{rel}:{self.files[rel]['sha256']}\n".encode())
        h.update(json.dumps(self.data.get("router", {}), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False) + "\n"


def read_manifest(folder: str | os.PathLike, *, verify: bool = True) -> Manifest:
    """Read and validate ``folder/manifest.json``; with ``verify`` check every file's sha256."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise BadArtifactError(f"{folder}: no {MANIFEST} (not a routekit artifact folder)")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadArtifactError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadArtifactError(f"{mpath}: not a routekit manifest (format != {FORMAT!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BadArtifactError(
            f"{mpath}: format_version {version!r} is not supported by this routekit "
            f"(supports {FORMAT_VERSION}); upgrade routekit or re-export the artifact"
        )
    registry.check_kind(data.get("kind"), where=str(mpath))
    files = data.get("files")
    if not isinstance(files, dict):
        raise BadArtifactError(f"{mpath}: 'files' must be an object of path -> {{sha256, bytes}}")
    manifest = Manifest(data, folder)
    for rel, meta in files.items():
        path = _safe_member(folder, rel)
        if not path.is_file():
            raise BadArtifactError(f"{folder}: file {rel!r} listed in the manifest is missing")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise BadArtifactError(f"{mpath}: entry for {rel!r} has no sha256")
        if verify:
            size = path.stat().st_size
            if "bytes" in meta and size != meta["bytes"]:
                raise BadArtifactError(
                    f"{folder}: {rel!r} has {size} bytes, manifest says {meta['bytes']} (truncated or replaced)"
                )
            digest = sha256_file(path)
            if digest != meta["sha256"]:
                raise BadArtifactError(
                    f"{folder}: {rel!r} does not match its sha256 in the manifest "
                    f"(expected {meta['sha256'][:12]}…, got {digest[:12]}…); the file is corrupt or was modified"
                )
    manifest.verified = verify
    return manifest


def verify(folder: str | os.PathLike) -> Manifest:
    """Check an artifact completely; raises BadArtifactError with the first problem found."""
    return read_manifest(folder, verify=True)


class ArtifactWriter:
    """Build an artifact in a temporary folder and move it into place only when complete.

    >>> with ArtifactWriter("out/mf") as w:          # doctest: +SKIP
    ...     np.save(w.dir / "mf.npy", weights); w.manifest.update(kind="mf", ...)
    An exception inside the block leaves no folder at the destination that ``load()`` would accept.
    """

    def __init__(self, out: str | os.PathLike, *, overwrite: bool = False, inputs=None):
        self.out = check_output_dir(out, overwrite=overwrite, inputs=inputs)
        self.overwrite = overwrite
        self.inputs = inputs
        self.manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        self.dir: Path = Path()
        self._sig = sigterm_raises()

    def __enter__(self) -> "ArtifactWriter":
        # checked again: the work before ``with`` may have taken a while
        check_output_dir(self.out, overwrite=self.overwrite, inputs=self.inputs)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._sig.__enter__()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        except BaseException:
            self._sig.__exit__(None, None, None)
            raise
        return self

    def iter_files(self) -> Iterator[Path]:
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                yield path

    def write_manifest(self) -> None:
        """Hash every file in the folder and write ``manifest.json`` (called again on exit)."""
        import datetime

        from . import __version__

        self.manifest.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        self.manifest.setdefault("routekit_version", __version__)
        self.manifest["files"] = {
            p.relative_to(self.dir).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in self.iter_files()
        }
        (self.dir / MANIFEST).write_text(json.dumps(self.manifest, indent=2) + "\n", encoding="utf-8")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish(exc_type, exc)
        finally:
            self._sig.__exit__(None, None, None)

    def _finish(self, exc_type, exc) -> None:
        if exc_type is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            if exc is not None:
                exc.add_note(f"{self.out} was not written" + (
                    "; the existing folder was left untouched" if self.out.exists() else ""))
            return
        try:
            self.write_manifest()
            read_manifest(self.dir)  # never move an invalid artifact into place
            if self.out.exists():
                old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
                os.replace(self.out, old)
                os.replace(self.dir, self.out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.dir, self.out)
        except BaseException as err:
            shutil.rmtree(self.dir, ignore_errors=True)
            err.add_note(f"{self.out} was not written" + (
                "; the existing folder was left untouched" if self.out.exists() else ""))
            raise

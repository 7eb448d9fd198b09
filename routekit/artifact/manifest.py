"""Reading an artifact folder: ``manifest.json`` checked (caps, schema, its own hash) and every
listed file hash-checked; :class:`Manifest` gives the routers their files and arrays, never pickle."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routekit import registry
from routekit.artifact import schema as _schema
from routekit.errors import BadArtifactError, BadInputError

FORMAT = "routekit-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DIGEST = "manifest_sha256"  #: the manifest's own hash, see manifest_digest()
#: A folder beside artifact folders that holds files several of them list, once each, named by their
#: sha256 (``<sha256><suffix>``): a listed file missing from an artifact folder is looked up there and
#: hash-checked like any other.  ``routekit artifacts share`` fills it; the shipped artifacts use it so
#: the encoder they share is installed once.  :func:`copy_artifact` makes a self-contained copy.
SHARED = "_shared"
_HEX = frozenset("0123456789abcdef")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safe_member(folder: Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``folder``; refuse absolute paths, ``..`` escapes, NUL bytes and symlinks."""
    if (not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith(("/", "\\"))
            or Path(rel).is_absolute()):
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


def shared_path(folder: Path, rel: str, sha256: Any) -> Path | None:
    """Where the shared store beside ``folder`` keeps the file ``rel`` with this sha256 (None: no such
    name).  The name comes from the hash alone, never from the manifest's path."""
    if not (isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= _HEX):
        return None
    suffix = Path(rel).suffix
    if not suffix.replace(".", "").isalnum():
        suffix = ""
    return folder.parent / SHARED / f"{sha256}{suffix}"


def _locate_member(folder: Path, rel: str, meta: Any) -> Path:
    """The file ``rel`` of ``folder``: in the folder, else in the shared store beside it."""
    path = _safe_member(folder, rel)
    if path.is_file():
        return path
    alt = shared_path(folder, rel, meta.get("sha256") if isinstance(meta, dict) else None)
    if alt is not None and alt.is_file() and not alt.is_symlink() and not alt.parent.is_symlink():
        return alt
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
        return _locate_member(self.folder, rel, self.files[rel])

    def array(self, rel: str) -> np.ndarray | dict[str, np.ndarray]:
        """Load a ``.npy``/``.npz`` file listed in the manifest, without pickle.

        Only numeric arrays are accepted, and floating-point ones must be finite: anything else
        (a truncated archive, an object or string array, NaN weights) is a BadArtifactError."""
        path = self.path(rel)
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    arrays = {k: loaded[k] for k in loaded.files}
            else:
                arrays = {"": loaded}
        except Exception as exc:  # ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, …
            raise BadArtifactError(f"{path}: not a valid numpy array file ({type(exc).__name__}: {exc})") from exc
        for name, a in arrays.items():
            label = f"{path}" + (f" array {name!r}" if name else "")
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
                raise BadArtifactError(f"{label}: dtype {getattr(a, 'dtype', type(a))} is not numeric")
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise BadArtifactError(f"{label}: has values that are not finite (NaN or infinity)")
        return arrays[""] if "" in arrays else arrays

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


def manifest_digest(data: dict) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces, UTF-8), ``manifest_sha256`` left out."""
    body = {k: v for k, v in data.items() if k != DIGEST}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_manifest_bytes(folder: Path) -> tuple[Path, bytes]:
    mpath = folder / MANIFEST
    if mpath.is_symlink():
        raise BadArtifactError(f"{mpath} is a symlink; an artifact's manifest must be a real file in its folder")
    if not mpath.is_file():
        raise BadArtifactError(f"{folder}: no {MANIFEST} (not a routekit artifact folder)")
    try:
        fd = os.open(mpath, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read(_schema.MAX_BYTES + 1)
    except OSError as exc:
        raise BadArtifactError(f"{mpath}: cannot be read ({exc.strerror or exc})") from exc
    return mpath, raw


def read_manifest(folder: str | os.PathLike, *, verify: bool = True) -> Manifest:
    """Read and validate ``folder/manifest.json``: JSON caps, schema, the manifest's own hash
    (``manifest_sha256``), every listed file present; with ``verify`` also every file's sha256."""
    if folder is None or isinstance(folder, bool) or not isinstance(folder, (str, os.PathLike)):
        raise BadInputError(f"an artifact folder must be a path, got {type(folder).__name__}")
    if "\0" in str(folder):
        raise BadInputError(f"artifact folder {str(folder)!r} contains a NUL byte")
    folder = Path(folder)
    mpath, raw = _read_manifest_bytes(folder)
    data = _schema.parse(raw, str(mpath))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadArtifactError(f"{mpath}: not a routekit manifest (format != {FORMAT!r})")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise BadArtifactError(
            f"{mpath}: format_version {version!r} is not supported by this routekit "
            f"(supports {FORMAT_VERSION}); upgrade routekit or re-export the artifact"
        )
    registry.check_kind(data.get("kind"), where=str(mpath))
    _schema.check(data, str(mpath), registry.router_class(data["kind"]))
    digest = data.get(DIGEST)
    if digest is None:
        raise BadArtifactError(f"{mpath}: no {DIGEST} (the manifest's own hash); if you made or edited this "
                               f"manifest yourself, check it and run `routekit artifacts seal {folder}`")
    actual = manifest_digest(data)
    if actual != digest:
        raise BadArtifactError(f"{mpath}: the manifest was modified after it was written ({DIGEST} "
                               f"{digest[:12]}…, content {actual[:12]}…); re-export the artifact, or check "
                               f"the change and run `routekit artifacts seal {folder}`")
    files = data["files"]
    manifest = Manifest(data, folder)
    for rel, meta in files.items():
        path = _locate_member(folder, rel, meta)
        if not path.is_file():
            raise BadArtifactError(f"{folder}: file {rel!r} listed in the manifest is missing (neither in the "
                                   f"folder nor in {SHARED}/ beside it)")
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

"""The artifact format: a folder with ``manifest.json`` plus the files it lists, each with a sha256.

Loading never unpickles anything: arrays are read with ``numpy.load(allow_pickle=False)``, models
are ONNX files, tokenizers are ``tokenizer.json``.  Every file the manifest lists is hashed on load
and a mismatch is refused with :class:`~routekit.errors.BadArtifactError`.

The manifest itself is checked against a schema (:mod:`routekit._schema`) and carries its own hash,
``manifest_sha256``: the sha256 of its canonical JSON (sorted keys, no whitespace) without that
field, written by :class:`ArtifactWriter` and checked on every load.  It catches a manifest changed
after it was written — a hand edit (one digit of a calibration quantile), a bad merge, a partial
copy, bit rot — which the file hashes alone do not cover (they say nothing about the thresholds,
the pair or the model table).  It is an integrity check, not a signature: anyone who can write the
folder can also recompute the hash (``routekit artifacts seal``), so it does not protect against
deliberate tampering; for that, compare ``routekit artifacts verify``'s digest with one you keep
elsewhere, or install artifacts read-only.
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

from . import _schema, registry
from ._io import check_output_dir, sigterm_raises
from .errors import BadArtifactError, BadInputError, UnknownArtifactError

FORMAT = "routekit-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DIGEST = "manifest_sha256"  #: the manifest's own hash, see manifest_digest()
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
        default = default_name()
        if default in out:
            out["default"] = out[default]
    return out


def default_name() -> str | None:
    """The shipped artifact ``default`` names (``index.json``), or None."""
    index = artifacts_root() / "index.json"
    if not index.is_file():
        return None
    try:
        data = _schema.parse(index.read_bytes(), str(index), max_bytes=1 << 20)
    except (BadArtifactError, OSError):
        return None
    default = data.get("default") if isinstance(data, dict) else None
    return default if isinstance(default, str) else None


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
    _schema.check(data, str(mpath), (data["kind"],))  # kind checked just above
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
        path = _safe_member(folder, rel)
        if not path.is_file():
            raise BadArtifactError(f"{folder}: file {rel!r} listed in the manifest is missing")
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


TRIAL_PROMPT = "Prove that there are infinitely many prime numbers."


def verify(folder: str | os.PathLike, *, load: bool = False, threads: int | None = None) -> Manifest:
    """Check an artifact's manifest (schema, own hash) and files (sha256); with ``load`` also load
    it as ``routekit.load()`` does and score one prompt (a remote encoder is not called: the head
    scores a synthetic unit embedding instead), so that passing means ``load()`` works.

    Raises BadArtifactError with the first problem found."""
    manifest = read_manifest(folder, verify=True)
    if load:
        _trial(manifest, threads)
    return manifest


def _trial(manifest: Manifest, threads: int | None) -> None:
    from .errors import RoutekitError

    where = manifest.folder
    try:  # as routekit.load() builds it, from the manifest read and hash-checked above
        router = registry.router_class(manifest.kind)(manifest, threads=threads)
        encoder = getattr(router, "encoder", None)
        if hasattr(encoder, "check_vocab"):
            encoder.check_vocab()
        enc = manifest.get("encoder")
        if isinstance(enc, dict) and enc.get("kind") == "openai":
            emb = np.zeros((1, int(enc["dim"])), np.float32)
            emb[0, 0] = 1.0
            raw = router.score_embeddings(emb, [TRIAL_PROMPT])
        else:
            raw = router._score([TRIAL_PROMPT])
        raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    except RoutekitError:
        raise
    except Exception as exc:  # anything else is an artifact the loader did not catch
        raise BadArtifactError(f"{where}: the trial load failed ({type(exc).__name__}: {exc})") from exc
    if raw.shape != (1,) or not np.isfinite(raw[0]) or not -1e-6 <= raw[0] <= 1 + 1e-6:
        raise BadArtifactError(f"{where}: the trial prompt gave win rate {raw.tolist()}, not one number in [0, 1]")


def _with_digest(text: str, data: dict) -> str:
    """``text`` with its top-level ``manifest_sha256`` set to ``data``'s, changing only that line
    where possible (a small diff for manifests kept in git); else ``data`` re-serialised."""
    import re

    line = f'"{DIGEST}": "{data[DIGEST]}"'
    for new in (re.sub(rf'"{DIGEST}"\s*:\s*"[^"]*"', lambda m: line, text),
                re.sub(r"\s*}\s*$", lambda m: f',\n  {line}\n}}\n', text, count=1)):
        try:
            if new != text and json.loads(new) == data:
                return new
        except ValueError:
            pass
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def seal(folder: str | os.PathLike) -> str:
    """Record the manifest's own hash (``manifest_sha256``) after a deliberate edit; returns it.

    The manifest must pass the schema and every listed file its sha256 (a file whose hash changed
    is re-hashed only by re-exporting, never here).  Written atomically."""
    from ._io import atomic_write

    folder = Path(folder)
    mpath, raw = _read_manifest_bytes(folder)
    data = _schema.parse(raw, str(mpath))
    if not isinstance(data, dict):
        raise BadArtifactError(f"{mpath}: not a routekit manifest")
    data[DIGEST] = manifest_digest(data)
    with atomic_write(mpath) as f:  # then check it as load() would; restore the old text if not valid
        f.write(_with_digest(raw.decode("utf-8"), data))
    try:
        read_manifest(folder, verify=True)
    except BadArtifactError:
        with atomic_write(mpath, "wb") as f:
            f.write(raw)
        raise
    return data[DIGEST]


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
        self.manifest.pop(DIGEST, None)
        self.manifest[DIGEST] = manifest_digest(self.manifest)
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

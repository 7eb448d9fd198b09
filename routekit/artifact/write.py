"""Writing artifacts: :class:`ArtifactWriter` builds one in a temporary folder and moves it into
place only when complete and loadable; :func:`seal` records a hand-edited manifest's own hash."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from routekit.artifact import schema as _schema
from routekit.artifact.manifest import (
    DIGEST,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    Manifest,
    _read_manifest_bytes,
    manifest_digest,
    read_manifest,
    sha256_file,
)
from routekit.errors import BadArtifactError
from routekit.io import atomic_write, check_output_dir, sigterm_raises


def _with_digest(text: str, data: dict) -> str:
    """``text`` with its top-level ``manifest_sha256`` set to ``data``'s, changing only that line
    where possible (a small diff for manifests kept in git); else ``data`` re-serialised."""
    import re

    line = f'"{DIGEST}": "{data[DIGEST]}"'
    pattern = rf'"{DIGEST}"\s*:\s*"[^"]*"'
    # the text has the field: replace it (an unchanged manifest stays byte-identical); else append it
    candidates = ((re.sub(pattern, lambda m: line, text),) if len(re.findall(pattern, text)) == 1 else
                  (re.sub(r"\s*}\s*$", lambda m: f',\n  {line}\n}}\n', text, count=1),))
    for new in candidates:
        try:
            if json.loads(new) == data:
                return new
        except ValueError:
            pass
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def seal(folder: str | os.PathLike) -> str:
    """Record the manifest's own hash (``manifest_sha256``) after a deliberate edit; returns it.

    The manifest must pass the schema and every listed file its sha256 (a file whose hash changed
    is re-hashed only by re-exporting, never here).  Written atomically."""
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


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent/prefix<random>`` with the mode ``mkdir`` gives (the umask's),
    not ``tempfile.mkdtemp``'s 0700: the folder is renamed into place as the artifact."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"cannot make a temporary folder in {parent}")


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
            self.dir = _new_folder(self.out.parent, f".{self.out.name}.partial-")
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

        from routekit import __version__

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


@contextmanager
def rewrite(manifest: Manifest, out: str | os.PathLike, *, overwrite: bool = False, inputs=None,
            skip: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> Iterator[ArtifactWriter]:
    """An :class:`ArtifactWriter` for ``out`` that already holds ``manifest``'s artifact: every listed file
    but ``skip`` and every manifest section but ``drop``.  Change what should change inside the block
    (write a file, set a section); the artifact is sealed and moved into place on exit, atomically.

    ``out`` may be the artifact's own folder (with ``overwrite``): a file it read from the shared store
    beside it (``routekit artifacts share``) and left unchanged stays only there.

    >>> with rewrite(router.manifest, router.path, overwrite=True) as w:   # doctest: +SKIP
    ...     w.manifest["calibration"] = table
    """
    src = Path(manifest.folder)
    own = Path(out).resolve() == src.resolve()
    in_store = {rel: meta.get("sha256") for rel, meta in manifest.files.items()
                if own and rel not in skip and not (src / rel).is_file()}
    with ArtifactWriter(out, overwrite=overwrite, inputs=inputs) as w:
        for rel in manifest.files:
            if rel not in skip:
                dst = w.dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(manifest.path(rel), dst)  # sealing hashes every file in the folder
        w.manifest.update({k: v for k, v in manifest.data.items() if k not in ("files", DIGEST, *drop)})
        yield w
    if in_store:
        files = read_manifest(Path(out), verify=False).files
        for rel, sha in in_store.items():
            if files.get(rel, {}).get("sha256") == sha:  # unchanged: the store already holds it
                (Path(out) / rel).unlink()
        read_manifest(Path(out), verify=True)

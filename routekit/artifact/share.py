"""Files that several artifacts list, stored once: ``share()`` moves every file two or more artifacts
of one folder hold (same sha256) into ``<folder>/_shared/<sha256><suffix>``; ``copy_artifact()``
makes a self-contained copy of one artifact (shared files copied back in)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from routekit.artifact.manifest import (
    MANIFEST,
    SHARED,
    read_manifest,
    sha256_file,
    shared_path,
)
from routekit.artifact.write import _new_folder
from routekit.errors import BadArtifactError, OutputError, OutputExistsError
from routekit.io import atomic_path


@dataclass(frozen=True)
class ShareReport:
    artifacts: int  #: artifact folders read
    shared_files: int  #: distinct files now in the shared store
    removed_copies: int  #: copies deleted from artifact folders
    bytes_saved: int


def _artifacts(root: Path) -> list[Path]:
    return [d for d in sorted(root.iterdir()) if d.is_dir() and d.name != SHARED and (d / MANIFEST).is_file()]


def share(root: str | os.PathLike, *, min_copies: int = 2) -> ShareReport:
    """Store once every file that ``min_copies`` or more artifacts under ``root`` list with the same
    sha256.  Every artifact is hash-checked first and again after; a shared file is written (and its
    hash checked) before any copy is removed, so an interrupted run loses nothing."""
    root = Path(root)
    if not root.is_dir():
        raise BadArtifactError(f"{root}: not a folder of artifacts")
    folders = _artifacts(root)
    copies: dict[tuple[str, str], list[Path]] = {}
    for folder in folders:
        m = read_manifest(folder, verify=True)
        for rel, meta in m.files.items():
            local = folder / rel
            if local.is_file():
                copies.setdefault((meta["sha256"], rel), []).append(local)
    by_target: dict[Path, list[Path]] = {}
    for (sha, rel), paths in copies.items():
        target = shared_path(root / "x", rel, sha)
        if target is not None:
            by_target.setdefault(target, []).extend(paths)
    for target in sorted(by_target):  # a store file already there must hold what its name says before any
        if target.is_file() and sha256_file(target) != target.name.split(".")[0]:  # copy is removed
            raise BadArtifactError(f"{target}: the shared file does not match its sha256 (damaged or replaced); "
                                   "remove it and run share again (nothing was removed)")
    removed = saved = 0
    for target, paths in sorted(by_target.items()):
        if len(paths) < min_copies and not target.is_file():
            continue
        if not target.is_file():
            target.parent.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(paths[0], tmp)
                if sha256_file(Path(tmp)) != target.name.split(".")[0]:
                    raise BadArtifactError(f"{paths[0]}: changed while it was being shared")
        for p in paths:
            saved += p.stat().st_size
            p.unlink()
            removed += 1
    for folder in folders:
        read_manifest(folder, verify=True)
    store = root / SHARED
    n = len([p for p in store.iterdir() if p.is_file()]) if store.is_dir() else 0
    return ShareReport(len(folders), n, removed, saved)


def copy_artifact(src: str | os.PathLike, dst: str | os.PathLike, *, link: bool = False) -> Path:
    """Copy the artifact ``src`` to the new folder ``dst`` with every listed file inside it (shared
    files copied back in), so the copy loads on its own.  ``link`` hard-links files instead of copying
    them (the manifest is always copied: replace a linked file by unlinking it first).  The copy is made
    in a temporary folder beside ``dst`` and renamed into place when complete: a failed copy leaves
    no ``dst``."""
    src, dst = Path(src), Path(dst)
    m = read_manifest(src, verify=False)
    if dst.exists():
        raise OutputExistsError(f"{dst} exists; give a new folder")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_folder(dst.parent, f".{dst.name}.tmp-")
    except OSError as exc:
        raise OutputError(f"cannot create {dst}: {exc}") from exc
    try:
        shutil.copyfile(src / MANIFEST, tmp / MANIFEST)
        for rel in m.files:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            (os.link if link else shutil.copyfile)(m.path(rel), out)
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst

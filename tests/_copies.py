"""Cheap copies of artifact folders for tests that damage them."""

from pathlib import Path


def linked_copy(src: Path, dst: Path) -> Path:
    """``dst``: a copy of the artifact ``src`` whose manifest is its own file and the rest hard links
    (replace a linked file by unlinking it first: writing into it would change ``src`` too)."""
    from routekit.artifact import copy_artifact

    return copy_artifact(src, dst, link=True)


def shipped_file(name: str, rel: str) -> Path:
    """Where the shipped artifact ``name`` keeps its file ``rel`` (in its folder or the shared store)."""
    from routekit import artifact

    return artifact.read_manifest(artifact.shipped()[name], verify=False).path(rel)

"""Cheap copies of artifact folders for tests that damage them."""

import os
import shutil
from pathlib import Path


def linked_copy(src: Path, dst: Path) -> Path:
    """``dst``: a copy of the artifact ``src`` whose manifest is its own file and the rest hard links
    (replace a linked file by unlinking it first: writing into it would change ``src`` too)."""
    dst.mkdir()
    for p in src.iterdir():
        (shutil.copyfile if p.name == "manifest.json" else os.link)(p, dst / p.name)
    return dst

"""Build the ``routekit-gpu`` distribution from the same source as ``routekit``.

``routekit`` depends on ``onnxruntime``; ``routekit-gpu`` is the same code and artifacts with
``onnxruntime-gpu`` instead (fastembed's convention).  Both onnxruntime wheels install the same
``onnxruntime`` module and overwrite each other, so each routekit distribution depends on exactly
one of them: install ``routekit`` *or* ``routekit-gpu``, never both.

    python packaging/gpu_variant.py stage DIR    # DIR/pyproject.toml + links to the sources
    pip wheel --no-deps --no-build-isolation DIR -w dist/

Only the project name, the description and the onnxruntime requirement differ (checked by
tests/test_packaging.py, which builds both).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("routekit", "artifacts", "export", "README.md")


def gpu_pyproject(text: str) -> str:
    """The ``routekit-gpu`` pyproject.toml from ``routekit``'s."""
    out, n = re.subn(r'(?m)^name = "routekit"$', 'name = "routekit-gpu"', text)
    if n != 1:
        raise ValueError("pyproject.toml has no single 'name = \"routekit\"' line")
    out, n = re.subn(r'"onnxruntime(>=[^"]*)?",', lambda m: f'"onnxruntime-gpu{m.group(1) or ""}",', out, count=1)
    if n != 1:
        raise ValueError("pyproject.toml has no onnxruntime dependency to swap")
    out = re.sub(r'(?m)^description = "(.*)"$', r'description = "\1 GPU build: depends on onnxruntime-gpu."', out,
                 count=1)
    return out


def stage(dest: Path, *, gpu: bool = True) -> Path:
    """A folder that builds ``routekit-gpu`` (or, with ``gpu=False``, plain ``routekit``): its
    pyproject.toml and symlinks to the sources, so builds leave the work tree untouched."""
    dest.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (dest / "pyproject.toml").write_text(gpu_pyproject(text) if gpu else text, encoding="utf-8")
    for name in SOURCES:
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("stage", help="write a buildable routekit-gpu folder")
    sp.add_argument("dest", type=Path)
    args = ap.parse_args(argv)
    print(stage(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Turn "x % of prompts to the strong model" into a win-rate threshold, on a set of prompts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from . import artifact
from .errors import BadInputError

FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def calibration_table(win_rates: np.ndarray, *, prompts: str, default_strong_fraction: float = 0.5,
                      levels: int = 101) -> dict:
    """Quantiles of the win rates (0, 1/(levels-1), …, 1) plus readable thresholds for 10 %…90 %."""
    rates = np.asarray(win_rates, dtype=np.float64)
    if rates.size == 0:
        raise BadInputError("calibration needs at least one prompt")
    q = np.quantile(rates, np.linspace(0.0, 1.0, levels))
    return {
        "prompts": prompts,
        "n": int(rates.size),
        "default_strong_fraction": default_strong_fraction,
        "thresholds": {str(f): float(np.quantile(rates, 1.0 - f)) for f in FRACTIONS},
        "quantiles": [float(x) for x in q],
    }


def threshold_for_fraction(win_rates: np.ndarray, strong_fraction: float) -> float:
    """Threshold at which ``strong_fraction`` of these win rates are >= it."""
    if isinstance(strong_fraction, bool) or not 0.0 <= strong_fraction <= 1.0:
        raise BadInputError(f"strong_fraction must be in [0, 1], got {strong_fraction}")
    rates = np.asarray(win_rates, dtype=np.float64).reshape(-1)
    if rates.size == 0:
        raise BadInputError("a threshold needs at least one win rate")
    return float(np.quantile(rates, 1.0 - strong_fraction))


def write_calibrated_copy(router, prompts: Sequence[str], out: Path, *, source: str,
                          default_strong_fraction: float = 0.5, overwrite: bool = False,
                          win_rates=None) -> Path:
    """Copy ``router``'s artifact to ``out`` with its calibration recomputed on ``prompts``
    (``win_rates``: the router's win rates on ``prompts`` if already computed).

    ``out`` is checked before any work (exists without ``overwrite``, is the router's own folder or
    holds the prompts file: :class:`~routekit.errors.OutputError`) and written atomically."""
    if router.path is None:
        raise BadInputError(f"router {router.name!r} has no artifact folder to copy")
    if not router.is_default_pair:
        raise BadInputError("calibration is stored for the artifact's default pair only")
    inputs = [router.path, source if Path(source).exists() else None]
    artifact.check_output_dir(out, overwrite=overwrite, inputs=inputs)
    rates = router.win_rates(prompts, show_progress=True) if win_rates is None else win_rates
    table = calibration_table(rates, prompts=source, default_strong_fraction=default_strong_fraction)
    with artifact.ArtifactWriter(out, overwrite=overwrite, inputs=inputs) as w:
        for rel in router.manifest.files:
            dst = w.dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(router.manifest.path(rel), dst)
        w.manifest.update({k: v for k, v in router.manifest.data.items() if k not in ("files",)})
        w.manifest["calibration"] = table
    return Path(out)


def load_prompt_file(path: Path, field: str = "prompt") -> list[str]:
    """Prompts from ``.jsonl`` (objects with ``field``) or a text file (one prompt per line)."""
    from ._io import json_line, text_lines

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: file not found")
    if path.suffix == ".jsonl":
        out = []
        for i, line in text_lines(path):
            if not line.strip():
                continue
            row = json_line(line, f"{path}, line {i}")
            if isinstance(row, str):
                out.append(row)
            elif isinstance(row, dict) and isinstance(row.get(field), str):
                out.append(row[field])
            else:
                raise BadInputError(f"{path}, line {i}: expected a string or an object with a {field!r} string")
        return out
    return [line.rstrip("\n") for _, line in text_lines(path) if line.strip()]

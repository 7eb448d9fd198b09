"""Turn "x % of prompts to the strong model" into a win-rate threshold, on a set of prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from routekit import artifact
from routekit.errors import BadInputError
from routekit.router import DEFAULT_STRONG_FRACTION

FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def weighted_quantile(values: np.ndarray, levels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Quantiles of ``values`` at ``levels`` (0…1); with ``weights``, of the weighted distribution
    (piecewise-linear between the weighted mid-points; equal weights give numpy's default)."""
    v = np.asarray(values, dtype=np.float64)
    if weights is None:
        return np.quantile(v, levels)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != v.shape or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise BadInputError("calibration weights must be finite, >= 0, one per prompt, not all zero")
    order = np.argsort(v, kind="mergesort")
    v, w = v[order], w[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    if len(v) == 1:
        return np.full(np.shape(levels), v[0])
    cum = np.cumsum(w) - 0.5 * w  # mid-point of each value's weight
    pos = (cum - cum[0]) / (cum[-1] - cum[0])
    return np.interp(levels, pos, v)


def calibration_table(win_rates: np.ndarray, *, prompts: str, default_strong_fraction: float = DEFAULT_STRONG_FRACTION,
                      levels: int = 101, weights: np.ndarray | None = None, mix: dict | None = None) -> dict:
    """Quantiles of the win rates (0, 1/(levels-1), …, 1) plus readable thresholds for 10 %…90 %.

    ``weights`` (one per prompt) make the quantiles those of a weighted mix of prompt sets, e.g.
    to give a small set of everyday prompts the share it has in real traffic; ``mix`` records the
    components in the table."""
    rates = np.asarray(win_rates, dtype=np.float64)
    if rates.size == 0:
        raise BadInputError("calibration needs at least one prompt")
    q = weighted_quantile(rates, np.linspace(0.0, 1.0, levels), weights)
    thr = weighted_quantile(rates, 1.0 - np.array(FRACTIONS), weights)
    table = {
        "prompts": prompts,
        "n": int(rates.size),
        "default_strong_fraction": default_strong_fraction,
        "thresholds": {str(f): float(t) for f, t in zip(FRACTIONS, thr)},
        "quantiles": [float(x) for x in q],
    }
    if mix:
        table["mix"] = mix
    return table


def threshold_for_fraction(win_rates: np.ndarray, strong_fraction: float) -> float:
    """Threshold at which ``strong_fraction`` of these win rates are >= it."""
    if isinstance(strong_fraction, bool) or not 0.0 <= strong_fraction <= 1.0:
        raise BadInputError(f"strong_fraction must be in [0, 1], got {strong_fraction}")
    rates = np.asarray(win_rates, dtype=np.float64).reshape(-1)
    if rates.size == 0:
        raise BadInputError("a threshold needs at least one win rate")
    return float(np.quantile(rates, 1.0 - strong_fraction))


def write_calibrated_copy(router, prompts: Sequence[str], out: Path, *, source: str,
                          default_strong_fraction: float = DEFAULT_STRONG_FRACTION, overwrite: bool = False,
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
    return write_calibration(router, out, table, overwrite=overwrite, inputs=inputs)


def write_calibration(router, out: Path, table: dict, *, overwrite: bool = False, inputs=None) -> Path:
    """``router``'s artifact written to ``out`` (atomically, through :class:`~routekit.artifact.ArtifactWriter`)
    with ``table`` as its calibration; ``out`` may be the artifact's own folder with ``overwrite``, and
    then a file it reads from the folder's shared store (``routekit artifacts share``) stays there."""
    with artifact.rewrite(router.manifest, out, overwrite=overwrite, inputs=inputs) as w:
        w.manifest["calibration"] = table
    return Path(out)


def load_prompt_file(path: Path, field: str = "prompt") -> list[str]:
    """Prompts from ``.jsonl`` (objects with ``field``) or a text file (one prompt per line)."""
    from routekit.io import json_line, text_lines

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

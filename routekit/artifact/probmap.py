"""The optional ``prob_map`` manifest section: a strictly increasing map from a router's raw win
rates to calibrated probabilities (fitted by ``routekit-export recalibrate --prob-map``).

A router's raw scores rank prompts; whether "0.62" means that the strong model wins 62 % of such
prompts depends on how the head was fitted.  With the section, :class:`~routekit.router.Router`
reports ``map(raw)`` as the win rate.  The map is strictly increasing, so the ranking, and every
decision at a threshold mapped the same way, are unchanged.  The artifact's ``calibration`` table
is stored on the scale the router reports (the tool maps it when it adds the section), so
``strong_fraction`` thresholds and the win rates they are compared with stay consistent.

Two forms::

    {"kind": "platt", "a": a, "b": b, ...}            p = σ(a·logit(r) + b), a > 0
    {"kind": "isotonic", "x": [...], "y": [...], ...}  piecewise linear through (x_i, y_i); x from 0
                                                       to 1 and y strictly increasing

Other keys (``target``, ``fitted_on``, ``ece``, ...) are carried as a record of how it was fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from routekit._validate import short
from routekit.errors import BadArtifactError
from routekit.numeric import logit

__all__ = ["ProbMap", "KINDS", "MAX_KNOTS"]

KINDS = ("platt", "isotonic")
MAX_KNOTS = 10_000


@dataclass(frozen=True)
class ProbMap:
    """A strictly increasing map [0, 1] -> [0, 1] (see the module docstring)."""

    kind: str
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "platt":
            if not (math.isfinite(self.a) and math.isfinite(self.b) and self.a > 0):
                raise ValueError("platt needs finite a > 0 and finite b")
            return
        x, y = np.asarray(self.x, np.float64), np.asarray(self.y, np.float64)
        if not 2 <= len(x) <= MAX_KNOTS or x.shape != y.shape:
            raise ValueError(f"isotonic needs 2 to {MAX_KNOTS} knots, x and y of one length")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("knots must be finite numbers")
        if x[0] != 0.0 or x[-1] != 1.0 or (np.diff(x) <= 0).any():
            raise ValueError("isotonic x must rise strictly from 0 to 1")
        if y[0] < 0.0 or y[-1] > 1.0 or (np.diff(y) <= 0).any():
            raise ValueError("isotonic y must rise strictly within [0, 1]")

    # -- reading and writing --------------------------------------------------------------------
    @classmethod
    def from_section(cls, section: Any, where: str = "prob_map") -> "ProbMap":
        if not isinstance(section, dict):
            raise BadArtifactError(f"{where}: must be an object")
        try:
            kind = section.get("kind")
            if kind == "platt":
                return cls("platt", a=_num(section["a"]), b=_num(section["b"]))
            if kind == "isotonic":
                return cls("isotonic", x=tuple(_num(v) for v in section["x"]),
                           y=tuple(_num(v) for v in section["y"]))
            raise ValueError(f"kind must be one of {KINDS}, got {short(kind)}")
        except KeyError as exc:
            raise BadArtifactError(f"{where}: {kind} needs the key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise BadArtifactError(f"{where}: {exc}") from None

    @classmethod
    def from_manifest(cls, manifest) -> "ProbMap | None":
        section = manifest.get("prob_map") if manifest is not None else None
        return None if section is None else cls.from_section(section, f"{manifest.folder}: prob_map")

    def to_section(self) -> dict[str, Any]:
        if self.kind == "platt":
            return {"kind": "platt", "a": self.a, "b": self.b}
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}

    # -- applying -------------------------------------------------------------------------------
    def __call__(self, raw) -> np.ndarray:
        r = np.asarray(raw, np.float64)
        if self.kind == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * logit(r) + self.b)))
        return np.interp(r, self.x, self.y)

    def inverse(self, p) -> np.ndarray:
        """The raw win rate that maps to ``p`` (for moving thresholds between scales)."""
        q = np.asarray(p, np.float64)
        if self.kind == "platt":
            return 1.0 / (1.0 + np.exp(-((logit(q) - self.b) / self.a)))
        return np.interp(q, self.y, self.x)

    def map_calibration(self, cal: dict, *, inverse_of: "ProbMap | None" = None) -> dict:
        """A calibration table with its quantiles and thresholds moved to this map's scale
        (``inverse_of``: the map the table is on now, undone first)."""
        def move(v):
            raw = inverse_of.inverse(v) if inverse_of is not None else np.asarray(v, np.float64)
            return self(raw)

        out = dict(cal)
        q = move(cal["quantiles"])
        out["quantiles"] = [float(v) for v in np.maximum.accumulate(q)]  # exact ties stay non-decreasing
        if isinstance(cal.get("thresholds"), dict):
            out["thresholds"] = {k: float(move(v)) for k, v in cal["thresholds"].items()}
        return out


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)

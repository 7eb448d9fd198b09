"""The RouteLLM paper's routing metrics (Ong et al., ICLR 2025, §3.2): PGR curves, APGR, CPT,
the optimal and random baselines, cost savings, bootstrap intervals and :func:`evaluate`
for one router (definitions: :mod:`routekit.eval`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from routekit.errors import BadInputError
from routekit.eval.sets import EvalDataError, EvalSet

DEFAULT_GRID = np.linspace(0.0, 1.0, 11)
#: USD per million tokens, as in the paper (GPT-4 / Mixtral 8x7B).
DEFAULT_PRICES = {"strong": 24.7, "weak": 0.24}


@dataclass
class Curve:
    """Routed quality and PGR at each strong-call fraction ``strong_fraction``."""

    strong_fraction: np.ndarray
    quality: np.ndarray
    pgr: np.ndarray

    def area(self) -> float:
        """Trapezoid area under PGR over ``strong_fraction`` (APGR on the default grid)."""
        x, y = self.strong_fraction, self.pgr
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))

    def to_dict(self) -> dict:
        return {"strong_fraction": _jsonable(self.strong_fraction), "quality": _jsonable(self.quality),
                "pgr": _jsonable(self.pgr)}


def _inputs(win_rates, strong_q, weak_q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, s, q = (np.asarray(a, dtype=float) for a in (win_rates, strong_q, weak_q))
    if w.ndim != 1 or s.shape != w.shape or q.shape != w.shape:
        raise BadInputError(f"win_rates, strong and weak quality must be 1-D of equal length; "
                            f"got shapes {w.shape}, {s.shape}, {q.shape}")
    if w.size == 0:
        raise BadInputError("no prompts to evaluate")
    if not (np.isfinite(w).all() and np.isfinite(s).all() and np.isfinite(q).all()):
        raise BadInputError("win_rates and qualities must be finite (found NaN or inf)")
    return w, s, q


def _cumulative(win_rates, strong_q, weak_q) -> tuple[np.ndarray, float, float]:
    """Gain over all-weak from routing the top k prompts to strong, for k = 0..n.

    Returns (cumulative gain summed over prompts, length n+1; r(weak); total gain)."""
    w, s, q = _inputs(win_rates, strong_q, weak_q)
    order = np.argsort(-w, kind="stable")  # ties: earlier index first
    cum = np.concatenate(([0.0], np.cumsum((s - q)[order])))
    total = float(np.sum(s - q))
    if abs(total) <= 1e-12 * max(1.0, float(np.abs(s - q).sum())):
        raise EvalDataError(
            f"r(strong) == r(weak) (= {s.mean():.6g}): PGR is undefined when the strong and weak "
            f"models have the same mean quality on this set (too small or contaminated-filtered "
            f"sample? try the full benchmark or other prompts)")
    cum[-1] = total  # PGR(1) is exactly 1
    return cum, float(q.mean()), total


def _grid_k(grid: np.ndarray, n: int) -> np.ndarray:
    g = np.asarray(grid, dtype=float)
    if g.ndim != 1 or g.size < 2 or (g < 0).any() or (g > 1).any() or (np.diff(g) <= 0).any():
        raise BadInputError("grid must be increasing strong-call fractions within [0, 1]")
    return np.floor(np.round(g * n, 9) + 0.5).astype(int)  # round halves up


def _curve(cum: np.ndarray, r_weak: float, total: float, grid) -> Curve:
    n = len(cum) - 1
    if grid is None:
        k = np.arange(n + 1)
        x = k / n
    else:
        x = np.asarray(grid, dtype=float)
        k = _grid_k(x, n)
    return Curve(x.copy(), r_weak + cum[k] / n, cum[k] / total)


def pgr_curve(win_rates, strong_q, weak_q, grid: Sequence[float] | None = DEFAULT_GRID) -> Curve:
    """Quality and PGR on ``grid`` (default 0, 0.1, ..., 1); ``grid=None`` gives every k/n."""
    return _curve(*_cumulative(win_rates, strong_q, weak_q), grid)


def apgr(win_rates, strong_q, weak_q, grid: Sequence[float] | None = DEFAULT_GRID) -> float:
    """Average performance gap recovered: trapezoid area under PGR over ``grid``."""
    return pgr_curve(win_rates, strong_q, weak_q, grid).area()


def _cpt_from_cum(cum: np.ndarray, total: float, target: float) -> float:
    t = float(target) if isinstance(target, (int, float, np.number)) and not isinstance(target, bool) else None
    if t is None or not 0.0 <= t <= 1.0:
        raise BadInputError(f"CPT target must be a PGR fraction in [0, 1] (0.5 for 50%), got {target!r}")
    hit = np.flatnonzero(cum / total >= t - 1e-12)
    return float(hit[0] / (len(cum) - 1))


def cpt(win_rates, strong_q, weak_q, target: float) -> float:
    """Smallest strong-call fraction k/n (k = 0..n) at which PGR >= ``target`` (e.g. 0.5)."""
    cum, _, total = _cumulative(win_rates, strong_q, weak_q)
    return _cpt_from_cum(cum, total, target)


def optimal_curve(evalset: EvalSet, grid: Sequence[float] | None = DEFAULT_GRID) -> Curve:
    """Oracle router: prompts with the largest strong-minus-weak quality gain go to strong first."""
    return pgr_curve(evalset.strong - evalset.weak, evalset.strong, evalset.weak, grid)


@dataclass
class RandomBaseline:
    """A router with uniformly random win rates, over several seeds."""

    apgr_mean: float
    apgr_std: float
    apgrs: np.ndarray
    curve: Curve  # mean over seeds
    quality_std: np.ndarray
    pgr_std: np.ndarray


def random_baseline(evalset: EvalSet, seeds: int | Iterable[int] = 10,
                    grid: Sequence[float] | None = DEFAULT_GRID) -> RandomBaseline:
    """Random routing: ``seeds`` is a count (seeds 0..n-1) or explicit seeds. Std is over seeds (ddof=0)."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise BadInputError("random_baseline needs at least one seed")
    curves = [pgr_curve(np.random.default_rng(s).random(len(evalset)), evalset.strong, evalset.weak, grid)
              for s in seed_list]
    areas = np.array([c.area() for c in curves])
    q = np.stack([c.quality for c in curves]); p = np.stack([c.pgr for c in curves])
    mean = Curve(curves[0].strong_fraction, q.mean(0), p.mean(0))
    return RandomBaseline(float(areas.mean()), float(areas.std()), areas, mean, q.std(0), p.std(0))


@dataclass(frozen=True)
class CostSavings:
    """Cost of routing at ``strong_fraction`` relative to sending every prompt to strong."""

    strong_fraction: float
    cost_ratio: float  # (c·p_s + (1-c)·p_w) / p_s
    savings: float  # 1 - cost_ratio
    times_cheaper: float  # 1 / cost_ratio

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


def cost_savings(strong_fraction: float, prices: Mapping[str, float] | Sequence[float] | None = None
                 ) -> CostSavings:
    """Savings vs. all-strong for a strong-call fraction; prices are per million tokens
    (``{"strong": p_s, "weak": p_w}`` or ``(p_s, p_w)``; default GPT-4 $24.7, Mixtral $0.24)."""
    p_s, p_w = _prices(prices)
    c = float(strong_fraction)
    if math.isnan(c):
        return CostSavings(c, math.nan, math.nan, math.nan)
    if not 0.0 <= c <= 1.0:
        raise BadInputError(f"strong_fraction must be within [0, 1], got {strong_fraction!r}")
    ratio = (c * p_s + (1 - c) * p_w) / p_s
    return CostSavings(c, ratio, 1 - ratio, 1 / ratio if ratio > 0 else math.inf)


def _prices(prices) -> tuple[float, float]:
    if prices is None:
        prices = DEFAULT_PRICES
    p_s, p_w = (prices["strong"], prices["weak"]) if isinstance(prices, Mapping) else prices
    if not (p_s > 0 and p_w >= 0):
        raise BadInputError(f"prices need strong > 0 and weak >= 0, got {p_s!r}, {p_w!r}")
    return float(p_s), float(p_w)



def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v



@dataclass
class EvalResult:
    """Metrics of one router on one benchmark; ``to_dict()`` is JSON-able (NaN becomes null)."""

    router: str
    benchmark: str
    n: int
    apgr: float
    cpt50: float
    cpt80: float
    curve: Curve
    quality_strong: float
    quality_weak: float
    savings50: CostSavings
    savings80: CostSavings
    fine_curve: Curve | None = None  # every k/n, for plots
    data_hash: str = ""

    def to_dict(self, include_fine_curve: bool = False) -> dict:
        out = {k: _jsonable(getattr(self, k)) for k in
               ("router", "benchmark", "n", "apgr", "cpt50", "cpt80", "quality_strong",
                "quality_weak", "data_hash")}
        out["curve"] = self.curve.to_dict()
        out["savings50"], out["savings80"] = self.savings50.to_dict(), self.savings80.to_dict()
        if include_fine_curve and self.fine_curve is not None:
            out["fine_curve"] = self.fine_curve.to_dict()
        return out


def evaluate(win_rates, evalset: EvalSet, router_name: str, *,
             prices: Mapping[str, float] | Sequence[float] | None = None,
             grid: Sequence[float] = DEFAULT_GRID) -> EvalResult:
    """All metrics of a router's win rates (one per prompt of ``evalset``, same order)."""
    w = np.asarray(win_rates, dtype=float)
    if w.shape != (len(evalset),):
        raise BadInputError(f"{router_name}: expected {len(evalset)} win rates for "
                            f"{evalset.name}, got shape {w.shape}")
    cum, r_weak, total = _cumulative(w, evalset.strong, evalset.weak)
    c50, c80 = _cpt_from_cum(cum, total, 0.5), _cpt_from_cum(cum, total, 0.8)
    curve = _curve(cum, r_weak, total, grid)
    return EvalResult(router_name, evalset.name, len(evalset), curve.area(), c50, c80, curve,
                      evalset.quality_strong, evalset.quality_weak, cost_savings(c50, prices),
                      cost_savings(c80, prices), _curve(cum, r_weak, total, None), evalset.data_hash)



def bootstrap_apgr(win_rates, evalset: EvalSet, *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of APGR, resampling questions with replacement.

    Resamples whose strong and weak means coincide (PGR undefined) are skipped."""
    w = np.asarray(win_rates, dtype=float)
    rng = np.random.default_rng(seed)
    n = len(evalset)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        s, k = evalset.strong[idx], evalset.weak[idx]
        if np.isclose(s.mean(), k.mean()):
            continue
        vals.append(apgr(w[idx], s, k))
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


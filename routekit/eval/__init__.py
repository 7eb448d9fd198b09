"""Benchmark evaluation of routers, with the metrics of the RouteLLM paper (Ong et al., ICLR 2025, §3.2).

A router gives every prompt a *win rate* (its estimate that the strong model is needed). For a
strong-call fraction ``c`` the ``round(c·n)`` prompts with the highest win rates go to the strong
model (ties: earlier prompt first), the rest to the weak one. With ``r`` the mean quality:

* ``PGR(c) = (r(router at c) - r(weak)) / (r(strong) - r(weak))`` (performance gap recovered)
* ``APGR`` = trapezoid area under PGR over the grid ``c = 0, 0.1, ..., 1``
* ``CPT(x)`` = the smallest ``c = k/n`` (k = 0..n, exact) at which ``PGR >= x``

``round`` rounds halves up (``c·n = 2.5`` gives 3). Pure numpy + stdlib; matplotlib is imported by
:func:`plot` only.

This module runs evaluations (:func:`evaluate`, :func:`report`, the win-rate cache); the data
loaders are in :mod:`routekit.eval.sets`, the metrics in :mod:`routekit.eval.metrics`, plots in
:mod:`routekit.eval.plot` (all re-exported here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from routekit.eval.metrics import (
    DEFAULT_GRID,
    DEFAULT_PRICES,
    CostSavings,
    Curve,
    EvalResult,
    RandomBaseline,
    apgr,
    bootstrap_apgr,
    cost_savings,
    cpt,
    evaluate,
    optimal_curve,
    pgr_curve,
    random_baseline,
)
from routekit.eval.plot import plot
from routekit.eval.sets import (
    BENCHMARKS,
    DEFAULT_STRONG,
    DEFAULT_WEAK,
    EvalDataError,
    EvalSet,
    load_benchmark,
    load_labelled,
)
from routekit.io import atomic_path
from routekit.router_set import RouterSet
from routekit.routers.length import LengthRouter

__all__ = [
    "DEFAULT_STRONG", "DEFAULT_WEAK", "BENCHMARKS", "DEFAULT_GRID", "DEFAULT_PRICES",
    "EvalDataError", "EvalSet", "Curve", "CostSavings", "RandomBaseline", "EvalResult",
    "load_benchmark", "load_labelled", "pgr_curve", "apgr", "cpt", "evaluate", "optimal_curve",
    "random_baseline", "cost_savings", "plot", "bootstrap_apgr", "report", "format_table",
    "cached_win_rates", "router_cache_key",
]


def report(results: Sequence[EvalResult], evalset: EvalSet, win_rates: Sequence[np.ndarray] | None = None,
           *, random_seeds: int = 10) -> dict:
    """One JSON-able summary of several routers on one benchmark, with the random, length-only (number
    of characters; :class:`~routekit.routers.length.LengthRouter`) and optimal baselines."""
    rnd = random_baseline(evalset, random_seeds)
    opt = optimal_curve(evalset)
    length_rates = LengthRouter().win_rates(evalset.prompts)
    length = evaluate(length_rates, evalset, "length")
    routers = {}
    for i, r in enumerate(results):
        d = r.to_dict()
        if win_rates is not None:
            d["apgr_ci95"] = list(bootstrap_apgr(win_rates[i], evalset))
        routers[r.router] = d
    return {
        "benchmark": evalset.name, "n": len(evalset), "n_dropped_contaminated": evalset.n_dropped_contaminated,
        "strong_model": evalset.strong_model, "weak_model": evalset.weak_model,
        "quality_strong": evalset.quality_strong, "quality_weak": evalset.quality_weak,
        "random": {"apgr_mean": rnd.apgr_mean, "apgr_std": rnd.apgr_std, "seeds": len(rnd.apgrs)},
        "length": {"apgr": length.apgr, "apgr_ci95": list(bootstrap_apgr(length_rates, evalset)),
                   "cpt50": length.cpt50, "cpt80": length.cpt80},
        "optimal": {"apgr": opt.area(), "curve": opt.to_dict()},
        "routers": routers,
    }


def format_table(summary: dict) -> str:
    """A terminal table of :func:`report` output."""
    lines = [f"{summary['benchmark']}: n={summary['n']} (dropped {summary['n_dropped_contaminated']} contaminated), "
             f"strong {summary['quality_strong']:.4f}, weak {summary['quality_weak']:.4f}",
             f"{'router':<28} {'APGR':>7} {'95% CI':>15} {'CPT50':>7} {'CPT80':>7} {'save@CPT50':>11}"]
    for name, d in summary["routers"].items():
        ci = d.get("apgr_ci95")
        ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""
        lines.append(f"{name:<28} {d['apgr']:>7.3f} {ci_s:>15} {100 * d['cpt50']:>6.1f}% {100 * d['cpt80']:>6.1f}% "
                     f"{100 * d['savings50']['savings']:>10.1f}%")
    if "length" in summary and "length" not in summary["routers"]:
        d = summary["length"]
        ci = d["apgr_ci95"]
        ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else ""
        lines.append(f"{'length (characters)':<28} {d['apgr']:>7.3f} {ci_s:>15} {100 * d['cpt50']:>6.1f}% "
                     f"{100 * d['cpt80']:>6.1f}%")
    r = summary["random"]
    lines.append(f"{'random (' + str(r['seeds']) + ' seeds)':<28} {r['apgr_mean']:>7.3f} "
                 f"{'± ' + format(r['apgr_std'], '.3f'):>15}")
    lines.append(f"{'optimal':<28} {summary['optimal']['apgr']:>7.3f}")
    return "\n".join(lines)


def router_cache_key(router) -> str:
    """What a router's win rates depend on: artifact content (or the built-in name), the pair and
    the routekit version (scoring code changes between releases; ``--no-cache`` within one)."""
    from routekit import __version__

    key = router.manifest.content_hash if router.manifest is not None else \
        hashlib.sha256(router.name.encode()).hexdigest()[:16]
    return f"{key}-{router.strong_model}-{router.weak_model}-v{__version__}".replace("/", "_")


def cached_win_rates(routers: Sequence, evalset: EvalSet, cache: Path | None, *, refresh: bool = False,
                     show_progress: bool = True) -> list[np.ndarray]:
    """Win rates of every router on ``evalset``, read from / written to ``cache`` (keyed by benchmark,
    data hash and :func:`router_cache_key`).  Misses are scored together with a
    :class:`~routekit.router_set.RouterSet`, so routers that share an encoder embed the prompts once."""
    paths = [cache / f"{evalset.name}-{evalset.data_hash[:16]}-{router_cache_key(r)}.npy" if cache else None
             for r in routers]
    out = [_read_cached(p, len(evalset.prompts)) if p is not None and not refresh else None for p in paths]
    misses = [i for i, r in enumerate(out) if r is None]
    if misses:
        fresh = RouterSet([routers[i] for i in misses]).win_rates(evalset.prompts, show_progress=show_progress)
        for i, rates in zip(misses, fresh):
            out[i] = rates
            if paths[i] is not None:
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(paths[i], what="win-rate cache file") as tmp:  # never a torn file for the next run
                    np.save(tmp, rates)
    return out


def _read_cached(path: Path, n: int) -> np.ndarray | None:
    """Cached win rates, or None (a miss: scored again and rewritten) when the file is missing or unreadable
    (torn by a crash, written by another version) or does not hold ``n`` numbers."""
    if not path.is_file():
        return None
    try:
        rates = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if rates.shape != (n,) or not np.issubdtype(rates.dtype, np.floating):
        return None
    return rates

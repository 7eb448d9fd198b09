"""Plots of router evaluations (matplotlib, the ``plot`` extra, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from routekit.errors import MissingExtraError
from routekit.eval.metrics import EvalResult, apgr, optimal_curve, random_baseline
from routekit.eval.sets import EvalSet


def require_matplotlib():
    """``matplotlib.pyplot`` on the Agg backend, or :class:`MissingExtraError` (check before long work)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "plot", "plotting evaluation curves") from exc
    return plt


def plot(results: Sequence[EvalResult], evalset: EvalSet, path: str | Path, *,
         random_seeds: int = 10, title: str | None = None) -> Path:
    """Write a PNG of quality vs. % strong calls: each router, strong-only, weak-only, optimal and
    random (mean ± std over ``random_seeds``). Needs matplotlib (``pip install 'routekit[plot]'``)."""
    plt = require_matplotlib()

    fig, ax = plt.subplots(figsize=(8, 5.5))
    try:
        opt = optimal_curve(evalset, None)
        rnd = random_baseline(evalset, random_seeds, None)
        x = 100 * rnd.curve.strong_fraction
        ax.axhline(evalset.quality_strong, color="black", ls="--", lw=1,
                   label=f"strong only ({evalset.strong_model})")
        ax.axhline(evalset.quality_weak, color="black", ls=":", lw=1.2,
                   label=f"weak only ({evalset.weak_model})")
        ax.plot(100 * opt.strong_fraction, opt.quality, color="0.3", ls="-.", lw=1,
                label=f"optimal (APGR {apgr(evalset.strong - evalset.weak, evalset.strong, evalset.weak):.3f})")
        ax.plot(x, rnd.curve.quality, color="0.55", lw=1,
                label=f"random, {len(rnd.apgrs)} seeds (APGR {rnd.apgr_mean:.3f} ± {rnd.apgr_std:.3f})")
        ax.fill_between(x, rnd.curve.quality - rnd.quality_std, rnd.curve.quality + rnd.quality_std,
                        color="0.55", alpha=0.25, lw=0)
        for r in results:
            c = r.fine_curve or r.curve
            ax.plot(100 * c.strong_fraction, c.quality, lw=1.8,
                    label=f"{r.router} (APGR {r.apgr:.3f}, CPT50 {100 * r.cpt50:.0f}%)")
        ax.set_title(title or f"{evalset.name}: quality vs. strong-model calls (n={len(evalset)})")
        ax.set_xlabel(f"% of calls to the strong model ({evalset.strong_model})")
        ax.set_ylabel("mean quality" + (" (MT Bench score)" if evalset.name == "mt-bench" else " (accuracy)"))
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out


#!/usr/bin/env python
"""The baselines next to the default router: LiteLLM's rule-based complexity router, length, random.

    python bench/litellm_baseline.py [--data ../shared/data] [--out docs/baselines.md]

LiteLLM's complexity router (``litellm.router_strategy.complexity_router.ComplexityRouter``; the
default ``heuristic`` classifier: seven weighted keyword and length rules, no model, no network)
puts each prompt in a tier SIMPLE < MEDIUM < COMPLEX < REASONING. It is scored here on

* the shipped prompt suites (``routekit/suites/*.jsonl``): AUC of its tier (ties count half) and of
  its tier with the rule score as tie-break, and the share of each side it sends to strong when
  its two top tiers (COMPLEX, REASONING) are the strong model — per band for a banded suite;
* the dev benchmarks (``$ROUTEKIT_DATA/dev/routellm-evals``): APGR with a percentile bootstrap
  interval, ranking by tier then rule score; prompts still tied are ordered at random, and the
  APGR shown is the mean over 10 such orders (the interval uses the first);

beside the default router (``routekit.load("default")``), the length-only baseline (number of
characters, ``routekit.load("length")``) and the random router. It writes a markdown table to
``--out`` and prints it. litellm is a bench-only dependency (``pip install litellm``); routekit
never imports it at run time. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set before the import so
litellm reads its bundled price map instead of fetching one.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from _common import DATA, uptime

import routekit
from routekit import artifact
from routekit import eval as ev
from routekit.errors import BadInputError, RoutekitError
from routekit.eval.suite import auc, format_band_table, load_suites, suite_report

#: LiteLLM's heuristic tiers, lowest first (its classify() returns one of these).
TIERS = ("SIMPLE", "MEDIUM", "COMPLEX", "REASONING")
#: The tiers counted as "strong" (the top two).
STRONG_TIERS = ("COMPLEX", "REASONING")
LITELLM = "litellm-complexity"


class LiteLLMTiers:
    """LiteLLM's complexity router behind the few attributes :func:`suite_report` reads.

    Its "win rate" is ``tier + squash(rule score)``: the tier ordinal (0..3) decides, the weighted
    rule score (tanh-squashed into [0, 0.99)) orders prompts within a tier. It is a rank key, not
    a probability; ``default_threshold`` (2.0) sends the top two tiers to strong."""

    name = LITELLM
    default_threshold = float(TIERS.index(STRONG_TIERS[0]))

    def __init__(self):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
            from litellm.router_strategy.complexity_router.complexity_router import ComplexityRouter
        except ImportError as exc:
            raise SystemExit(f"litellm_baseline.py: needs litellm (pip install litellm): {exc}") from None

        self.version = getattr(litellm, "__version__", None) or _dist_version("litellm")
        self._router = ComplexityRouter(model_name="x", ctx=None)
        self.seconds = 0.0
        self.calls = 0

    def classify(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tier ordinal, rule score) per prompt."""
        tiers, scores = np.empty(len(prompts)), np.empty(len(prompts))
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            tier, score, _ = self._router.classify(p)
            tiers[i], scores[i] = TIERS.index(getattr(tier, "value", str(tier))), score
        self.seconds += time.perf_counter() - t0
        self.calls += len(prompts)
        return tiers, scores

    def win_rates(self, prompts: Sequence[str]) -> np.ndarray:
        tiers, scores = self.classify(prompts)
        return tiers + 0.495 * (np.tanh(scores) + 1.0)

    def threshold_for(self, strong_fraction: float) -> float:
        raise BadInputError("LiteLLM's complexity router has tiers, not a calibrated threshold")


def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _jitter(key: np.ndarray, seed: int) -> np.ndarray:
    """``key`` with exact ties put in a random order (the gaps between distinct keys are far larger)."""
    return key + 1e-9 * np.random.default_rng(seed).random(len(key))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def suites_table(routers, lite: LiteLLMTiers) -> tuple[list[str], dict]:
    """Markdown lines and the raw reports for every shipped suite."""
    lines, raw = [], {}
    for suite in load_suites("all"):
        rates = [r.win_rates(suite.prompts) for r in routers]
        key = lite.win_rates(suite.prompts)
        reports = [suite_report(r, suite, w) for r, w in zip(routers, rates)]
        lrep = suite_report(lite, suite, key)
        lrep["auc_tier_only"] = round(auc(np.floor(key), suite.hard), 4)
        reports.append(lrep)
        raw[suite.name] = reports
        lines += [f"### Suite `{suite.name}` ({len(suite)} prompts, {int(suite.hard.sum())} hard)", "",
                  "| router | AUC hard > trivial | AUC, tier only | trivial → strong | hard → strong |",
                  "|---|---|---|---|---|"]
        for r in reports:
            d = r.get("default") or {}
            tier_auc = f"{r['auc_tier_only']:.3f}" if "auc_tier_only" in r else ""
            lines.append(f"| {r['router']} | {r['auc']:.3f} | {tier_auc} | {_pct(d.get('trivial_to_strong'))} | "
                         f"{_pct(d.get('hard_to_strong'))} |")
        bands = format_band_table(reports)
        if bands:
            lines += ["", f"By band (default threshold; {LITELLM}: COMPLEX or REASONING = strong):", "", bands]
        lines.append("")
    return lines, raw


def benchmarks_table(routers, lite: LiteLLMTiers, data: Path, *, n_boot: int, tie_seeds: int) -> tuple[list[str], dict]:
    names = [r.name for r in routers] + [LITELLM]
    raw: dict = {}
    for bench in ev.BENCHMARKS:
        evalset = ev.load_benchmark(bench, data)
        rates = ev.cached_win_rates(routers, evalset, artifact.cache_dir() / "winrates", show_progress=False)
        key = lite.win_rates(evalset.prompts)
        row = {"n": len(evalset)}
        try:
            for r, w in zip(routers, rates):
                row[r.name] = (ev.evaluate(w, evalset, r.name).apgr, ev.bootstrap_apgr(w, evalset, n_boot=n_boot))
            ties = [ev.evaluate(_jitter(key, s), evalset, LITELLM).apgr for s in range(tie_seeds)]
            row[LITELLM] = (float(np.mean(ties)), ev.bootstrap_apgr(_jitter(key, 0), evalset, n_boot=n_boot))
            row["random (mean of 10 seeds)"] = (ev.random_baseline(evalset, 10).apgr_mean, None)
        except BadInputError as exc:  # strong and weak tie on a tiny set: APGR undefined
            row = {"n": len(evalset), "undefined": str(exc)}
        raw[bench] = row
    names.append("random (mean of 10 seeds)")
    lines = ["| router | " + " | ".join(f"{b} APGR [95% CI] (n = {raw[b]['n']})" for b in ev.BENCHMARKS) + " |",
             "|---" * (len(ev.BENCHMARKS) + 1) + "|"]
    for name in names:
        cells = []
        for b in ev.BENCHMARKS:
            if "undefined" in raw[b]:
                cells.append("undefined¹")
                continue
            a, ci = raw[b][name]
            cells.append(f"{a:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [f"¹ {b}: {raw[b]['undefined']}" for b in ev.BENCHMARKS if "undefined" in raw[b]]
    return lines + ([""] + notes if notes else []), raw


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="litellm_baseline.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: %(default)s)")
    p.add_argument("--router", default="default", help="the routekit router to compare (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("docs/baselines.md"),
                   help="markdown file to write (default: %(default)s)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--tie-seeds", type=int, default=10,
                   help="random orders of LiteLLM's tied prompts averaged for its APGR (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        main_router = routekit.load(args.router)
        routers = [main_router, routekit.load("length"), routekit.load("random")]
        lite = LiteLLMTiers()
        suite_lines, _ = suites_table(routers, lite)
        bench_lines, _ = benchmarks_table(routers, lite, args.data / "dev" / "routellm-evals",
                                          n_boot=args.boot, tie_seeds=args.tie_seeds)
    except RoutekitError as exc:
        print(f"litellm_baseline.py: error: {exc}", file=sys.stderr)
        return 2
    folder = main_router.path.name if main_router.path else main_router.name
    ms = 1e3 * lite.seconds / max(lite.calls, 1)
    md = "\n".join([
        "# Baselines: the default router next to a ruler, a coin and LiteLLM's complexity router", "",
        f"Generated by `python bench/litellm_baseline.py` on {_dt.date.today().isoformat()}. Rows: "
        f"`{args.router}` (artifact `{folder}`); `length`, the length-only baseline (ranks prompts by their "
        "number of characters, no model); `random` (seed 0 on the suites); "
        f"`{LITELLM}`, LiteLLM {lite.version}'s `ComplexityRouter` with its default heuristic classifier "
        "(offline, bundled price map). LiteLLM's tiers are its ranking (ties: its rule score, then random "
        "order for the benchmarks, APGR averaged over "
        f"{args.tie_seeds} orders); its strong side is COMPLEX + REASONING. The other routers' strong side is "
        "their default threshold (calibrated on the reference traffic mix). 95 % intervals: percentile "
        f"bootstrap over questions ({args.boot} resamples).", "",
        "## Prompt suites", "", *suite_lines,
        "## Dev benchmarks (RouteLLM evals, contaminated prompts dropped)", "", *bench_lines, "",
        f"LiteLLM classified {lite.calls} prompts in {lite.seconds:.1f} s ({ms:.2f} ms a prompt; box: "
        f"`{uptime()}`, shared with other jobs, so not a latency measurement).", "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Budget control on shifting traffic: routekit.BudgetController vs a fixed calibrated threshold.

    python bench/budget_sim.py [--router default] [--target 0.3] [--requests 18000] [--json out.json]

The stream switches every ``--segment`` (2,000) requests between everyday prompts (the everyday
suite and export/data/everyday_*.jsonl), GSM8K training questions and Arena-Hard prompts, in that
order, drawn with a fixed seed.  The router's win rates are computed once per prompt (cached under
routekit's cache folder, keyed by the artifact's content hash) and the simulation runs on them.

Printed: the strong share of every 1,000-request window (sliding, each start >= ``--skip``) with
the controller and with the router's calibrated threshold for the same target (how far a fixed
threshold drifts), per-segment shares, and the largest one-request threshold step.  ``--latency``
also measures route() with and without the controller (interleaved, same prompts) and, for a
linear router, explain(); the box may be shared with other jobs: the load average is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import routekit
from routekit.artifact.locate import cache_dir
from routekit.calibrate import load_prompt_file
from routekit.control.budget import BudgetController
from routekit.eval import router_cache_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVERYDAY = [ROOT / "routekit" / "suites" / "everyday.jsonl", ROOT / "export" / "data" / "everyday_train.jsonl",
            ROOT / "export" / "data" / "everyday_calib.jsonl"]


def pools(data: Path) -> dict[str, list[str]]:
    return {
        "everyday": [p for f in EVERYDAY for p in load_prompt_file(f)],
        "gsm8k": load_prompt_file(data / "unlabelled" / "gsm8k_train_questions.jsonl"),
        "arena": load_prompt_file(data / "calibration" / "prompts.jsonl"),
    }


def pool_rates(router, pools_: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Win rates of every pool prompt, cached by router and pool content."""
    digest = hashlib.sha256(json.dumps(pools_, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "bench" / f"budget_sim-{digest}-{router_cache_key(router)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in pools_}
    out = {k: router.win_rates(v, show_progress=True) for k, v in pools_.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def stream(rates: dict[str, np.ndarray], n: int, segment: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    order = ["everyday", "gsm8k", "arena"]
    out, labels = [], []
    for i in range(0, n, segment):
        name = order[(i // segment) % len(order)]
        k = min(segment, n - i)
        pool = rates[name]
        out.append(pool[rng.choice(len(pool), size=k, replace=k > len(pool))])
        labels.append(name)
    return np.concatenate(out), labels


def window_shares(strong: np.ndarray, width: int, skip: int) -> np.ndarray:
    c = np.concatenate([[0], np.cumsum(strong, dtype=np.int64)])
    starts = np.arange(skip, len(strong) - width + 1)
    return (c[starts + width] - c[starts]) / width


def simulate(router, wr: np.ndarray, target: float, **kw) -> tuple[np.ndarray, np.ndarray]:
    ctl = BudgetController(router, target_strong_share=target, **kw)
    strong, thr = np.zeros(len(wr), bool), np.zeros(len(wr))
    for i, w in enumerate(wr):
        d = ctl.decide(float(w))
        strong[i], thr[i] = d.is_strong, d.threshold
    return strong, thr


def latency(router, prompts: list[str], target: float, rounds: int) -> dict:
    """p50 of route() alone and through the controller, interleaved prompt by prompt."""
    ctl = BudgetController(router, target_strong_share=target)
    for p in prompts[:10]:
        router.route(p), ctl.route(p)
    plain, wrapped, diff = [], [], []
    for r in range(rounds):
        for i, p in enumerate(prompts):  # alternate which goes first: neither gets the warmer cache
            pair = []
            for fn in ((router.route, ctl.route) if (i + r) % 2 == 0 else (ctl.route, router.route)):
                t = time.perf_counter()
                fn(p)
                pair.append((fn, time.perf_counter() - t))
            a_, b_ = (pair[0][1], pair[1][1]) if pair[0][0] == router.route else (pair[1][1], pair[0][1])
            plain.append(a_)
            wrapped.append(b_)
            diff.append(b_ - a_)
    rates = router.win_rates(prompts)
    t = time.perf_counter()
    for w in np.tile(rates, 20):
        ctl.decide(float(w))
    decide_us = 1e6 * (time.perf_counter() - t) / (20 * len(rates))
    a, b = statistics.median(plain), statistics.median(wrapped)
    out = {"route_p50_ms": round(1e3 * a, 3), "controller_route_p50_ms": round(1e3 * b, 3),
           "overhead_p50_pct": round(100 * (b - a) / a, 2),
           "paired_overhead_p50_ms": round(1e3 * statistics.median(diff), 4), "decide_us": round(decide_us, 2),
           "decide_over_route_pct": round(100 * decide_us * 1e-6 / a, 2), "n": len(plain)}
    if hasattr(router, "explain"):
        try:
            router.explain(prompts[0])
        except routekit.BadInputError:
            return out
        lat, extra = [], []
        for p in prompts:  # interleaved with route() on the same prompt: the explain work on top of scoring
            t = time.perf_counter()
            router.explain(p)
            t1 = time.perf_counter()
            router.route(p)
            t2 = time.perf_counter()
            lat.append(t1 - t)
            extra.append((t1 - t) - (t2 - t1))
        out["explain_p50_ms"] = round(1e3 * statistics.median(lat), 3)
        out["explain_p90_ms"] = round(1e3 * float(np.quantile(lat, 0.9)), 3)
        out["explain_minus_route_p50_ms"] = round(1e3 * statistics.median(extra), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--router", default="default", help="router to simulate (default: %(default)s)")
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: $ROUTEKIT_DATA)")
    ap.add_argument("--target", type=float, default=0.3, help="target strong share (default: %(default)s)")
    ap.add_argument("--requests", type=int, default=18000, help="stream length (default: %(default)s)")
    ap.add_argument("--segment", type=int, default=2000, help="requests per traffic segment (default: %(default)s)")
    ap.add_argument("--width", type=int, default=1000, help="window width (default: %(default)s)")
    ap.add_argument("--skip", type=int, default=500, help="first window start (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="stream seed (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=5, help="streams to simulate, seeds seed..seed+n-1 (default: %(default)s)")
    ap.add_argument("--memory", type=int, default=None, help="controller buffer (default: the controller's)")
    ap.add_argument("--horizon", type=float, default=None, help="controller horizon (default: the controller's)")
    ap.add_argument("--latency", action="store_true", help="also time route() with/without the controller and explain")
    ap.add_argument("--latency-prompts", type=int, default=200, help="prompts timed (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (default: print only)")
    args = ap.parse_args(argv)

    router = routekit.load(args.router)
    ps = pools(args.data)
    rates = pool_rates(router, ps)
    kw = {k: v for k, v in (("memory", args.memory), ("horizon", args.horizon)) if v is not None}
    fixed_thr = router.threshold_for(args.target)
    out: dict = {"router": router.name, "target": args.target, "pool_sizes": {k: len(v) for k, v in ps.items()},
                 "pool_share_at_fixed_threshold": {k: round(float((v >= fixed_thr).mean()), 4) for k, v in rates.items()},
                 "fixed_threshold": fixed_thr, "controller": kw or "defaults", "seeds": []}
    print(f"router {router.name}; fixed (calibrated) threshold for {args.target:.0%}: {fixed_thr:.4f}; "
          f"share per pool at it: {out['pool_share_at_fixed_threshold']}")
    for seed in range(args.seed, args.seed + args.seeds):
        wr, labels = stream(rates, args.requests, args.segment, seed)
        strong, thr = simulate(router, wr, args.target, **kw)
        ctl = window_shares(strong, args.width, args.skip)
        fixed = window_shares(wr >= fixed_thr, args.width, args.skip)
        seg = [round(float(strong[i:i + args.segment].mean()), 4) for i in range(0, len(wr), args.segment)]
        seg_fixed = [round(float((wr[i:i + args.segment] >= fixed_thr).mean()), 4)
                     for i in range(0, len(wr), args.segment)]
        row = {"seed": seed, "controller_window_min": float(ctl.min()), "controller_window_max": float(ctl.max()),
               "controller_max_dev_pts": round(100 * float(np.abs(ctl - args.target).max()), 2),
               "fixed_window_min": float(fixed.min()), "fixed_window_max": float(fixed.max()),
               "fixed_max_dev_pts": round(100 * float(np.abs(fixed - args.target).max()), 2),
               "overall_share": round(float(strong.mean()), 4),
               "max_threshold_step": round(float(np.abs(np.diff(thr)).max()), 5),
               "segments": labels, "segment_share": seg, "segment_share_fixed": seg_fixed}
        out["seeds"].append(row)
        print(f"seed {seed}: controller windows {row['controller_window_min']:.3f}..{row['controller_window_max']:.3f} "
              f"(max |dev| {row['controller_max_dev_pts']} pts); fixed threshold windows "
              f"{row['fixed_window_min']:.3f}..{row['fixed_window_max']:.3f} (max |dev| {row['fixed_max_dev_pts']} pts); "
              f"largest threshold step {row['max_threshold_step']}")
    worst = max(r["controller_max_dev_pts"] for r in out["seeds"])
    out["controller_worst_dev_pts"] = worst
    out["target_met"] = worst <= 3.0
    print(f"windows of {args.width} after {args.skip}: controller worst |dev| {worst} pts "
          f"({'MET' if worst <= 3.0 else 'NOT MET'} ±3); fixed threshold worst "
          f"{max(r['fixed_max_dev_pts'] for r in out['seeds'])} pts")
    if args.latency:
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        sample = ps["everyday"][:args.latency_prompts // 2] + ps["arena"][:args.latency_prompts // 2]
        out["latency"] = latency(router, sample, args.target, rounds=2) | {"uptime": load}
        print(f"latency ({load}): {out['latency']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

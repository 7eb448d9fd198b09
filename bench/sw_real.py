#!/usr/bin/env python
"""Measure a real SW artifact: latency, fast-vs-exact error and dev APGR next to an MF artifact.

    python bench/sw_real.py [--sw sw] [--mf mf] [--data ../shared/data]

* exact-mode single-prompt latency, p50 over ``--n`` calibration prompts: scoring given an embedding
  (similarities + weighted counts + Newton) and end to end (``router.win_rate(prompt)``);
* fast (FAISS top-k + remainder) vs exact: mean / max |ΔP| on the dev MMLU prompts;
* dev APGR on MMLU and GSM8K for exact, fast and the MF artifact (and a few SW weightings, for
  information only: the shipped weighting is chosen by cross-validation on training data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

import routekit
from routekit.calibrate import load_prompt_file
from routekit.eval import evaluate, load_benchmark


def p50_ms(fn, items, warmup=5):
    for it in items[:warmup]:
        fn(it)
    lat = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        lat.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(lat), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sw", default="sw")
    ap.add_argument("--mf", default="mf")
    ap.add_argument("--data", default=os.environ.get("ROUTEKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k", type=int, nargs="*", default=[64, 256, 1024])
    ap.add_argument("--variants", action="store_true", help="also report dev APGR of other SW weightings")
    args = ap.parse_args()
    out: dict = {"uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}

    sw = routekit.load(args.sw)
    out["sw"] = {"path": args.sw, "weighting": sw.sw.weighting, "gamma": sw.sw.gamma, "prompts": sw.sw.n_prompts,
                 "dense": sw.sw.dense, "strong_tier": sw.strong_tier, "weak_tier": sw.weak_tier}
    cal = load_prompt_file(Path(args.data) / "calibration" / "prompts.jsonl")[: args.n]
    emb = sw.encoder(cal)
    out["latency_exact_p50_ms"] = {
        "scoring_given_embedding": p50_ms(lambda e: sw.scores(e[None]), list(emb)),
        "end_to_end_win_rate": p50_ms(sw.win_rate, cal),
    }
    fast = {k: routekit.load(args.sw, mode="fast", k=k) for k in args.k}
    out["latency_fast_p50_ms_given_embedding"] = {
        str(k): p50_ms(lambda e, r=r: r.scores(e[None]), list(emb)) for k, r in fast.items()}

    mf = routekit.load(args.mf)
    same_encoder = mf.manifest.files[mf.manifest["encoder"]["file"]]["sha256"] == \
        sw.manifest.files[sw.manifest["encoder"]["file"]]["sha256"]
    out["mf"] = {"path": args.mf, "same_encoder_as_sw": same_encoder}
    out["latency_mf_p50_ms"] = {"end_to_end_win_rate": p50_ms(mf.win_rate, cal)}

    dev = Path(args.data) / "dev" / "routellm-evals"
    out["dev"] = {}
    for bench in ("mmlu", "gsm8k"):
        ev = load_benchmark(bench, dev)
        e = sw.encoder(ev.prompts)
        res = {"n": len(ev)}
        p_exact = sw.scores(e)
        res["sw_exact"] = evaluate(p_exact, ev, "sw-exact").apgr
        for k, r in fast.items():
            p_fast = r.scores(e)
            d = np.abs(p_fast - p_exact)
            res[f"sw_fast_k{k}"] = evaluate(p_fast, ev, f"sw-fast-k{k}").apgr
            res[f"fast_k{k}_abs_dP"] = {"mean": float(d.mean()), "max": float(d.max())}
        p_mf = mf.scores(e) if same_encoder else mf.win_rates(ev.prompts)
        res["mf"] = evaluate(p_mf, ev, "mf").apgr
        res["spearman_sw_mf"] = float(np.corrcoef(np.argsort(np.argsort(p_exact)), np.argsort(np.argsort(p_mf)))[0, 1])
        res["sw_exact_win_rate_range"] = [float(p_exact.min()), float(np.median(p_exact)), float(p_exact.max())]
        if args.variants:
            for weighting, gamma in [("paper", 10.0), ("paper", 1e3), ("paper", 1e4), ("paper", 1e6),
                                     ("reference", 10.0), ("reference", 1e3), ("reference", 1e4)]:
                r = routekit.load(args.sw, weighting=weighting, gamma=gamma)
                res[f"sw_exact_{weighting}_{gamma:g}"] = evaluate(r.scores(e), ev, "v").apgr
        out["dev"][bench] = res
    out["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

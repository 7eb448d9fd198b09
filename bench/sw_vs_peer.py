#!/usr/bin/env python
"""routekit SW scoring vs RouteLLM's own SW router, same battle count and embedding dimension.

    python bench/sw_vs_peer.py            # routekit only
    python bench/sw_vs_peer.py --peer     # then RouteLLM 0.2.0's SWRankingRouter in a subprocess

Setup (not timed), like ``../shared/bench/peer/bench_peer.py``: 55,000 synthetic battles between 64
models with latent Elo strengths (popularity-skewed pairings, Davidson ties), one random unit
1536-d prompt embedding per battle, Bradley–Terry ratings -> 10 tiers.  Timed: routekit's exact
SW scoring *given an embedding* (similarity to all 55k prompts + weighted tier-pair counts + Newton
BT solve; ``--precision``: int8 (default) or float32 similarities), RouteLLM's weighting
``10·10^(s/max s)``, p50 over ``--n`` random unit query vectors.
The peer figure also excludes its embedding call (stubbed), so both are pure scoring.
``--peer`` runs ``bench_peer.py --quick --only sw`` right after (20 timed requests) and prints both
p50s and their ratio; compare them only within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import PEER_PY, PEER_SCRIPT, p50, uptime  # noqa: E402 - bench/ is on sys.path
from peer_compare import synthetic_battles  # noqa: E402

from routekit.routers.sw.model import SWModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--battles", type=int, default=55_000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--n", type=int, default=200, help="timed queries")
    ap.add_argument("--peer", action="store_true", help="run RouteLLM's SW bench right after, in a subprocess")
    ap.add_argument("--fast", action="store_true",
                    help="also time mode='fast' on an IVF index (nlist 256, nprobe 16) and its |ΔP| vs exact")
    ap.add_argument("--precision", choices=("int8", "float32"), default="int8",
                    help="exact mode's similarity pass (default int8, the router's default)")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads for the int8 pass")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    from routekit_export.sw import compute_tiers, model_ratings

    res: dict = {"uptime_before": uptime(), "battles": args.battles, "dim": args.dim}
    t0 = time.perf_counter()
    a, b, outcome, _ = synthetic_battles(args.battles)
    tiers = compute_tiers(model_ratings(a, b, outcome, 64), 10)
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((args.battles, args.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    model = SWModel(emb, np.arange(args.battles), tiers[a], tiers[b], outcome, 10,
                    weighting="reference", gamma=10.0, precision=args.precision, threads=args.threads)
    fast = None
    if args.fast:
        import faiss

        t1 = time.perf_counter()
        quant = faiss.IndexFlatIP(args.dim)
        quant.add(emb[rng.choice(args.battles, 256, replace=False)])  # sampled centroids (no k-means)
        ivf = faiss.IndexIVFFlat(quant, args.dim, 256, faiss.METRIC_INNER_PRODUCT)
        ivf.is_trained = True
        ivf.add(emb)
        ivf.nprobe = 16
        fast = SWModel(emb, np.arange(args.battles), tiers[a], tiers[b], outcome, 10,
                       weighting="reference", gamma=10.0, mode="fast", k=256, index=ivf)
        res["fast_setup_s"] = round(time.perf_counter() - t1, 2)
    del emb
    res["setup_s"] = round(time.perf_counter() - t0, 2)
    strong, weak = 9, 7  # top tier vs an upper-middle one (the cost does not depend on the pair)
    q = rng.standard_normal((args.n + 5, args.dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for v in q[:5]:  # warm-up
        model.scores(v[None], strong, weak)
    lat, lat_sim = [], []
    for v in q[5:]:
        t = time.perf_counter()
        model.scores(v[None], strong, weak)
        lat.append(time.perf_counter() - t)
    for v in q[5:55]:
        t = time.perf_counter()
        model._sims(v[None])
        lat_sim.append(time.perf_counter() - t)
    res["routekit"] = {"mode": "exact", "p50_ms": p50(lat), "p90_ms": round(1e3 * float(np.quantile(lat, 0.9)), 3),
                       "similarity_only_p50_ms": p50(lat_sim), "n": len(lat),
                       "storage": f"{model.n_prompts} x {model.dim}, similarities in {model.precision}, count path "
                                  f"{'dense' if model.dense else 'entry list'}",
                       "sample_win_rate": float(model.scores(q[5][None], strong, weak)[0])}
    if fast is not None:
        lat_f, dp = [], []
        for v in q[5:]:
            t = time.perf_counter()
            pf = fast.scores(v[None], strong, weak)[0]
            lat_f.append(time.perf_counter() - t)
            dp.append(abs(pf - model.scores(v[None], strong, weak)[0]))
        res["routekit_fast"] = {"index": "IVFFlat nlist 256 nprobe 16, k 256, moment-matched remainder",
                                "p50_ms": p50(lat_f), "abs_dP_mean": float(np.mean(dp)), "abs_dP_max": float(np.max(dp))}
        print(f"routekit SW fast: p50 {p50(lat_f)} ms, |dP| vs exact mean {np.mean(dp):.2e} max {np.max(dp):.2e}")
    res["uptime_after_routekit"] = uptime()
    print(f"routekit SW exact, {args.battles} battles x {args.dim}-d: p50 {res['routekit']['p50_ms']} ms "
          f"(similarities {res['routekit']['similarity_only_p50_ms']} ms), {len(lat)} queries   [{res['uptime_after_routekit']}]",
          flush=True)
    del model, fast
    gc.collect()

    if args.peer:
        with tempfile.TemporaryDirectory(prefix="sw-peer-") as tmp:
            out = Path(tmp) / "peer.json"
            env = dict(os.environ, PEER_ASSETS=str(Path(tmp) / "peer-assets"))
            cmd = [PEER_PY, PEER_SCRIPT, "--quick", "--only", "sw", "--out", str(out)]
            proc = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0 or not out.is_file():
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"peer bench failed (exit {proc.returncode})")
            peer = json.loads(out.read_text())["routers"]["sw"]
        res["peer"] = {k: peer[k] for k in ("n", "p50_ms", "p90_ms", "battles_after_preprocess", "tiers",
                                            "breakdown_p50_ms", "stopped_by_time_budget")}
        res["uptime_after_peer"] = uptime()
        ratio = peer["p50_ms"] / res["routekit"]["p50_ms"]
        res["ratio_peer_over_routekit"] = round(ratio, 1)
        print(f"RouteLLM SWRankingRouter, {peer['battles_after_preprocess']} battles: p50 {peer['p50_ms']} ms "
              f"(sim {peer['breakdown_p50_ms']['similarity_and_weights']} + BT refit "
              f"{peer['breakdown_p50_ms']['elo_mle_refit']} ms), n {peer['n']}   [{res['uptime_after_peer']}]")
        print(f"ratio (peer p50 / routekit p50): {ratio:.1f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

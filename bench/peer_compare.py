#!/usr/bin/env python
"""``routekit bench`` side by side with RouteLLM 0.2.0, and the project's performance targets.

    python bench/peer_compare.py --quick                 # routekit bench + targets (MET / NOT MET)
    python bench/peer_compare.py --quick --peer          # also RouteLLM's harness, same session

The reference harness (``../shared/bench/peer/bench_peer.py``) runs in its own virtualenv
(``$PEER_PYTHON``, else ``../peer/venv``) right after routekit's timings; compare the figures only
within one run (the machine is shared).  Not part of the routekit package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from _common import PEER_PY, PEER_SCRIPT  # noqa: E402 - bench/ is on sys.path

from routekit import artifact
from routekit.eval import bench
from routekit.routers.sw.model import SWModel


def synthetic_battles(n: int, n_models: int = 64, seed: int = 7):
    """Battles shaped like the reference harness's: latent Elo, popularity-skewed pairs, Davidson
    ties.  Returns (model_a, model_b, outcome 1/0.5/0, latent elo)."""
    rng = np.random.default_rng(seed)
    elo = 1000 + 110 * rng.standard_normal(n_models)
    pop = rng.lognormal(0.0, 1.0, n_models)
    pop /= pop.sum()
    a = rng.choice(n_models, n, p=pop)
    b = rng.choice(n_models, n, p=pop)
    same = a == b
    b[same] = (b[same] + 1) % n_models
    pa, pb = 10 ** (elo[a] / 400), 10 ** (elo[b] / 400)
    tie = 0.857 * np.sqrt(pa * pb)
    u = rng.random(n) * (pa + pb + tie)
    outcome = np.where(u < pa, 1.0, np.where(u < pa + tie, 0.5, 0.0))
    return a, b, outcome, elo


def synthetic_sw(n_battles: int = 55_000, dim: int = 1536, n_models: int = 64, n_tiers: int = 10, seed: int = 7,
                 **options):
    """An SW model over :func:`synthetic_battles` with one random unit prompt embedding per battle;
    tiers = Elo deciles.  ``options`` go to :class:`~routekit.routers.sw.model.SWModel` (e.g. ``precision``)."""
    a, b, outcome, elo = synthetic_battles(n_battles, n_models, seed)
    rng = np.random.default_rng(seed + 1)
    tiers = np.searchsorted(np.quantile(elo, np.linspace(0, 1, n_tiers + 1)[1:-1]), elo)
    emb = rng.standard_normal((n_battles, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return SWModel(emb, np.arange(n_battles), tiers[a], tiers[b], outcome, n_tiers,
                   weighting="reference", gamma=10.0, **options), dim


def _p50(fn, items) -> float:
    return bench._pct(bench.time_calls(fn, items), 50)


def compare(results: dict, *, threads: int | None, quick: bool) -> tuple[list[str], list[str]]:
    peer = results.get("peer") or {}
    lines, targets = [], []
    if "error" in peer:
        lines.append(f"peer harness failed: {peer['error'][-500:]}")
    pr = peer.get("routers", {})
    if pr:
        lines.append(f"peer: routellm {peer.get('versions', {}).get('routellm')}, torch threads "
                 f"{peer.get('threads', {}).get('torch_num_threads')}, load {peer.get('load_before', {}).get('proc_loadavg')}")
    by = {r["router"]: r for r in results["routers"]}
    # SW: exact scoring given an embedding, same battle count and dimension as the peer's
    if "sw" in pr:
        n_b = pr["sw"].get("battles_after_preprocess", 55_000)
        rng = np.random.default_rng(3)
        q = rng.standard_normal((40 if quick else 200, 1536), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        ours, probs = {}, {}
        for precision in ("int8", "float32"):  # exact mode: every battle, similarities in int8 or float32
            model, dim = synthetic_sw(n_b, precision=precision, threads=threads)
            ours[precision] = _p50(lambda v: model.scores(v[None], 9, 7), list(q))
            probs[precision] = model.scores(q, 9, 7)
            del model
        err = np.abs(probs["int8"] - probs["float32"])
        ratio = {p: pr["sw"]["p50_ms"] / t for p, t in ours.items()}
        lines.append(f"SW  {n_b} battles x {dim}-d, scoring given an embedding: routekit exact p50 "
                     f"{ours['int8']:.1f} ms (int8 similarities; float32: {ours['float32']:.1f} ms), RouteLLM p50 "
                     f"{pr['sw']['p50_ms']:.0f} ms -> {ratio['int8']:.0f}x (float32: {ratio['float32']:.0f}x); "
                     f"int8 vs float32 |dP| mean {err.mean():.1e}, max {err.max():.1e}")
        targets.append(f"SW exact >= 100x the reference per request: {ratio['int8']:.0f}x  "
                       f"{'MET' if ratio['int8'] >= 100 else 'NOT MET'} (float32 similarities: {ratio['float32']:.0f}x)")
    # BERT: our BERT router (if any) on the peer's own prompts
    bert = next((r for r in results["routers"] if r["kind"] == "bert"), None)
    if "bert" in pr and bert is not None:
        import routekit

        assets = Path(results["peer_assets"])
        with open(assets / "prompts.jsonl") as f:
            rows = [json.loads(line) for line in f]
        prompts = [r["prompt"] for r in rows if r.get("set") == "timed"][: pr["bert"]["n"]]
        router = routekit.load(bert["router"], threads=threads)
        ours = _p50(router.win_rate, prompts)
        ratio = pr["bert"]["p50_ms"] / ours
        lines.append(f"BERT same {len(prompts)} prompts: routekit p50 {ours:.1f} ms, RouteLLM BERTRouter p50 "
                     f"{pr['bert']['p50_ms']:.0f} ms -> {ratio:.0f}x")
        targets.append(f"BERT >= 20x the reference per request: {ratio:.0f}x  {'MET' if ratio >= 20 else 'NOT MET'}")
    # MF: head given an embedding (theirs excludes an OpenAI round trip; ours needs no network at all)
    mf = by.get("mf")
    if "mf" in pr and mf:
        row = mf["single"].get(64) or mf["single"].get("64")
        lines.append(f"MF  head given an embedding: routekit {row['scoring_given_embedding_p50_ms']:.3f} ms vs RouteLLM "
                     f"{pr['mf']['p50_ms']:.3f} ms (+ one OpenAI embeddings round trip per request, excluded); "
                     f"routekit end to end incl. local encoder at 64 tokens: {row['p50_ms']:.1f} ms")
    for r in results["routers"]:
        row = r["single"].get(64) or r["single"].get("64")
        if r["kind"] == "mf" and row:
            targets.append(f"MF single prompt 64 tokens p50 <= 15 ms: {row['p50_ms']:.1f} ms  "
                           f"{'MET' if row['p50_ms'] <= 15 else 'NOT MET'}")
        if r["kind"] in ("mf", "sw") and r["batched"] and r.get("encoder") == "StaticEncoder":
            targets.append(f"{r['router']} batched throughput vs bare encoder: n/a (static encoder, ~0.1 ms; "
                           f"scoring is the cost) — {max(v['prompts_per_s'] for v in r['batched'].values()):.0f} prompts/s")
        elif r["kind"] in ("mf", "sw") and r["batched"]:
            worst = min(v["fraction_of_encoder"] for v in r["batched"].values())
            targets.append(f"{r['router']} batched throughput >= 90% of bare encoder: worst {100 * worst:.0f}%  "
                           f"{'MET' if worst >= 0.9 else 'NOT MET'}")
        cs = r.get("cold_start", {})
        if "import_s" in cs:
            t = cs["import_s"] + cs["load_s"]
            targets.append(f"{r['router']} import + load <= 1 s: {t:.2f} s {'MET' if t <= 1 else 'NOT MET'}; "
                           f"RSS <= 400 MB: {cs['peak_rss_mb']:.0f} MB {'MET' if cs['peak_rss_mb'] <= 400 else 'NOT MET'}")
    return lines, targets


def peer_assets(out_dir: Path) -> str:
    """Where the reference harness caches its checkpoints and prompts ($PEER_ASSETS, else under --out)."""
    return os.environ.get("PEER_ASSETS") or str(Path(out_dir).resolve() / "peer-assets")


def run_peer(python: str, script: str, quick: bool, out_dir: Path) -> dict:
    out = out_dir / "peer_results.json"
    cmd = [python, script, "--out", str(out)] + (["--quick"] if quick else [])
    env = dict(os.environ, PEER_ASSETS=peer_assets(out_dir))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0 or not out.is_file():
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", action="append", default=None, help="routers to time (default: every shipped one)")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for bench.json (default: %(default)s)")
    ap.add_argument("--peer", action="store_true", help="also run RouteLLM 0.2.0's harness and print ratios")
    ap.add_argument("--peer-python", default=PEER_PY, help="python of a venv with routellm==0.2.0 (default: %(default)s)")
    ap.add_argument("--peer-script", default=PEER_SCRIPT, help="the reference harness (default: %(default)s)")
    args = ap.parse_args(argv)
    routers = args.router or [n for n in artifact.shipped() if n != "default"]
    results = bench.main(routers, threads=args.threads, out=args.out, quick=args.quick)
    if args.peer:
        results["peer"] = run_peer(args.peer_python, args.peer_script, args.quick, args.out)
        results["peer_assets"] = peer_assets(args.out)
    results["peer_lines"], results["targets"] = compare(results, threads=args.threads, quick=args.quick)
    results["loadavg_after"] = os.getloadavg()
    (args.out / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(bench.format_table(results))
    if results.get("peer"):
        print("\n== reference RouteLLM 0.2.0, same session", *results["peer_lines"], sep="\n")
    print("\n== targets", *results["targets"], sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

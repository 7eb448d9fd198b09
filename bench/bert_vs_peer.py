#!/usr/bin/env python
"""routekit's BERT router vs RouteLLM 0.2.0's own ``BERTRouter``: p50 latency per request, one run.

    python bench/bert_vs_peer.py [--router bert] [--baseline OTHER] [--no-peer]

routekit side: ``routekit.load(router)``, ``win_rate(prompt)`` one prompt per call (what a service
does per request), 2 onnxruntime threads, after warm-up on the peer's 50 warm-up prompts; timed on
the peer's 200 timed prompts (``peer-assets/prompts.jsonl``, set ``"timed"``).  Then the peer
harness (``bench_peer.py --quick --only bert``: random-weight bert-base-uncased-shaped classifier,
torch, 2 threads, up to 512 tokens) runs as a subprocess on the first prompts of the same list;
routekit's p50 is also reported on exactly those prompts, and the ratio uses that like-for-like p50;
routekit is timed on them once more right after the peer, to show how much the load moved during the
run.  Compare only numbers from one run: the machine is shared, and the two runtimes need not slow
down by the same factor under contention, so note the load averages printed with the ratio.

``--baseline OTHER`` times a second routekit artifact (e.g. the previously shipped one) on the same
prompts, alternating blocks of requests with ``--router`` so both see the same load; ``--lengths``
adds p50s on prompts of exactly those token counts (``routekit.eval.bench.prompts_with_tokens``).

The two models differ by design: routekit ships a fine-tuned MiniLM-L6 (6 layers × 384, int8,
256 tokens), the reference a BERT-base (12 layers × 768, fp32, 512 tokens).  Token counts of both
are printed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PEER_ASSETS, PEER_PY, PEER_SCRIPT, p50, uptime  # noqa: E402 - bench/ is on sys.path


def pct(lat, q: float) -> float:
    s = sorted(lat)
    return round(1e3 * s[min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1)], 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", default="bert", help="bert artifact folder or shipped name")
    ap.add_argument("--assets", default=os.environ.get("PEER_ASSETS", PEER_ASSETS))
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (the peer uses 2)")
    ap.add_argument("--no-peer", action="store_true", help="time routekit only")
    ap.add_argument("--peer-n", type=int, default=None, help="peer timed requests (default: its --quick count, 30)")
    ap.add_argument("--out", default=None, help="write all figures as JSON here")
    ap.add_argument("--baseline", default=None, help="a second bert artifact timed on the same prompts")
    ap.add_argument("--lengths", default="64,128,256", help="token counts for extra p50s ('' for none)")
    ap.add_argument("--length-n", type=int, default=100, help="prompts per token count")
    args = ap.parse_args()

    import routekit

    rows = [json.loads(line) for line in open(Path(args.assets) / "prompts.jsonl", encoding="utf-8")]
    timed = [r["prompt"] for r in sorted((r for r in rows if r["set"] == "timed"), key=lambda r: r["i"])]
    warm = [r["prompt"] for r in rows if r["set"] == "warmup"]
    sha = hashlib.sha256("\n".join(timed).encode()).hexdigest()
    print(f"load before: {uptime()}", flush=True)

    router = routekit.load(args.router, threads=args.threads)
    enc = router.encoder
    ntok = [len(enc.tokenizer.encode(enc._clean(p)).ids) for p in timed]
    routers = {"routekit": router}
    if args.baseline:
        routers["baseline"] = routekit.load(args.baseline, threads=args.threads)
    for r in routers.values():
        for p in warm:
            r.win_rate(p)
    gc.collect()

    def time_all(items, r=router):
        out = []
        pc = time.perf_counter
        t0 = pc()
        for p in items:
            s = pc()
            r.win_rate(p)
            out.append(pc() - s)
        return out, pc() - t0

    def time_alternating(items, block=25):
        """Latencies per router on ``items``, blocks of requests alternating between the routers."""
        lats, walls = {k: [] for k in routers}, {k: 0.0 for k in routers}
        for s in range(0, len(items), block):
            for k, r in routers.items():
                l, w = time_all(items[s:s + block], r)
                lats[k] += l
                walls[k] += w
                time.sleep(0.02)  # let the other session's idle threads stop spinning
        return lats, walls

    lats, walls = time_alternating(timed)
    lat, wall = lats["routekit"], walls["routekit"]
    ours = {"router": str(router.path), "n": len(lat), "p50_ms": p50(lat), "p90_ms": pct(lat, 90),
            "p99_ms": pct(lat, 99), "mean_ms": round(1e3 * statistics.fmean(lat), 3),
            "req_per_s": round(len(lat) / wall, 2), "threads": args.threads,
            "quantization": router.manifest["encoder"].get("quantization"),
            "max_length": enc.max_length, "tokens_p50": int(statistics.median(ntok)),
            "tokens_mean": round(statistics.fmean(ntok), 1), "tokens_max": max(ntok)}
    print(f"routekit BERT ({ours['quantization']}, {enc.max_length} tokens max, {args.threads} threads): "
          f"n {ours['n']}  p50 {ours['p50_ms']} ms  p90 {ours['p90_ms']} ms  p99 {ours['p99_ms']} ms  "
          f"{ours['req_per_s']} req/s  (tokens p50 {ours['tokens_p50']}, mean {ours['tokens_mean']})", flush=True)
    result = {"prompts_sha256": sha, "routekit": ours}
    if args.baseline:
        b = routers["baseline"]
        bl = lats["baseline"]
        result["baseline"] = {"router": str(b.path), "n": len(bl), "p50_ms": p50(bl), "p90_ms": pct(bl, 90),
                              "quantization": b.manifest["encoder"].get("quantization"),
                              "layers": b.manifest["encoder"].get("layers"),
                              "max_length": b.encoder.max_length}
        print(f"baseline {b.path.name} ({result['baseline']['quantization']}): p50 {p50(bl)} ms  "
              f"p90 {pct(bl, 90)} ms on the same prompts, alternating blocks  "
              f"(routekit / baseline p50: {p50(lat) / p50(bl):.3f})", flush=True)
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    if lengths:
        from routekit.eval.bench import prompts_with_tokens

        result["p50_ms_by_tokens"] = {}
        for nt in lengths:
            items = prompts_with_tokens(enc.tokenizer, nt, args.length_n, seed=nt)
            ll, _ = time_alternating(items)
            result["p50_ms_by_tokens"][nt] = {k: p50(v) for k, v in ll.items()}
            print(f"  {nt:4d} tokens: " + "  ".join(f"{k} p50 {p50(v)} ms" for k, v in ll.items()), flush=True)
    result["load_after_routekit"] = uptime()

    if not args.no_peer:
        gc.collect()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "peer_bert.json"
            cmd = [PEER_PY, PEER_SCRIPT, "--quick", "--only", "bert", "--out", str(out)]
            if args.peer_n:
                cmd += ["--bert-n", str(args.peer_n)]
            env = dict(os.environ, PEER_ASSETS=args.assets)
            print("running peer:", " ".join(cmd), flush=True)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0 or not out.is_file():
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                print("peer run failed", file=sys.stderr)
                return 1
            peer = json.loads(out.read_text())
        pb = peer["routers"]["bert"]
        same_prompts = peer["prompts"]["sha256_timed_pool"] == sha
        n = pb["n"]
        ours_same = p50(lat[:n])
        ratio = pb["p50_ms"] / ours_same
        # routekit again right after the peer, on the peer's prompts: brackets load changes during the run
        lat_after, _ = time_all(timed[:n])
        result["routekit_p50_ms_on_peer_prompts_after_peer"] = p50(lat_after)
        pb_cpu = pb.get("cpu", {})
        result.update({"peer_cpu": pb_cpu, "peer": {k: pb[k] for k in ("n", "n_requested", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                                                   "throughput_req_per_s", "model", "dtype",
                                                   "prompt_tokens_incl_cls_sep", "stopped_by_time_budget")},
                       "peer_load_before": peer["load_before"]["uptime"], "peer_load_after": peer["load_after"]["uptime"],
                       "same_prompt_list": same_prompts, "routekit_p50_ms_on_peer_prompts": ours_same,
                       "speedup_p50": round(ratio, 1)})
        print(f"RouteLLM BERTRouter (torch fp32, {pb['model'].split(',')[0]}...): n {n}  p50 {pb['p50_ms']} ms  "
              f"p90 {pb['p90_ms']} ms  (tokens p50 {pb['prompt_tokens_incl_cls_sep']['p50']}, "
              f"load before {peer['load_before']['proc_loadavg']})")
        print(f"  peer timed loop: other processes busy ~{pb_cpu.get('other_processes_busy_pct_all_cores_est')}% "
              f"of the machine, peer used {pb_cpu.get('avg_cores_used_by_this_process')} cores on average")
        print(f"same prompt list: {same_prompts}; routekit p50 on the peer's {n} prompts: {ours_same} ms before, "
              f"{p50(lat_after)} ms after the peer run")
        print(f"p50 ratio (RouteLLM / routekit): {ratio:.1f}x  (with the after-peer p50: "
              f"{pb['p50_ms'] / p50(lat_after):.1f}x)   (target >= 20x)")
    print(f"load after: {uptime()}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

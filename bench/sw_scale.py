"""SW exact vs fast at the paper's scale and beyond, on synthetic battle sets.

    nice python bench/sw_scale.py [--sizes 55000,200000,1000000] [--hnsw-max 200000] [--queries 40]

For each size N: N unit prompt embeddings (384-d, drawn around 300 topic centres so that
neighbours mean something), 3 battles per prompt between 10 tiers whose win odds depend on the
topic, then
* exact mode (int8 similarity pass over all N prompts): build time, p50 per query;
* fast mode with a flat FAISS index (fp16 scalar quantizer, as shipped, or float32), and with an
  HNSW index (M=32) read from a file: index build / write / read time, file size, p50 per query,
  mean and max |ΔP(strong beats weak)| against exact over the queries;
* process RSS growth after each model (a rough memory figure: numpy/onnxruntime arenas count).
One process, batch-1 queries (the online case).  On a shared box compare the modes within a size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from routekit.routers.sw.model import SWModel

T, STRONG, WEAK = 10, 8, 6


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def synthetic(n: int, d: int = 384, topics: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, d)).astype(np.float32)
    topic = rng.integers(0, topics, n)
    E = centres[topic] + 0.9 * rng.standard_normal((n, d)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    skill = rng.standard_normal((topics, T)) + np.linspace(-1.5, 1.5, T)  # tier strength per topic
    nb = 3 * n
    p = np.repeat(np.arange(n), 3)
    a, b = rng.integers(0, T, nb), rng.integers(0, T, nb)
    pa = 1.0 / (1.0 + np.exp(-(skill[topic[p], a] - skill[topic[p], b])))
    u = rng.random(nb)
    outcome = np.where(u < 0.1, 0.5, (u < 0.1 + 0.9 * pa).astype(np.float32))
    queries = centres[rng.integers(0, topics, 64)] + 0.9 * rng.standard_normal((64, d)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return E, p.astype(np.int32), a.astype(np.uint8), b.astype(np.uint8), outcome.astype(np.float32), queries


def p50_ms(model: SWModel, Q: np.ndarray) -> tuple[float, np.ndarray]:
    model.scores(Q[:2], STRONG, WEAK)  # warm-up
    lat, out = [], []
    for q in Q:
        t = time.perf_counter()
        out.append(model.scores(q[None, :], STRONG, WEAK)[0])
        lat.append(time.perf_counter() - t)
    return 1e3 * statistics.median(lat), np.array(out)


def build_index(E: np.ndarray, kind: str):
    import faiss

    d = E.shape[1]
    if kind == "flat-fp16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    elif kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    index.train(E)
    index.add(E)
    return index


def one_size(n: int, args) -> dict:
    import faiss

    E, p, a, b, outcome, Q = synthetic(n)
    Q = Q[:args.queries]
    res: dict = {"n_prompts": n, "n_battles": int(p.size)}
    kw = dict(weighting="reference", gamma=1e4)
    r0 = rss_mb()
    t = time.perf_counter()
    exact = SWModel(E, p, a, b, outcome, T, mode="exact", **kw)
    res["exact"] = {"build_s": time.perf_counter() - t, "rss_growth_mb": rss_mb() - r0}
    res["exact"]["p50_ms"], P_exact = p50_ms(exact, Q)
    del exact
    kinds = ["flat-fp16", "flat"] + (["hnsw"] if n <= args.hnsw_max else [])
    for kind in kinds:
        t = time.perf_counter()
        index = build_index(E, kind)
        built = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sw.faiss"
            faiss.write_index(index, str(path))
            size = path.stat().st_size
            del index
            r0 = rss_mb()
            t = time.perf_counter()
            index = faiss.read_index(str(path))
            read_s = time.perf_counter() - t
        if kind == "hnsw":
            index.hnsw.efSearch = 256
        t = time.perf_counter()
        fast = SWModel(E, p, a, b, outcome, T, mode="fast", k=256, index=index, **kw)
        init_s = time.perf_counter() - t
        ms, P = p50_ms(fast, Q)
        d = np.abs(P - P_exact)
        res[f"fast_{kind}"] = {"index_build_s": built, "index_file_mb": size / 1e6, "index_read_s": read_s,
                               "model_init_s": init_s, "rss_growth_mb": rss_mb() - r0, "p50_ms": ms,
                               "mean_abs_dP": float(d.mean()), "max_abs_dP": float(d.max())}
        del fast, index
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="55000,200000,1000000")
    ap.add_argument("--hnsw-max", type=int, default=200_000, help="skip HNSW above this size (build time)")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("bench-results/sw_scale.json"))
    args = ap.parse_args()
    results = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0], "sizes": []}
    for n in (int(s) for s in args.sizes.split(",")):
        r = one_size(n, args)
        results["sizes"].append(r)
        print(json.dumps(r), flush=True)
    results["load_avg_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average {results['load_avg_at_start']:.1f} -> {results['load_avg_at_end']:.1f} on "
          f"{results['cpus']} CPUs (shared box: compare modes within a size)")
    print("| prompts | mode | p50 ms/query | mean abs dP | max abs dP | load/build s | index MB | RSS growth MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["sizes"]:
        e = r["exact"]
        print(f"| {r['n_prompts']:,} | exact (int8) | {e['p50_ms']:.2f} | 0 | 0 | {e['build_s']:.1f} | - |"
              f" {e['rss_growth_mb']:.0f} |")
        for k, v in r.items():
            if k.startswith("fast_"):
                print(f"| {r['n_prompts']:,} | fast, {k[5:]} index | {v['p50_ms']:.2f} | {v['mean_abs_dP']:.2e} |"
                      f" {v['max_abs_dP']:.2e} | {v['index_read_s'] + v['model_init_s']:.2f} (build"
                      f" {v['index_build_s']:.1f}) | {v['index_file_mb']:.0f} | {v['rss_growth_mb']:.0f} |")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()

"""``routekit bench``: latency, throughput, cold start and memory of routers on this machine.

(The project's side-by-side comparison with RouteLLM 0.2.0 is ``bench/peer_compare.py``.)"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from routekit.io import atomic_write
from routekit.router import EncoderRouter

TOKENS = (16, 64, 256, 512)
BATCHES = (1, 8, 32, 128)


def _corpus() -> list[str]:
    """English prose shipped with CPython (offline, deterministic)."""
    try:
        from pydoc_data.topics import topics

        text = " ".join(topics[k] for k in sorted(topics))
    except ImportError:  # pragma: no cover - stripped Pythons
        text = " ".join(f"word{i} is a token for the benchmark sentence number {i}." for i in range(20000))
    return text.split()


def prompts_with_tokens(tokenizer, n_tokens: int, count: int, seed: int = 0) -> list[str]:
    """``count`` prompts of exactly ``n_tokens`` tokens (incl. special tokens) under ``tokenizer``,
    or as close as the words allow; for ``n_tokens`` above the encoder's limit the text is longer
    and the encoder truncates it (that cost is part of the measurement)."""
    words = _corpus()
    rng = np.random.default_rng(seed)
    out = []
    tok = tokenizer
    trunc = tok.truncation
    tok.no_truncation()
    try:
        for _ in range(count):
            start = int(rng.integers(0, len(words) - 2000))
            n_words = max(1, int(n_tokens * 0.7))
            while True:
                text = " ".join(words[start:start + n_words])
                have = len(tok.encode(text).ids)
                if have >= n_tokens or n_words > 4 * n_tokens:
                    break
                n_words += max(1, (n_tokens - have) // 2)
            while n_words > 1 and len(tok.encode(" ".join(words[start:start + n_words - 1])).ids) >= n_tokens:
                n_words -= 1
            out.append(" ".join(words[start:start + n_words]))
    finally:
        if trunc:
            tok.enable_truncation(**{k: v for k, v in trunc.items() if k in ("max_length", "stride", "strategy", "direction")})
    return out


def _pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def time_calls(fn, items, *, warmup: int = 3, min_time: float = 0.0) -> list[float]:
    for x in items[:warmup]:
        fn(x)
    times = []
    start = time.perf_counter()
    for x in items:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    while min_time and time.perf_counter() - start < min_time:
        for x in items:
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return times


def cold_start(name: str, threads: int | None) -> dict:
    """Import + load + first route in a fresh interpreter; peak RSS of that process."""
    code = (
        "import time, resource, json; t0 = time.perf_counter(); import routekit; t1 = time.perf_counter(); "
        f"r = routekit.load({name!r}, threads={threads!r}); t2 = time.perf_counter(); r.route('hello there'); "
        "t3 = time.perf_counter(); r.win_rates(['word ' * 300] * 64); "
        "print(json.dumps({'import_s': t1 - t0, 'load_s': t2 - t1, 'first_route_s': t3 - t2, "
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_router(name: str, *, threads: int | None, n: int, quick: bool) -> dict:
    import routekit

    router = routekit.load(name, threads=threads)
    enc = getattr(router, "encoder", None)
    res: dict = {"router": name, "kind": router.kind, "single": {}, "batched": {}}
    if enc is None:
        return res
    for nt in TOKENS:
        ps = prompts_with_tokens(enc.tokenizer, nt, n, seed=nt)
        t = time_calls(router.win_rate, ps)
        row = {"p50_ms": _pct(t, 50), "p99_ms": _pct(t, 99), "n": len(t)}
        if isinstance(router, EncoderRouter):  # a head on an encoder: time it alone
            embs = [(enc([p]), [p]) for p in ps]
            row["encoder_p50_ms"] = _pct(time_calls(enc, [[p] for p in ps]), 50)
            row["scoring_given_embedding_p50_ms"] = _pct(time_calls(lambda a: router.score_embeddings(*a), embs), 50)
        res["single"][nt] = row
    pool = prompts_with_tokens(enc.tokenizer, 64, 128 if quick else 256, seed=7)
    res["encoder"] = type(enc).__name__
    for bs in BATCHES:
        batches = [pool[i:i + bs] for i in range(0, len(pool), bs)] or [pool]
        router.win_rates(batches[0])
        dt = de = float("inf")
        for _ in range(3):  # interleaved repeats, best of 3: robust to bursts from other processes
            t0 = time.perf_counter()
            for b in batches:
                router.win_rates(b, batch_size=bs)
            dt = min(dt, time.perf_counter() - t0)
            t1 = time.perf_counter()
            for b in batches:
                enc(b, batch_size=bs)
            de = min(de, time.perf_counter() - t1)
        res["batched"][bs] = {"prompts_per_s": len(pool) / dt, "encoder_only_prompts_per_s": len(pool) / de,
                              "fraction_of_encoder": de / dt}
    return res


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "loadavg": os.getloadavg(),
            "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ROUTEKIT_THREADS")}}


def format_table(results: dict) -> str:
    lines = [f"machine: {results['machine']['cpu']} x{results['machine']['cores']}, "
             f"threads={results['threads']}, load before {results['machine']['loadavg']}, "
             f"after {results.get('loadavg_after')}"]
    for r in results["routers"]:
        lines.append(f"\n== {r['router']} ({r['kind']})")
        cs = r.get("cold_start", {})
        if cs and "error" not in cs:
            lines.append(f"cold start: import {cs['import_s']:.2f}s + load {cs['load_s']:.2f}s + first route "
                         f"{cs['first_route_s'] * 1000:.0f} ms; peak RSS {cs['peak_rss_mb']:.0f} MB")
        if r["single"]:
            lines.append(f"{'tokens':>6} {'p50 ms':>8} {'p99 ms':>8} {'encoder p50':>12} {'scoring|emb p50':>16}")
            for nt, row in r["single"].items():
                lines.append(f"{nt:>6} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                             f"{row.get('encoder_p50_ms', float('nan')):>12.2f} "
                             f"{row.get('scoring_given_embedding_p50_ms', float('nan')):>16.3f}")
            lines.append(f"{'batch':>6} {'prompts/s':>10} {'encoder-only/s':>15} {'% of encoder':>13}")
            for bs, row in r["batched"].items():
                lines.append(f"{bs:>6} {row['prompts_per_s']:>10.1f} {row['encoder_only_prompts_per_s']:>15.1f} "
                             f"{100 * row['fraction_of_encoder']:>12.0f}%")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results["routers"]:
        if not r["single"]:
            continue
        ks = [int(k) for k in r["single"]]
        a.plot(ks, [r["single"][k]["p50_ms"] for k in r["single"]], marker="o", label=f"{r['router']} p50")
        b.plot([int(k) for k in r["batched"]], [v["prompts_per_s"] for v in r["batched"].values()], marker="o",
               label=r["router"])
        b.plot([int(k) for k in r["batched"]], [v["encoder_only_prompts_per_s"] for v in r["batched"].values()],
               ls=":", color="gray")
    a.set_xscale("log", base=2)
    a.set_xlabel("prompt tokens")
    a.set_ylabel("ms per prompt (single)")
    a.set_title("single-prompt latency (p50)")
    b.set_xscale("log", base=2)
    b.set_xlabel("batch size")
    b.set_ylabel("prompts / s")
    b.set_title("batched throughput (dotted: encoder only)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"routekit bench — {results['machine']['cpu']} x{results['machine']['cores']}, threads={results['threads']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(routers: Sequence[str], *, threads: int | None, out: Path, quick: bool) -> dict:
    """Time every router, write ``out/bench.json`` (and ``bench.png`` with matplotlib); returns the results."""
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "threads": threads, "routers": []}
    n = 20 if quick else 60
    for name in routers:
        r = bench_router(name, threads=threads, n=n, quick=quick)
        r["cold_start"] = cold_start(name, threads)
        results["routers"].append(r)
    results["loadavg_after"] = os.getloadavg()
    with atomic_write(out / "bench.json") as f:
        f.write(json.dumps(results, indent=2, default=str) + "\n")
    try:
        plot(results, out / "bench.png")
    except ImportError:
        pass
    return results

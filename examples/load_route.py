"""Bounded loopback load test for ``POST /v1/route``: throughput, p50/p99 latency, errors.

    routekit serve --router mf --port 6060 &
    python examples/load_route.py --url http://127.0.0.1:6060 --concurrency 16 --requests 2000

Only loopback URLs are accepted.  Each of ``--concurrency`` threads keeps one HTTP connection and
sends its share of ``--requests`` sequentially; prompts vary so no cache can help.
"""

import argparse
import json
import threading
import time
from urllib.parse import urlparse

import httpx
import numpy as np

PROMPTS = ["hi, how are you?", "Prove that there are infinitely many primes.",
           "Write a Rust function that parses ISO-8601 durations, with tests.", "What is 2 + 2?",
           "Summarise the causes of the French revolution in three bullet points.",
           "Design a lock-free MPMC queue in C++ and argue its linearizability."]


def run(url: str, concurrency: int, requests: int, token: str | None = None) -> dict:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing non-loopback URL {url!r}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    lat, errors, lock = [], [], threading.Lock()
    per = [requests // concurrency + (k < requests % concurrency) for k in range(concurrency)]

    def worker(k: int):
        with httpx.Client(base_url=url, timeout=30, headers=headers) as c:
            c.get("/health")  # connect outside the timed region
            for i in range(per[k]):
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/route", json={"prompt": f"{PROMPTS[(k + i) % len(PROMPTS)]} ({k}.{i})"})
                    ok = r.status_code == 200 and r.json().get("route") in ("strong", "weak")
                except (httpx.HTTPError, ValueError) as exc:  # transport error, or a body that is not JSON
                    ok, r = False, exc
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(str(r))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1000
    return {"requests": len(lat), "concurrency": concurrency, "errors": len(errors), "wall_s": round(wall, 3),
            "throughput_rps": round(len(lat) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "first_errors": errors[:3]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:6060")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--token", default=None)
    a = ap.parse_args()
    print(json.dumps(run(a.url, a.concurrency, min(a.requests, 100_000), a.token)))

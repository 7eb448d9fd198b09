"""Throughput of `routekit score`: local streaming vs Ray Data with 1 and 2 actors.

    nice python bench/scale.py [--n 4000] [--router default] [--out bench-results/scale.json]

Prints prompts/s for each engine (local with 1 onnxruntime thread like each Ray actor, and with
all cores), Ray's fixed costs (ray.init, and a job of 16 prompts: actor
start + artifact load + read/write tasks), the peak RSS of the local process and of each Ray
actor (VmHWM, sampled from /proc), and the local peak RSS on a 10x larger input (the streaming
path's memory must not grow with the input).  Each engine runs in its own subprocess.  Numbers
are for the machine it runs on; on a shared box, compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = ("prove explain write summarise translate debug compare list why how what integral poem "
         "haiku python function theorem history cell capital market essay story recipe").split()


def make_input(path: Path, n: int, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
            f.write(json.dumps({"id": i, "prompt": f"{words}?", "user": f"u{i % 97}"}) + "\n")
    return path


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


class ActorSampler(threading.Thread):
    """Peak RSS and CPU seconds of every ``ray::MapWorker`` process seen while running."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read()
                except OSError:
                    continue
                if cmd.startswith(b"ray::MapWorker"):
                    self.peaks[int(pid)] = max(self.peaks.get(int(pid), 0.0), _peak_rss_mb(int(pid)))
                    self.cpu[int(pid)] = max(self.cpu.get(int(pid), 0.0), _cpu_s(int(pid)))
            time.sleep(0.25)


def run_local(inp: str, out: str, router: str, threads: str = "none") -> dict:
    import resource

    import routekit
    from routekit.batch.score import score_file

    t0 = time.perf_counter()
    r = routekit.load(router, threads=None if threads == "none" else int(threads))
    t1 = time.perf_counter()
    scoring = [0.0]
    real = r.route_many

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return real(*a, **kw)
        finally:
            scoring[0] += time.perf_counter() - t

    r.route_many = timed
    c0 = time.process_time()
    s = score_file(r, inp, out)
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    return {"load_s": t1 - t0, "score_s": t2 - t1, "rows": s.rows, "prompts_per_s": s.rows / (t2 - t1),
            "scoring_only_prompts_per_s": s.rows / scoring[0], "cpu_s": cpu, "prompts_per_cpu_s": s.rows / cpu, "read_write_publish_s": t2 - t1 - scoring[0],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_ray(inp: str, small: str, out: str, router: str, actors: int) -> dict:
    t0 = time.perf_counter()
    import ray

    ray.init(num_cpus=(os.cpu_count() or 1) + 1, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    from routekit.batch.ray import score_dataset, write_local

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    t_init = time.perf_counter() - t0

    def job(path, dest):
        t = time.perf_counter()
        ds = score_dataset(ray.data.read_json(path, lines=True), router, concurrency=actors)
        counts = write_local(ds, dest, "jsonl")
        return time.perf_counter() - t, counts["rows"]

    t_small, _ = job(small, out + "-small")
    sampler = ActorSampler()
    sampler.start()
    c0 = time.process_time()
    t_big, rows = job(inp, out)
    driver_cpu = time.process_time() - c0
    time.sleep(0.5)
    sampler.stop.set()
    sampler.join()
    ray.shutdown()
    actor_cpu = sum(sampler.cpu.values())
    return {"init_s": t_init, "small_job_s": t_small, "job_s": t_big, "rows": rows,
            "actor_cpu_s": actor_cpu, "driver_cpu_s": driver_cpu,
            "prompts_per_cpu_s": rows / max(actor_cpu + driver_cpu, 1e-9),
            "prompts_per_s": rows / t_big, "prompts_per_s_after_startup": (rows - 16) / max(t_big - t_small, 1e-9),
            "actor_peak_rss_mb": sorted(round(v, 1) for v in sampler.peaks.values())}


def _child(args) -> None:
    res = run_local(*args.child[1:5]) if args.child[0] == "local" else \
        run_ray(args.child[1], args.child[2], args.child[3], args.child[4], int(args.child[5]))
    print("RESULT " + json.dumps(res))


def _spawn(*child: str) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    p = subprocess.run([sys.executable, __file__, "--child", *child], capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"{child[0]} run failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="prompts to score (default: %(default)s)")
    ap.add_argument("--router", default="default")
    ap.add_argument("--out", type=Path, default=Path("bench-results/scale.json"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args)
    with tempfile.TemporaryDirectory() as tmp:
        inp = str(make_input(Path(tmp) / "in.jsonl", args.n))
        small = str(make_input(Path(tmp) / "small.jsonl", 16, seed=1))
        big = str(make_input(Path(tmp) / "big.jsonl", 10 * args.n, seed=2))
        res = {"n": args.n, "router": args.router, "cpus": os.cpu_count(),
               "load_avg_at_start": os.getloadavg()[0]}
        res["local"] = _spawn("local", inp, f"{tmp}/local.jsonl", args.router, "1")
        res["local_all_threads"] = _spawn("local", inp, f"{tmp}/local2.jsonl", args.router, "none")
        res["local_10x_random_router"] = _spawn("local", big, f"{tmp}/big-out.jsonl", "random")
        res["local_1x_random_router"] = _spawn("local", inp, f"{tmp}/r-out.jsonl", "random")
        for k in (1, 2):
            res[f"ray_{k}"] = _spawn("ray", inp, small, f"{tmp}/ray{k}", args.router, str(k))
        res["load_avg_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    loc = res["local"]["prompts_per_s"]
    print(f"{args.n} prompts, router {args.router}, {res['cpus']} CPUs, load average {res['load_avg_at_start']:.1f}"
          f" -> {res['load_avg_at_end']:.1f} (shared box: compare ratios)")
    print("| engine | prompts/s (wall) | vs local | prompts per CPU-second | peak RSS MB |\n|---|---|---|---|---|")
    lo = res["local"]
    print(f"| local streaming, 1 thread | {loc:.0f} ({lo['scoring_only_prompts_per_s']:.0f} scoring only;"
          f" read+write+fsync {lo['read_write_publish_s']:.1f} s) | 1.00 | {lo['prompts_per_cpu_s']:.0f} |"
          f" {lo['peak_rss_mb']:.0f} |")
    la = res["local_all_threads"]
    print(f"| local streaming, {res['cpus']} threads | {la['prompts_per_s']:.0f} | {la['prompts_per_s'] / loc:.2f} |"
          f" {la['prompts_per_cpu_s']:.0f} | {la['peak_rss_mb']:.0f} |")
    for k in (1, 2):
        r = res[f"ray_{k}"]
        print(f"| Ray, {k} actor(s) | {r['prompts_per_s']:.0f} ({r['prompts_per_s_after_startup']:.0f} after start-up)"
              f" | {r['prompts_per_s'] / loc:.2f} | {r['prompts_per_cpu_s']:.0f} (actors + driver) |"
              f" {max(r['actor_peak_rss_mb'] or [0]):.0f} per actor (max) |")
    r1 = res["ray_1"]
    print(f"Ray fixed costs: ray.init {r1['init_s']:.1f} s; a 16-prompt job {r1['small_job_s']:.1f} s "
          "(actor start + artifact load + read/write)")
    print(f"local peak RSS, random router: {res['local_1x_random_router']['peak_rss_mb']:.0f} MB at {args.n} rows, "
          f"{res['local_10x_random_router']['peak_rss_mb']:.0f} MB at {10 * args.n} rows")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()

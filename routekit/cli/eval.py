"""``routekit eval`` (APGR / CPT on benchmarks or your labels, AUC on a suite) and ``routekit bench``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from routekit.cli import common
from routekit.cli.common import Command


def _eval_args(e) -> None:
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--benchmark", choices=["mmlu", "gsm8k", "mt-bench"],
                       help="a RouteLLM benchmark's answers (from --data)")
    which.add_argument("--file", type=Path, default=None,
                       help="your labelled prompts: JSONL {prompt, <strong model>: quality, <weak model>: quality} "
                            "or a CSV with those columns")
    which.add_argument("--suite", action="append", default=None, metavar="NAME|FILE|all",
                       help="a prompt suite with known sides (shipped: everyday, length; all: every shipped "
                            "one; or JSONL {prompt, side: trivial|hard, band?, pair?}; repeatable): AUC and the "
                            "share of each side sent to strong, per band where the suite has bands; the "
                            "baselines random and length (number of characters) are always added")
    e.add_argument("--data", type=Path, default=None,
                   help="RouteLLM evals folder (default: $ROUTEKIT_DATA/dev/routellm-evals)")
    common.router_arg(e, many=True)
    e.add_argument("--strong-model", default=None,
                   help="strong model column/name in the data (default: the benchmark's or the router's pair)")
    e.add_argument("--weak-model", default=None,
                   help="weak model column/name in the data (default: the benchmark's or the router's pair)")
    e.add_argument("--keep-contaminated", action="store_true", help="do not drop contaminated prompts")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plot", type=Path, default=None,
                   help="write a PNG of quality vs strong-call %% (default: none, or <--out>/<set>.png)")
    e.add_argument("--out", type=Path, default=None,
                   help="folder for <set>.json (the results), <set>.png and the win-rate cache (default: none; "
                        "the cache goes to the user cache folder)")
    e.add_argument("--no-cache", action="store_true", help="recompute win rates")


def run_eval(args) -> int:
    from routekit import eval as ev
    from routekit.artifact import cache_dir
    from routekit.errors import OutputError
    from routekit.io import atomic_path, atomic_write, check_output

    if args.suite:
        return _eval_suite(args)
    data = args.data or common.default_data()
    kw = {}
    if args.strong_model:
        kw["strong_model"] = args.strong_model
    if args.weak_model:
        kw["weak_model"] = args.weak_model
    if args.file:
        evalset = ev.load_labelled(args.file, **kw)
    else:
        evalset = ev.load_benchmark(args.benchmark, data, drop_contaminated=not args.keep_contaminated, **kw)
    inputs = [p for p in (args.file, data) if p is not None]
    json_path = args.out / f"{evalset.name}.json" if args.out else None
    plot_path = args.plot or (args.out / f"{evalset.name}.png" if args.out else None)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--out {args.out}: cannot create the folder ({exc.strerror or exc})") from exc
    for path, what in ((json_path, "results"), (plot_path, "plot")):  # before any work
        if path is not None:
            check_output(path, inputs=inputs, what=what)
    if plot_path is not None:
        from routekit.eval.plot import require_matplotlib

        require_matplotlib()  # a missing extra is an error now, not after scoring everything
    cache = (args.out or cache_dir()) / "winrates"
    names = args.router or ["default"]
    routers = [common.load_router(name, args.threads) for name in names]
    all_rates = ev.cached_win_rates(routers, evalset, cache, refresh=args.no_cache, show_progress=not args.json)
    results = [ev.evaluate(rates, evalset, name) for name, rates in zip(names, all_rates)]
    summary = ev.report(results, evalset, all_rates)
    if json_path:
        with atomic_write(json_path, inputs=inputs, what="results") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
    if plot_path:
        with atomic_path(plot_path, inputs=inputs, what="plot") as tmp:
            ev.plot(results, evalset, tmp)
        summary["plot"] = str(plot_path)
    if args.json:
        print(json.dumps(summary))
    else:
        print(ev.format_table(summary))
        if plot_path:
            print(f"plot: {plot_path}")
    return 0


#: Baselines every suite report carries beside the routers asked for.
SUITE_BASELINES = ("random", "length")


def _eval_suite(args) -> int:
    from routekit.eval.suite import (
        format_band_table,
        format_suite_table,
        load_suites,
        suite_report,
    )
    from routekit.router_set import RouterSet

    suites = load_suites(args.suite)  # every file is read and checked before any router loads
    names = list(args.router or ["default"])
    routers = [common.load_router(name, args.threads) for name in names]
    have = {r.name for r in routers}
    extra = [name for name in SUITE_BASELINES if name not in have]
    routers += [common.load_router(name, args.threads) for name in extra]
    # two artifacts with one manifest name (an old and a new build) are told apart by what was asked for
    dup = len({r.name for r in routers}) < len(routers)
    labels = [arg if dup else r.name for arg, r in zip(names + extra, routers)]
    results = []
    for suite in suites:
        rates = RouterSet(routers).win_rates(suite.prompts)  # routers that ship one encoder share its pass
        reports = [{**suite_report(r, suite, w), "router": label} for r, w, label in zip(routers, rates, labels)]
        results.append({"suite": suite.name, "n": len(suite), "routers": reports})
        if not args.json:
            if len(results) > 1:
                print()
            print(f"suite {suite.name}: {len(suite)} prompts ({int(suite.hard.sum())} hard)")
            print(format_suite_table(reports))
            bands = format_band_table(reports)
            if bands:
                print(f"\nsuite {suite.name} by band (default threshold):")
                print(bands)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"suites": results}))
    return 0


def _bench_args(b) -> None:
    b.add_argument("--router", action="append", default=None, help="routers to time (default: every shipped one)")
    common.threads_arg(b)
    b.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute per router)")
    b.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="folder for bench.json and bench.png (default: %(default)s)")
    b.add_argument("--json", action="store_true", help="print the results as one JSON object")


def run_bench(args) -> int:
    from routekit import artifact
    from routekit.eval import bench
    from routekit.io import check_output_dir

    check_output_dir(args.out, overwrite=True, what="--out")  # before any work
    routers = args.router or [n for n in artifact.shipped() if n != "default"]
    results = bench.main(routers, threads=args.threads, out=args.out, quick=args.quick)
    print(json.dumps(results, default=str) if args.json else bench.format_table(results))
    print(f"results: {args.out / 'bench.json'}, plot: {args.out / 'bench.png'}", file=sys.stderr)
    return 0


EVAL = Command("eval", "APGR / CPT of routers on RouteLLM-format benchmark answers or your own labels",
               _eval_args, run_eval)
BENCH = Command("bench", "latency / throughput / cold start / RSS of routers on this machine", _bench_args, run_bench)

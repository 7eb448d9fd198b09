"""The ``routekit`` command line: route, score, eval, calibrate, artifacts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import RoutekitError


def _router_arg(p: argparse.ArgumentParser, many: bool = False) -> None:
    help_ = _router_help()
    if many:
        p.add_argument("--router", action="append", default=None, help=help_ + " (repeatable)")
    else:
        p.add_argument("--router", default="default", help=help_ + " (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")


def _router_help() -> str:
    from . import artifact, registry

    names = ["default"] + [n for n in artifact.shipped() if n != "default"] + ["random[:SEED]"]
    return (f"router: a shipped name ({', '.join(names)}; see `routekit artifacts list`) or an artifact "
            f"folder of kind {', '.join(registry.kinds())}")


def _threshold_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--threshold", type=float, default=None, help="route to strong when win rate >= T")
    g.add_argument("--strong-fraction", type=float, default=None,
                   help="use the artifact's calibrated threshold that sends this fraction to strong")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="routekit", description="Route prompts to a strong or a weak LLM.")
    p.add_argument("--version", action="version", version=f"routekit {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("route", help="route one prompt (or '-' to read it from stdin)")
    r.add_argument("prompt")
    _router_arg(r)
    _threshold_args(r)
    r.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("score", help="route every prompt of a JSONL/CSV/Parquet/text file (streaming)")
    from .score import add_arguments

    add_arguments(s)
    _router_arg(s)
    _threshold_args(s)

    a = sub.add_parser("artifacts", help="list or verify artifacts")
    asub = a.add_subparsers(dest="action", required=True)
    asub.add_parser("list", help="shipped artifacts")
    v = asub.add_parser("verify", help="check an artifact: manifest schema and hash, file hashes, and a trial "
                                       "load that scores one prompt")
    v.add_argument("path")
    v.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    sl = asub.add_parser("seal", help="record the manifest's own hash after you edited and checked it")
    sl.add_argument("path")

    e = sub.add_parser("eval", help="APGR / CPT of routers on RouteLLM-format benchmark answers or your own labels")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--benchmark", choices=["mmlu", "gsm8k", "mt-bench"])
    which.add_argument("--file", type=Path, default=None,
                       help="your labelled prompts: JSONL {prompt, <strong model>: quality, <weak model>: quality} "
                            "or a CSV with those columns")
    which.add_argument("--suite", default=None, metavar="NAME|FILE",
                       help="a prompt suite with known sides (shipped: everyday; or JSONL {prompt, side: "
                            "trivial|hard}): AUC and the share of each side sent to strong")
    e.add_argument("--data", type=Path, default=None,
                   help="RouteLLM evals folder (default: $ROUTEKIT_DATA/dev/routellm-evals)")
    _router_arg(e, many=True)
    e.add_argument("--strong-model", default=None, help="strong model column/name in the data")
    e.add_argument("--weak-model", default=None, help="weak model column/name in the data")
    e.add_argument("--keep-contaminated", action="store_true", help="do not drop contaminated prompts")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--plot", type=Path, default=None, help="write a PNG of quality vs strong-call %%")
    e.add_argument("--out", type=Path, default=None, help="folder for results.json, the plot and the win-rate cache")
    e.add_argument("--no-cache", action="store_true", help="recompute win rates")

    b = sub.add_parser("bench", help="latency / throughput / cold start / RSS of routers on this machine")
    b.add_argument("--router", action="append", default=None, help="routers to time (default: every shipped one)")
    b.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    b.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute per router)")
    b.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="folder for bench.json and bench.png (default: %(default)s)")
    b.add_argument("--json", action="store_true", help="print the results as one JSON object")

    c = sub.add_parser("calibrate", help="threshold that sends a fraction of your prompts to strong")
    _router_arg(c)
    c.add_argument("--strong-fraction", type=float, required=True,
                   help="fraction of these prompts (0..1) that should go to the strong model")
    c.add_argument("--prompts", type=Path, required=True, help="JSONL with a 'prompt' field, or one per line")
    c.add_argument("--field", default="prompt", help="JSON field holding the prompt (default: %(default)s)")
    c.add_argument("--write", type=Path, default=None,
                   help="write a copy of the artifact calibrated on these prompts to this folder")
    c.add_argument("--force", action="store_true", help="replace the --write folder if it exists")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    _add_serve(sub)
    return p


def _version() -> str:
    from . import __version__

    return __version__


def _load(name: str, threads: int | None):
    from .router import load

    return load(name, threads=threads)


def _read_prompt(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else arg


def cmd_route(args) -> int:
    router = _load(args.router, args.threads)
    d = router.route(_read_prompt(args.prompt), threshold=args.threshold, strong_fraction=args.strong_fraction)
    if args.json:
        print(json.dumps(d.to_dict()))
    else:
        print(f"{d.route}\t{d.model}\twin_rate={d.win_rate:.4f}\tthreshold={d.threshold:.4f}\trouter={d.router}")
    return 0


def cmd_score(args) -> int:
    if args.engine == "ray":
        from .ray import score_cli

        return score_cli(args)
    from .score import ScoreJob

    job = ScoreJob(args.input, args.output, field=args.field, input_format=args.input_format,
                   output_format=args.output_format, threshold=args.threshold,
                   strong_fraction=args.strong_fraction, batch_size=args.batch_size, part_rows=args.part_rows,
                   resume=args.resume, skip_bad=args.skip_bad, rejected=args.rejected)
    router = _load(args.router, args.threads)
    s = job.run(router, show_progress=True)
    rej = f", {s.rejected} rejected" if args.skip_bad else ""
    resumed = f" ({s.resumed_parts} parts resumed)" if s.resumed_parts else ""
    print(f"scored {s.rows} prompts: {s.strong} strong, {s.weak} weak{rej}{resumed} -> {s.output}",
          file=sys.stderr)
    return 0


def cmd_artifacts(args) -> int:
    from . import artifact

    if args.action == "list":
        known = artifact.shipped()
        default = artifact.default_name()
        if not known:
            print("no shipped artifacts found in", artifact.artifacts_root())
        for name, folder in known.items():
            if name == "default":
                continue
            m = artifact.read_manifest(folder, verify=False)
            size = sum(meta.get("bytes", 0) for meta in m.files.values()) / 1e6
            mark = " (default)" if name == default else ""
            pair = m.get("pair", {})
            print(f"{name}{mark}\tkind={m.kind}\t{pair.get('strong')} vs {pair.get('weak')}\t{size:.1f} MB\t{folder}")
        print("random\tkind=random\tbuilt in (seeded baseline)")
        return 0
    folder = artifact.resolve(args.path)
    if args.action == "seal":
        digest = artifact.seal(folder)
        print(f"sealed {folder}: manifest_sha256 {digest}")
        return 0
    m = artifact.verify(folder, load=True, threads=args.threads)
    print(f"OK {m.folder}: kind={m.kind}, format v{m.get('format_version')}, manifest_sha256 "
          f"{m.get('manifest_sha256')}, {len(m.files)} files verified, trial load scored one prompt")
    if not m.get("calibration"):
        print("note: no calibration table: route() needs threshold= (or run `routekit calibrate --write`)")
    return 0


def _cache_dir() -> Path:
    from .artifact import cache_dir

    return cache_dir()


def cmd_eval(args) -> int:
    from . import evaluate as ev
    from ._io import atomic_path, atomic_write, check_output
    from .errors import OutputError

    if args.suite:
        return _eval_suite(args)
    data = args.data or _default_data()
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
        from .eval_plot import require_matplotlib

        require_matplotlib()  # a missing extra is an error now, not after scoring everything
    cache = (args.out or _cache_dir()) / "winrates"
    names = args.router or ["default"]
    routers = [_load(name, args.threads) for name in names]
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


def _eval_suite(args) -> int:
    from .suite import format_suite_table, load_suite, suite_report

    suite = load_suite(args.suite)
    reports = [suite_report(_load(name, args.threads), suite) for name in (args.router or ["default"])]
    if args.json:
        print(json.dumps({"suite": suite.name, "n": len(suite), "routers": reports}))
    else:
        print(f"suite {suite.name}: {len(suite)} prompts ({int(suite.hard.sum())} hard)")
        print(format_suite_table(reports))
    return 0


def _default_data() -> Path:
    return Path(os.environ.get("ROUTEKIT_DATA", "../shared/data")) / "dev" / "routellm-evals"


def cmd_bench(args) -> int:
    from . import artifact, bench
    from ._io import check_output_dir

    check_output_dir(args.out, overwrite=True, what="--out")  # before any work
    routers = args.router or [n for n in artifact.shipped() if n != "default"]
    results = bench.main(routers, threads=args.threads, out=args.out, quick=args.quick)
    print(json.dumps(results, default=str) if args.json else bench.format_table(results))
    print(f"results: {args.out / 'bench.json'}, plot: {args.out / 'bench.png'}", file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    from ._io import check_output_dir
    from .calibrate import load_prompt_file, threshold_for_fraction, write_calibrated_copy
    from .errors import BadInputError

    if not 0.0 <= args.strong_fraction <= 1.0:  # before any work (NaN fails this too)
        raise BadInputError(f"--strong-fraction must be in [0, 1], got {args.strong_fraction}")
    if args.write is not None:  # before any work: refuse an existing folder (without --force) or an input
        check_output_dir(args.write, overwrite=args.force, inputs=[args.prompts])
    prompts = load_prompt_file(args.prompts, args.field)  # a bad line is found before the router loads
    if not prompts:
        raise BadInputError(f"{args.prompts}: no prompts (calibration needs at least one)")
    router = _load(args.router, args.threads)
    if args.write is not None:
        if router.path is None:
            raise BadInputError(f"--write needs an artifact folder to copy; router {router.name!r} is built in")
        check_output_dir(args.write, overwrite=args.force, inputs=[args.prompts, router.path])
    rates = router.win_rates(prompts, show_progress=not args.json)
    thr = threshold_for_fraction(rates, args.strong_fraction)
    out = {"router": router.name, "strong_fraction": args.strong_fraction, "threshold": thr,
           "n_prompts": len(prompts), "actual_strong_fraction": float((rates >= thr).mean())}
    if args.write:
        write_calibrated_copy(router, prompts, args.write, source=str(args.prompts),
                              default_strong_fraction=args.strong_fraction, overwrite=args.force,
                              win_rates=rates)
        out["written"] = str(args.write)
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def _add_serve(sub) -> None:
    sv = sub.add_parser("serve", help="OpenAI-compatible routing server (needs: pip install 'routekit[server]')")
    sv.add_argument("--config", type=Path, default=None, help="TOML or JSON server config (flags override it)")
    sv.add_argument("--router", action="append", default=None, metavar="NAME[=PATH]",
                    help="router clients may name in model='router-NAME-...' (repeatable; first is the default)")
    sv.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per router")
    for side in ("strong", "weak"):
        sv.add_argument(f"--{side}-model", default=None, help=f"model name the {side} upstream serves")
        sv.add_argument(f"--{side}-base-url", default=None,
                        help=f"OpenAI-compatible base URL of the {side} upstream (default: api.openai.com)")
        sv.add_argument(f"--{side}-api-key-env", default=None,
                        help=f"env var holding the {side} upstream's key (default: OPENAI_API_KEY)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=6060)
    sv.add_argument("--api-key-env", default=None, metavar="VAR",
                    help="require clients to send 'Authorization: Bearer $VAR'")
    sv.add_argument("--alias", action="append", default=None, metavar="NAME=MODEL",
                    help="extra model name, e.g. cheap=router-mf-p20 (repeatable)")
    sv.add_argument("--max-body-bytes", type=int, default=None)
    sv.add_argument("--upstream-timeout", type=float, default=None, help="seconds (default 60)")
    sv.add_argument("--turns", choices=["user", "last"], default=None,
                    help="score all user turns, newest first (default) or only the last one")
    sv.add_argument("--upstream-max-retries", type=int, default=None,
                    help="the openai SDK's retries per upstream call (default 0)")
    sv.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=None,
                    help="on connection error, timeout or 5xx, try the other upstream once (default: on)")
    sv.add_argument("--decision-log", default=None, metavar="PATH",
                    help="append one JSON line per request to PATH ('-': stderr); summarise with `routekit report`")
    sv.add_argument("--log-prompts", action="store_true", default=None,
                    help="also log the scored text, cut to log_prompt_chars (default 200)")
    sv.add_argument("--log-level", default="info")
    from .ray import add_serve_arguments

    add_serve_arguments(sv)  # --engine ray, --replicas, --max-replicas, --address
    rp = sub.add_parser("report", help="summarise a decision log written by `routekit serve --decision-log`")
    rp.add_argument("log", type=Path, help="decision log (JSON lines)")
    rp.add_argument("--json", action="store_true", help="print the summary as JSON")


def _pairs(values, what: str) -> dict:
    out = {}
    for v in values or []:
        k, sep, rest = v.partition("=")
        if what == "--alias" and not sep:
            raise RoutekitError(f"{what} takes NAME=VALUE, got {v!r}")
        out[k] = rest if sep else k
    return out


def cmd_serve(args) -> int:
    from .server import ServerConfig, Upstream, serve, with_overrides  # MissingExtraError without the extra

    cfg = ServerConfig.from_file(args.config) if args.config else ServerConfig()
    ups = {}
    for side in ("strong", "weak"):
        model, url, env = (getattr(args, f"{side}_{k}") for k in ("model", "base_url", "api_key_env"))
        if model is None and (url or env):
            raise RoutekitError(f"--{side}-base-url/--{side}-api-key-env need --{side}-model")
        if model is not None:
            ups[side] = Upstream(model, url, api_key_env=env or "OPENAI_API_KEY")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise RoutekitError(f"--api-key-env names ${args.api_key_env}, which is not set")
    cfg = with_overrides(cfg, routers=_pairs(args.router, "--router") or None, threads=args.threads,
                         api_key=api_key, aliases={**cfg.aliases, **_pairs(args.alias, "--alias")} or None,
                         max_body_bytes=args.max_body_bytes, upstream_timeout=args.upstream_timeout,
                         turns=args.turns, upstream_max_retries=args.upstream_max_retries,
                         fallback=args.fallback, decision_log=args.decision_log, log_prompts=args.log_prompts,
                         **ups)
    if args.engine == "ray":
        from .ray import serve_cli

        serve_cli(cfg, host=args.host, port=args.port, address=args.address, replicas=args.replicas,
                  max_replicas=args.max_replicas)
        return 0
    from ._io import Terminated

    try:
        serve(cfg, host=args.host, port=args.port, log_level=args.log_level)
    except (KeyboardInterrupt, Terminated):  # uvicorn has shut down cleanly: the normal way to stop a server
        pass
    return 0


def cmd_report(args) -> int:
    from .decision_log import format_summary, summarise

    s = summarise(args.log)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"route": cmd_route, "score": cmd_score, "artifacts": cmd_artifacts, "eval": cmd_eval,
               "calibrate": cmd_calibrate,
               "bench": cmd_bench, "serve": cmd_serve, "report": cmd_report}[args.command]
    from ._io import Terminated, sigterm_raises

    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C, so partial outputs are removed
            return handler(args)
    except RoutekitError as exc:
        print(f"routekit: error: {_with_notes(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `routekit score ... | head`
        return 0
    except OSError as exc:  # a file the command reads or writes: permissions, disk, a vanished path
        print(f"routekit: error: {_with_notes(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"routekit: error: interrupted{_notes(exc)}", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"routekit: error: terminated (SIGTERM){_notes(exc)}", file=sys.stderr)
        return exc.code


def _notes(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    return "".join(f"; {n}" for n in notes)


def _with_notes(exc: BaseException) -> str:
    return f"{exc}{_notes(exc)}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

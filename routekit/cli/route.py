"""``routekit route``, ``score`` and ``calibrate``: routing prompts and choosing a threshold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from routekit.cli import common
from routekit.cli.common import Command


def _route_args(r) -> None:
    r.add_argument("prompt", nargs="+",
                   help="one or more prompts; '-' reads prompts from stdin, one per line (blank lines skipped)")
    common.router_arg(r)
    common.threshold_args(r)
    r.add_argument("--json", action="store_true", help="print one JSON object per prompt, one per line")


def _prompts(args: list[str]) -> list[str]:
    """The prompts in command-line order, ``-`` replaced by stdin's lines (UTF-8, checked)."""
    from routekit.errors import BadInputError

    if args.count("-") > 1:
        raise BadInputError("'-' (stdin) can be given once")
    out: list[str] = []
    for arg in args:
        if arg != "-":
            out.append(arg)
            continue
        n = 0
        for i, raw in enumerate(sys.stdin.buffer, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise BadInputError(f"stdin, line {i}: invalid UTF-8 (byte {exc.start + 1} of the line)") from None
            if line.strip():
                out.append(line)
                n += 1
        if n == 0:
            raise BadInputError("'-' given but stdin has no prompts (one per line)")
    return out


def run_route(args) -> int:
    prompts = _prompts(args.prompt)  # stdin is read (and checked) before the router loads
    router = common.load_router(args.router, args.threads)
    for d in router.route_many(prompts, threshold=args.threshold, strong_fraction=args.strong_fraction):
        if args.json:
            print(json.dumps(d.to_dict()))
        else:
            print(f"{d.route}\t{d.model}\twin_rate={d.win_rate:.4f}\tthreshold={d.threshold:.4f}\trouter={d.router}")
    return 0



def _explain_args(e) -> None:
    e.add_argument("prompt", help="the prompt to explain")
    common.router_arg(e)
    common.threshold_args(e)
    e.add_argument("--top", type=int, default=12, help="contributions or neighbours shown (default: %(default)s)")
    e.add_argument("--json", action="store_true", help="print the explanation as one JSON object")


def run_explain(args) -> int:
    from routekit.errors import BadInputError

    if args.top < 1:
        raise BadInputError(f"--top must be >= 1, got {args.top}")
    router = common.load_router(args.router, args.threads)
    ex = router.explain(args.prompt, threshold=args.threshold, strong_fraction=args.strong_fraction, top=args.top)
    print(json.dumps(ex.to_dict()) if args.json else ex.format())
    return 0

def _score_args(s) -> None:
    from routekit.batch.score import add_arguments

    add_arguments(s)
    common.router_arg(s)
    common.threshold_args(s)


def run_score(args) -> int:
    if args.engine == "ray":
        from routekit.batch.ray import score_cli

        return score_cli(args)
    from routekit.batch.score import ScoreJob

    job = ScoreJob(args.input, args.output, field=args.field, input_format=args.input_format,
                   output_format=args.output_format, threshold=args.threshold,
                   strong_fraction=args.strong_fraction, batch_size=args.batch_size, part_rows=args.part_rows,
                   resume=args.resume, skip_bad=args.skip_bad, rejected=args.rejected)
    router = common.load_router(args.router, args.threads)
    s = job.run(router, show_progress=True)
    rej = f", {s.rejected} rejected" if args.skip_bad else ""
    resumed = f" ({s.resumed_parts} parts resumed)" if s.resumed_parts else ""
    print(f"scored {s.rows} prompts: {s.strong} strong, {s.weak} weak{rej}{resumed} -> {s.output}",
          file=sys.stderr)
    return 0


def _calibrate_args(c) -> None:
    common.router_arg(c)
    c.add_argument("--strong-fraction", type=float, required=True,
                   help="fraction of these prompts (0..1) that should go to the strong model (required)")
    c.add_argument("--prompts", type=Path, required=True,
                   help="JSONL with a 'prompt' field, or one prompt per line (required)")
    c.add_argument("--field", default="prompt", help="JSON field holding the prompt (default: %(default)s)")
    c.add_argument("--write", type=Path, default=None,
                   help="write a copy of the artifact calibrated on these prompts to this folder "
                        "(default: print the threshold only)")
    c.add_argument("--force", action="store_true", help="replace the --write folder if it exists")
    c.add_argument("--json", action="store_true", help="print one JSON object")


def run_calibrate(args) -> int:
    from routekit.calibrate import (
        load_prompt_file,
        threshold_for_fraction,
        write_calibrated_copy,
    )
    from routekit.errors import BadInputError
    from routekit.io import check_output_dir

    if not 0.0 <= args.strong_fraction <= 1.0:  # before any work (NaN fails this too)
        raise BadInputError(f"--strong-fraction must be in [0, 1], got {args.strong_fraction}")
    if args.write is not None:  # before any work: refuse an existing folder (without --force) or an input
        check_output_dir(args.write, overwrite=args.force, inputs=[args.prompts])
    prompts = load_prompt_file(args.prompts, args.field)  # a bad line is found before the router loads
    if not prompts:
        raise BadInputError(f"{args.prompts}: no prompts (calibration needs at least one)")
    router = common.load_router(args.router, args.threads)
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


ROUTE = Command("route", "route one or more prompts ('-': one per line from stdin); one result per line",
                _route_args, run_route)
SCORE = Command("score", "route every prompt of a JSONL/CSV/Parquet/text file (streaming)", _score_args, run_score)
CALIBRATE = Command("calibrate", "threshold that sends a fraction of your prompts to strong", _calibrate_args,
                    run_calibrate)
EXPLAIN = Command("explain", "why a prompt is routed as it is: what moved its score, the threshold in force "
                  "(linear, mf, sw routers)", _explain_args, run_explain)

"""``routekit-export recalibrate``: recompute an artifact's thresholds on the reference traffic mix.

With ``--prob-map`` it fits and stores a calibrated win-rate map instead (:mod:`.calibration_map`).
The weights stay untouched; the ``calibration`` section is rewritten and the manifest sealed again,
through the same atomic artifact writer as every export (an interrupted run leaves the artifact as
it was).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routekit.cli.common import Command


def recalibrate(folder: Path, data_dir: Path, *, default_strong_fraction: float | None = None,
                calib_limit: int | None = None, threads: int | None = None, mix: tuple | None = None) -> dict:
    """``mix``: a :func:`~routekit_export.build.traffic_mix` result to reuse (default: built here)."""
    import routekit
    from routekit.calibrate import calibration_table, write_calibration
    from routekit.router import DEFAULT_STRONG_FRACTION

    from .build import traffic_mix

    folder = Path(folder)
    router = routekit.load(folder, threads=threads)
    old = router.calibration or {}
    frac = (old.get("default_strong_fraction", DEFAULT_STRONG_FRACTION) if default_strong_fraction is None
            else default_strong_fraction)
    prompts, weights, desc, components = mix or traffic_mix(data_dir, limit=calib_limit)
    table = calibration_table(router.win_rates(prompts, show_progress=True), prompts=desc, weights=weights,
                              mix=components, default_strong_fraction=frac)
    write_calibration(router, folder, table, overwrite=True)
    return table


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .data import default_data_dir

    p.add_argument("artifact", type=Path, nargs="+", help="artifact folder(s)")
    p.add_argument("--data", type=Path, default=default_data_dir(), help="data folder")
    p.add_argument("--default-strong-fraction", type=float, default=None,
                   help="share of the mix the default threshold sends to strong (default: keep the artifact's)")
    p.add_argument("--calib-limit", type=int, default=None,
                   help="use only the first N Arena-Hard prompts (default: all)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    from .calibration_map import add_arguments

    add_arguments(p)  # --prob-map ...: a calibrated win-rate map instead of new thresholds


def run_cli(args) -> int:
    if args.prob_map is not None:
        from .calibration_map import run

        return run(args)
    from .build import traffic_mix

    mix = traffic_mix(args.data, limit=args.calib_limit)  # the same prompts for every artifact
    for folder in args.artifact:
        table = recalibrate(folder, args.data, default_strong_fraction=args.default_strong_fraction,
                            calib_limit=args.calib_limit, threads=args.threads, mix=mix)
        print(f"{folder}: {table['prompts']}; default strong fraction {table['default_strong_fraction']}, "
              f"thresholds {table['thresholds']}", file=sys.stderr)
    return 0


COMMAND = Command('recalibrate', "recompute an artifact's thresholds on the reference traffic mix (weights unchanged)", add_arguments, run_cli)

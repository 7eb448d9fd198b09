"""``routekit-export``: build routekit artifacts from data (needs ``pip install 'routekit[export]'``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from .data import default_data_dir

    p = argparse.ArgumentParser(prog="routekit-export", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encoder", help="export the MiniLM-L6 encoder to ONNX (pooling + L2 norm in the graph)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: int8 dynamic, per-channel)")
    e.add_argument("--max-length", type=int, default=256)
    e.add_argument("--force", action="store_true", help="replace --out if it exists")

    def common(sp):
        sp.add_argument("--data", type=Path, default=default_data_dir(), help="data folder (default: %(default)s)")
        sp.add_argument("--encoder", type=Path, required=True, help="folder written by `routekit-export encoder`")
        sp.add_argument("--out", type=Path, required=True)
        sp.add_argument("--name", default=None, help="artifact name in the manifest")
        sp.add_argument("--allow-noncommercial", action="store_true",
                        help="also train on CC BY-NC rows (AlpacaEval): research artifacts only")
        sp.add_argument("--limit", type=int, default=None, help="use only the first N battles (smoke tests)")
        sp.add_argument("--calib-limit", type=int, default=None, help="calibrate on the first N prompts only")
        sp.add_argument("--threads", type=int, default=None)
        sp.add_argument("--force", action="store_true", help="replace --out if it exists")

    m = sub.add_parser("train-mf", help="train a matrix-factorisation router and write its artifact")
    common(m)
    m.add_argument("--epochs", type=int, default=10)
    m.add_argument("--hidden", type=int, default=128)
    m.add_argument("--lr", type=float, default=3e-4)
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--weight-decay", type=float, default=1e-5)
    m.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .data import DataError

    try:
        if args.command == "encoder":
            from .build import build_encoder

            out = build_encoder(args.out, int8=not args.fp32, max_length=args.max_length, overwrite=args.force)
            print(f"wrote {out}")
        elif args.command == "train-mf":
            from .build import build_mf
            from .mf import MFConfig

            cfg = MFConfig(hidden=args.hidden, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                           weight_decay=args.weight_decay, seed=args.seed)
            metrics = build_mf(args.out, encoder_dir=args.encoder, data_dir=args.data, cfg=cfg,
                               allow_noncommercial=args.allow_noncommercial, limit=args.limit,
                               calib_limit=args.calib_limit, overwrite=args.force,
                               name=args.name or args.out.name, threads=args.threads)
            print(json.dumps({"artifact": str(args.out), **metrics["final"]}, indent=2))
    except (DataError, FileExistsError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

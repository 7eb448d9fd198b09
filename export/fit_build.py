"""Write the artifact chosen by ``routekit-export fit`` and the ``fit`` command line."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from routekit.cli.common import Command

from . import fit as F
from .fit_data import LabelError, read_labels, write_rejected

# --------------------------------------------------------------------------- encoder


class EncoderSource:
    """An encoder to embed with and copy into the artifact: an export encoder folder
    (``encoder.json``) or any artifact folder / shipped name with a local encoder section."""

    def __init__(self, where: str | Path | None = None, threads: int | None = None):
        from routekit import artifact
        from routekit.errors import BadArtifactError

        folder = Path(where) if where is not None else None
        if folder is not None and (folder / "encoder.json").is_file():
            from .build import load_encoder

            self.encoder, spec = load_encoder(folder, threads=threads)
            self.key = spec["sha256"]
            self.spec = {k: v for k, v in spec.items() if k != "sha256"}
            self.path = lambda rel: folder / rel
            self.desc = str(folder)
            return
        from routekit.encoders import encoder_from_manifest

        src = artifact.resolve(str(where) if where is not None else "linear")
        manifest = artifact.read_manifest(src)
        spec = manifest.get("encoder")
        if not isinstance(spec, dict) or spec.get("kind") == "openai" or "file" not in spec:
            raise BadArtifactError(f"{src}: has no local encoder to reuse (pass --encoder FOLDER)")
        self.encoder = encoder_from_manifest(manifest, threads=threads)
        self.key = manifest.files[spec["file"]]["sha256"]
        self.spec = dict(spec)
        self.path = manifest.path
        self.desc = f"the encoder of artifact {manifest.name!r}"

    def embed(self, texts: list[str]) -> np.ndarray:
        from .embed import embed_texts

        return embed_texts(self.encoder, texts, encoder_key=self.key)

    def tokenizer(self):
        from routekit.routers.linear import load_bow_tokenizer

        return load_bow_tokenizer(self.path(self.spec["tokenizer"]))

    def copy_into(self, dest: Path) -> dict:
        for key in ("file", "tokenizer"):
            shutil.copyfile(self.path(self.spec[key]), dest / self.spec[key])
        return dict(self.spec)


# --------------------------------------------------------------------------- artifact


def _router_files(kind: str, inp: F.FitInputs, dest: Path, work: Path) -> tuple[dict, dict, str]:
    """Train ``kind`` on every label, write its files into ``dest``: (router section, metrics, description)."""
    lab = inp.labels
    n = len(lab)
    rows = np.arange(n)
    if kind == "linear":
        from routekit.routers.linear import FEATURE_NAMES

        weights, metrics = F._linear_fit(inp, rows)
        np.savez(dest / "linear.npz", **weights)
        return ({"weights": "linear.npz", "features": list(FEATURE_NAMES), "max_chars": 4000},
                {"platt": metrics["platt"], "vocab": metrics["vocab"], "config": metrics["config"]},
                "Linear head on the encoder's embedding + word-piece tf-idf + surface features, fitted on your labels")
    keep = np.ones(len(lab.battle_prompts), bool)
    if kind == "sw":
        d = F._sw_prepare(inp, keep)
        weighting, gamma, res = F._sw_choose(d, inp.seed)
        np.savez(dest / "sw.npz", embeddings=d["emb"].astype(np.float32), battle_prompt=d["prompt"].astype(np.int32),
                 tier_a=d["ta"].astype(np.uint8), tier_b=d["tb"].astype(np.uint8),
                 outcome=d["outcome"].astype(np.float32))
        from .sw import _write_index

        tiers = {m: int(t) for m, t in zip(lab.models, d["tier_of"])}
        router = {"data": "sw.npz", "tiers": d["tiers"], "model_tiers": tiers, "weighting": weighting,
                  "gamma": gamma, "k": 256,
                  "tier_method": "Bradley-Terry MLE over the label battles, optimal 1-D k-means split of the ratings"}
        index = _write_index(d["emb"], "auto", dest / "sw.faiss")  # as train-sw: fast mode's neighbour index
        if index:
            router["index"] = index
        return (router,
                {"gamma_selection": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
                                     for r in res]},
                "Similarity-weighted ranking router (RouteLLM §4.1) fitted on your labels")
    if kind == "mf":
        weights, metrics = F._mf_fit(inp, keep)
        np.savez(dest / "mf.npz", **weights)
        return ({"weights": "mf.npz", "hidden": int(weights["proj_b"].size)},
                {"train": metrics["final"].get("train", {}), "config": metrics["config"]},
                "Matrix-factorisation router (RouteLLM §4) fitted on your labels")
    raise ValueError(kind)


def write_artifact(kind: str, inp: F.FitInputs, out: Path, enc: EncoderSource, *, cv: dict, why: dict,
                   calibration: tuple[list[str], str], name: str, overwrite: bool, work: Path,
                   prior=None) -> None:
    from routekit import artifact

    from .build import calibrate_in_place, pair_fields
    from .irt_build import training_section

    lab = inp.labels
    training = training_section(lab, enc)
    metrics_cv = {**cv, "chosen": kind, "not_tried": why,
                  "selected_by": ("irt (the default adapted to your labels) unless another candidate's out-of-fold "
                                  "APGR is higher with the paired 95 % interval of the difference above 0"
                                  if "irt" in cv["candidates"] else
                                  "highest out-of-fold APGR (earlier kind on a tie: linear, sw, mf, bert)")}
    if kind in ("irt", F.DEFAULT):
        from .irt_build import write_pair

        return write_pair(kind, inp, prior, out, enc, training=training, metrics_cv=metrics_cv,
                          calibration=calibration, name=name, overwrite=overwrite)
    if kind == "bert":
        return _write_bert(inp, out, calibration, name, overwrite, work, training, metrics_cv)
    models = list(lab.models) if kind in ("sw", "mf") else [lab.strong, lab.weak]
    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        enc_section = enc.copy_into(w.dir)
        router, metrics, desc = _router_files(kind, inp, w.dir, work)
        w.manifest.update({"name": name, "kind": kind, "description": desc,
                           **pair_fields(models, lab.strong, lab.weak), "encoder": enc_section,
                           "router": router, "training": training,
                           "metrics": {"cross_validation": metrics_cv, "final_fit": metrics}})
        calibrate_in_place(w, *calibration)


def _write_bert(inp, out, calibration, name, overwrite, work, training, metrics_cv) -> None:
    from .convert import convert_bert

    model_dir, cfg = F._bert_fit(inp, np.arange(len(inp.labels)), work / "final")
    convert_bert(model_dir, out, int8=True, max_length=cfg.max_length, overwrite=overwrite, name=name,
                 calibration=calibration, source="fine-tuned by routekit-export fit from MiniLM-L6",
                 license="Apache-2.0 (MiniLM-L6 base)",
                 strong=inp.labels.strong, weak=inp.labels.weak,
                 extra={"description": "BERT classifier router (MiniLM-L6, 3 labels) fine-tuned on your labels",
                        "training": training, "metrics": {"cross_validation": metrics_cv}})


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", type=Path, required=True,
                   help="JSONL of {prompt, <strong>: q, <weak>: q} / {prompt, scores: {...}} / "
                        "{prompt, model_a, model_b, winner}, or a CSV with prompt + model columns")
    p.add_argument("--strong", default=None,
                   help="the strong model's name in the label file (without --strong/--weak: every model of the "
                        "file goes into one item-response artifact; with them too, they name its routing pair; default: none)")
    p.add_argument("--weak", default=None, help="the weak model's name in the label file (default: none, as --strong)")
    p.add_argument("--models", nargs="+", default=None,
                   help="without --strong/--weak: fit only these models of the label file (default: every model)")
    p.add_argument("--add-model", default=None, metavar="NAME",
                   help="add this model (its labels in --labels) to the irt artifact --to; the others stay as they are; default: none)")
    p.add_argument("--to", default=None, metavar="ARTIFACT", help="the irt artifact --add-model extends (default: none; needed with --add-model)")
    p.add_argument("--prior", default="linear",
                   help="linear artifact whose score is the prior of the adapted (irt) kind (default: the shipped one)")
    p.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    p.add_argument("--calibration-prompts", type=Path, default=None,
                   help="your unlabelled traffic (.jsonl with 'prompt' or one per line) for the thresholds "
                        "(default: the labelled prompts)")
    p.add_argument("--kinds", nargs="+", choices=F.KINDS, default=None,
                   help="candidates to cross-validate beside the default as it is (default: by data size: irt, "
                        f"linear, sw; mf from {F.MF_MIN_PROMPTS} prompts; bert from {F.BERT_MIN_PROMPTS}); irt is "
                        "kept unless another is better with the paired CV interval above 0")
    p.add_argument("--skip-bad", action="store_true",
                   help="drop malformed rows (count printed, rows written to --rejected) instead of stopping")
    p.add_argument("--rejected", type=Path, default=None, help="where --skip-bad writes them (default: OUT.rejected.jsonl)")
    p.add_argument("--encoder", default=None,
                   help="encoder folder (routekit-export encoder) or artifact to take the encoder from "
                        "(default: the shipped MiniLM int8 encoder)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--bert-steps", type=int, default=600, help="fine-tuning steps per BERT fit")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the fits")
    p.add_argument("--name", default=None, help="artifact name in the manifest (default: the folder name)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads for embedding (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args) -> dict:
    from routekit.io import check_output, check_output_dir

    out = check_output_dir(args.out, inputs=[args.labels, args.calibration_prompts], overwrite=args.force)
    rej = Path(args.rejected or out.with_name(out.name + ".rejected.jsonl"))
    if args.skip_bad:
        check_output(rej, inputs=[args.labels], what="--rejected file")
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    from . import irt_build

    if args.add_model is not None:
        if args.to is None:
            raise LabelError("--add-model needs --to ARTIFACT (the irt artifact to extend)")
        return irt_build.run_add_model(args, out, rej, EncoderSource)
    if (args.strong is None) != (args.weak is None):
        raise LabelError("give both --strong and --weak (a pair), or neither (every model of the label file)")
    if args.strong is None or args.models:
        return irt_build.run_models(args, out, rej, EncoderSource)
    labels = read_labels(args.labels, args.strong, args.weak, skip_bad=args.skip_bad)
    if labels.rejected:
        write_rejected(labels.rejected, rej)
        F.log(f"skipped {len(labels.rejected)} bad row(s) of {labels.counts['rows']}; they are in {rej}")
    n = len(labels)
    if n < max(F.MIN_PROMPTS, 2 * args.folds):
        raise LabelError(f"{args.labels}: {n} prompts carry labels of both {args.strong!r} and {args.weak!r}; "
                         f"fit needs at least {max(F.MIN_PROMPTS, 2 * args.folds)} for {args.folds}-fold CV")
    if math.isclose(float(labels.strong_q.mean()), float(labels.weak_q.mean())):
        raise LabelError(f"{args.labels}: {args.strong!r} and {args.weak!r} have the same mean quality "
                         f"({labels.strong_q.mean():.4f}); APGR (and routing between them) is undefined")
    kinds, why = F.candidate_kinds(labels, args.kinds)
    calib = None
    if args.calibration_prompts is not None:
        from routekit.calibrate import load_prompt_file

        cp = load_prompt_file(args.calibration_prompts)
        if not cp:
            raise LabelError(f"{args.calibration_prompts}: no prompts")
        calib = (cp, f"{args.calibration_prompts.name} ({len(cp)} prompts)")
    F.log(f"{labels.path.name}: {n} labelled prompts, {len(labels.battle_prompts)} prompts in all, "
          f"{labels.battles['outcome'].size} battles over {len(labels.models)} models; candidates: {', '.join(kinds)}")
    enc = EncoderSource(args.encoder, threads=args.threads)
    inp = F.FitInputs(labels, enc.embed(labels.battle_prompts), enc.tokenizer(), bert_steps=args.bert_steps,
                      seed=args.seed)
    prior = irt_build.pair_inputs(inp, args, enc, kinds, why)
    work = out.with_name(f".{out.name}.fit-work")
    try:
        cv = F.cross_validate(inp, kinds, folds=args.folds, work=work)
        chosen = F.choose(cv)
        print(F.format_cv(cv, chosen, why))
        warn = F.verdict(cv, chosen)
        if warn:
            F.log(warn)
        F.log(f"training {chosen} on all {n} labelled prompts and writing {out}")
        write_artifact(chosen, inp, out, enc, cv=cv, why=why,
                         calibration=calib or (labels.prompts, f"{labels.path.name} (the labelled prompts, {n})"),
                         name=args.name or out.name, overwrite=args.force, work=work, prior=prior)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"artifact": str(out), "chosen": chosen, "cv": cv}


def run_cli(args) -> int:
    from routekit.errors import RoutekitError

    try:
        res = run(args)
    except (LabelError, FileExistsError, ValueError, RoutekitError, OSError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: res[k] for k in ("artifact", "chosen", "added", "seconds") if k in res}))
    return 0


COMMAND = Command('fit', 'fit a router for your own models from your own labels, starting from the shipped default: a strong/weak pair (CV picks the kind), every model of the file (no --strong/--weak), or one more model (--add-model)', add_arguments, run_cli)

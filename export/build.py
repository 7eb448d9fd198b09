"""Assemble complete artifact folders (encoder + router weights + manifest + calibration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import routekit
from routekit import artifact
from routekit.calibrate import calibration_table
from routekit.encoders import Encoder, encoder_from_spec
from routekit.router import DEFAULT_STRONG_FRACTION

from . import data as D
from .embed import embed_texts
from .encoder import write_encoder
from .errors import ExportError
from .mixture import EVERYDAY_CALIB, GSM8K_PRIOR_GAIN, LONG_EASY_CALIB, gsm8k_questions  # noqa: F401  (EVERYDAY_CALIB: re-exported)

ENCODER_SPEC = "encoder.json"


def build_encoder(out: Path, *, int8: bool = True, max_length: int = 256, overwrite: bool = False) -> Path:
    """An encoder folder (``encoder.onnx``, ``tokenizer.json``, ``encoder.json``) reused by every router."""
    out = Path(out)
    tmp = partial_encoder_dir(out, overwrite)
    return publish_encoder_dir(tmp, out, write_encoder(tmp, int8=int8, max_length=max_length))


def partial_encoder_dir(out: Path, overwrite: bool) -> Path:
    """An empty scratch folder beside ``out`` to build an encoder folder in (``out`` must not exist
    unless ``overwrite``)."""
    artifact.check_output_dir(out, overwrite=overwrite)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def publish_encoder_dir(tmp: Path, out: Path, spec: dict) -> Path:
    """Write ``spec`` (with the model file's sha256) as ``encoder.json`` into ``tmp``, then replace ``out``."""
    spec = dict(spec, sha256=artifact.sha256_file(tmp / spec["file"]))
    (tmp / ENCODER_SPEC).write_text(json.dumps(spec, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def load_encoder(folder: Path, threads: int | None = None) -> tuple[Encoder, dict]:
    folder = Path(folder)
    spec_path = folder / ENCODER_SPEC
    if not spec_path.is_file():
        raise ExportError(f"{folder}: not an encoder folder (run `routekit-export encoder --out {folder}` first)")
    spec = json.loads(spec_path.read_text())
    enc = encoder_from_spec(spec, path=lambda rel: folder / rel,
                            array=lambda rel: np.load(folder / rel, allow_pickle=False),
                            key=lambda rel: spec["sha256"], where=str(folder), threads=threads)
    return enc, spec


def copy_encoder(folder: Path, dest: Path) -> dict:
    spec = json.loads((Path(folder) / ENCODER_SPEC).read_text())
    for key in ("file", "tokenizer"):
        shutil.copyfile(Path(folder) / spec[key], dest / spec[key])
    return {k: v for k, v in spec.items() if k != "sha256"}


def pair_fields(models, strong: str = D.STRONG, weak: str = D.WEAK) -> dict:
    """A manifest's ``pair``, ``models`` and the known aliases that name one of those models."""
    models = list(models)
    return {"pair": {"strong": strong, "weak": weak}, "models": models,
            "aliases": {k: v for k, v in D.ALIASES.items() if v in models and k not in models}}


def noncommercial_fields(allow_noncommercial: bool) -> dict:
    """The manifest's record of whether CC BY-NC (AlpacaEval) rows went into training."""
    return {"noncommercial_rows_included": allow_noncommercial,
            "note": ("research artifact: trained on CC BY-NC rows, not for commercial use"
                     if allow_noncommercial else "AlpacaEval (CC BY-NC 4.0) rows excluded")}


def training_section(battles: D.Battles, allow_noncommercial: bool) -> dict:
    return {"battles": len(battles), "prompts": len(battles.prompts), "sources": battles.sources,
            **noncommercial_fields(allow_noncommercial)}


def calibrate_in_place(writer: artifact.ArtifactWriter, prompts: list[str], source: str, *,
                       weights=None, mix: dict | None = None,
                       default_strong_fraction: float | None = None) -> dict:
    """Load the half-built artifact through the runtime and store its calibration table.

    ``default_strong_fraction`` None: the share of ``mix`` that needs the strong model
    (:func:`strong_share`), :data:`~routekit.router.DEFAULT_STRONG_FRACTION` without a mix."""
    if default_strong_fraction is None:
        default_strong_fraction = strong_share(mix) if mix else DEFAULT_STRONG_FRACTION
    writer.write_manifest()
    router = routekit.load(writer.dir)
    table = calibration_table(router.win_rates(prompts, show_progress=True), prompts=source, weights=weights,
                              mix=mix, default_strong_fraction=default_strong_fraction)
    writer.manifest["calibration"] = table
    return table


#: The reference traffic mix the shipped thresholds are calibrated on: component -> share of traffic.
#: An assumption, not a measurement: real chat traffic holds many everyday requests (greetings,
#: quick facts, rewrites) and a minority of hard ones; Arena-Hard prompts stand in for real chat
#: (they are harder than typical chat), GSM8K train questions for maths word problems.  The weak-side
#: 40 % is short everyday requests (25 %) and long easy ones (15 %: a pasted email, review, log or code
#: with a routine instruction), so that a threshold is not set as if every long prompt were a hard one.
TRAFFIC_MIX = {"arena-hard": 0.5, "everyday": 0.25, "long-easy": 0.15, "gsm8k-train": 0.1}
#: Share of each mix component's prompts that need the strong model (components not listed: none); the
#: mix's weighted sum is the default strong fraction of routers calibrated on it (a perfect router would
#: send exactly those prompts to strong).  Measured, not assumed:
#: * arena-hard: the pair's Arena-Bench judge scores (``train/multi_model_scores.jsonl``, source
#:   arena-bench-v1): gpt-4-1106-preview above Mixtral on 196 of 292 prompts (a tie needs no strong model);
#: * gsm8k-train: the pair's published GSM8K accuracy gap (:data:`mixture.GSM8K_PRIOR_GAIN`, 92.0 % vs
#:   74.4 %), the least share of questions that only the strong model solves.
#: (Until 2026-12-06 every Arena-Hard and GSM8K prompt counted as needing strong: 0.6 of the mix.)
ARENA_BENCH_STRONG_BETTER = (196, 292)
NEEDS_STRONG = {"arena-hard": round(ARENA_BENCH_STRONG_BETTER[0] / ARENA_BENCH_STRONG_BETTER[1], 4),
                "gsm8k-train": round(GSM8K_PRIOR_GAIN, 4)}
ARENA_HARD_SOURCE = "shared/data/calibration/prompts.jsonl (Arena-Hard v0.1+v2.0, Apache-2.0)"


def strong_share(mix: dict | None = None) -> float:
    """Share of a mix record's traffic (:func:`traffic_mix`'s; default: all of :data:`TRAFFIC_MIX`,
    0.3532) that needs the strong model, per :data:`NEEDS_STRONG`."""
    shares = {n: m["share"] for n, m in mix.items()} if mix is not None else TRAFFIC_MIX
    return round(sum(v * NEEDS_STRONG.get(n, 0.0) for n, v in shares.items()) / sum(shares.values()), 4)


def traffic_mix(data_dir: Path, *, gsm8k_n: int = 250, limit: int | None = None
                ) -> tuple[list[str], np.ndarray, str, dict]:
    """Prompts, per-prompt weights, a description and the ``mix`` record of :data:`TRAFFIC_MIX`.

    Each component's prompts share its traffic share equally.  GSM8K questions are the *last*
    ``gsm8k_n`` of :func:`mixture.gsm8k_questions`, whose first ones ``mixture.extra_rows`` trains
    on, so the two never overlap (for any training draw of up to ``len - gsm8k_n`` questions)."""
    arena, _ = calibration_prompts(data_dir, limit)
    gsm = gsm8k_questions(data_dir)
    gsm = [r["prompt"] for r in gsm[max(len(gsm) - gsm8k_n, 0):]]
    long_easy = D.read_prompts(LONG_EASY_CALIB) if LONG_EASY_CALIB.is_file() else []
    parts = {"arena-hard": arena, "everyday": D.read_prompts(EVERYDAY_CALIB), "long-easy": long_easy,
             "gsm8k-train": gsm}
    sources = {"arena-hard": ARENA_HARD_SOURCE,
               "everyday": "routekit export/data/everyday_calib.jsonl (written for routekit; never trained on)",
               "long-easy": "routekit export/data/long_easy_calib.jsonl (written for routekit; never trained on)",
               "gsm8k-train": "shared/data/unlabelled/gsm8k_train_questions.jsonl (GSM8K train, MIT; "
                              "disjoint from the training draw)"}
    shares = {n: s for n, s in TRAFFIC_MIX.items() if parts[n]}  # a missing component: the rest renormalised
    total = sum(shares.values())
    prompts, weights, mix = [], [], {}
    for name, share in shares.items():
        ps = parts[name]
        prompts += ps
        weights += [share / total / len(ps)] * len(ps)
        mix[name] = {"share": round(share / total, 4), "n": len(ps), "source": sources[name],
                     "needs_strong": NEEDS_STRONG.get(name, 0.0)}
    desc = ("reference traffic mix: " + ", ".join(f"{100 * m['share']:.0f} % {n}" for n, m in mix.items())
            + f" ({len(prompts)} prompts, weighted)")
    return prompts, np.array(weights), desc, mix


def calibration_prompts(data_dir: Path, limit: int | None = None) -> tuple[list[str], str]:
    path = Path(data_dir) / "calibration" / "prompts.jsonl"
    prompts = D.read_prompts(path)[:limit]
    return prompts, f"{ARENA_HARD_SOURCE}, {len(prompts)} prompts"


def build_mf(out: Path, *, encoder_dir: Path, data_dir: Path, cfg, allow_noncommercial: bool = False,
             limit: int | None = None, calib_limit: int | None = None, overwrite: bool = False,
             name: str = "mf", threads: int | None = None, extra: list[str] | None = None) -> dict:
    from .mf import train_mf

    artifact.check_output_dir(out, overwrite=overwrite, inputs=[encoder_dir, data_dir])
    battles = D.load_training(data_dir, allow_noncommercial=allow_noncommercial, limit=limit, extra=extra)
    enc, spec = load_encoder(encoder_dir, threads=threads)
    emb = embed_texts(enc, battles.prompts, encoder_key=spec["sha256"])
    weights, metrics, _ = train_mf(emb, battles.arrays(), len(battles.models), cfg)
    prompts, source = calibration_prompts(data_dir, calib_limit)
    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        enc_section = copy_encoder(encoder_dir, w.dir)
        np.savez(w.dir / "mf.npz", **weights)
        w.manifest.update({
            "name": name, "kind": "mf",
            "description": "Matrix-factorisation router (RouteLLM §4) on MiniLM-L6 embeddings",
            **pair_fields(battles.models),
            "encoder": enc_section,
            "router": {"weights": "mf.npz", "hidden": cfg.hidden},
            "training": training_section(battles, allow_noncommercial),
            "metrics": {"validation": metrics["final"].get("val", {}), "train": metrics["final"].get("train", {}),
                        "config": metrics["config"]},
        })
        calibrate_in_place(w, prompts, source)
    return metrics

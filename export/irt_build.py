"""``routekit-export fit`` for the item-response kind (``irt``): the prior, the artifact, N models, add a model.

* :class:`Prior` -- the default's score d(q) (logit of the shipped linear head's P(strong wins);
  ``--prior`` names another linear artifact) on the embeddings of the default's own encoder;
* :func:`write_artifact` -- encoder + ``prior.npz`` (the prior head's weights, copied) + ``irt.npz``
  (the fitted parameters), calibrated like every other artifact;
* :func:`run_models` -- ``fit`` without ``--strong/--weak``: every model of the label file (or
  ``--models``), the penalties chosen by cross-validated log-loss, an out-of-fold report;
* :func:`run_add_model` -- ``fit --add-model NAME --to ARTIFACT``: one more model from its labels, the
  other models' parameters copied unchanged.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from routekit.numeric import logit

from . import irt as T
from .fit_data import LabelError, read_model_labels, write_rejected


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Prior:
    """The default's score as the fit's prior: a ``linear`` artifact (the shipped one by default)."""

    def __init__(self, where: str | Path = "linear"):
        import routekit

        self.router = routekit.load(str(where))
        if self.router.kind != "linear":
            raise LabelError(f"--prior {where}: the prior must be a linear artifact, got kind {self.router.kind!r}")
        m = self.router.manifest
        self.weights_file = m.path(m["router"].get("weights", "linear.npz"))
        self.encoder_key = m.files[m["encoder"]["file"]]["sha256"]
        self.name = m.name
        #: what the irt artifact records to run the prior (``router.prior``; its weights become prior.npz)
        self.section = {"weights": "prior.npz", "router": {**m["router"], "weights": "prior.npz"},
                        "pair": {"strong": self.router.default_strong, "weak": self.router.default_weak},
                        "artifact": m.name}

    def logits(self, emb: np.ndarray, prompts: list[str]) -> np.ndarray:
        """logit P(strong wins) of the prior for embedded prompts (what the irt router computes)."""
        return logit(self.router.score_embeddings(emb, prompts))

    def check_encoder(self, enc) -> None:
        if enc.key != self.encoder_key:
            raise LabelError(f"the adapted (irt) kind needs the prior's encoder ({self.name}'s); --encoder "
                             f"{enc.desc} is another one")


def standardise(raw: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(d, X, d_norm, x_mean): the prior standardised and the embeddings centred over these prompts."""
    d_norm = np.array([float(np.mean(raw)), float(np.std(raw)) if np.std(raw) > 1e-9 else 1.0])
    x_mean = np.asarray(emb, np.float64).mean(0)
    return (raw - d_norm[0]) / d_norm[1], np.asarray(emb, np.float64) - x_mean, d_norm, x_mean


# --------------------------------------------------------------------------- artifact


def save_params(path: Path, params: T.IRTParams, x_mean: np.ndarray, d_norm: np.ndarray) -> None:
    np.savez(path, b=params.b, alpha=params.alpha, a=params.a, u=params.u, V=params.V.astype(np.float64),
             absolute=params.absolute.astype(np.float64), x_mean=x_mean, d_norm=d_norm)


def read_params(manifest) -> tuple[T.IRTParams, np.ndarray, np.ndarray, T.IRTConfig]:
    """(params, x_mean, d_norm, config) of an ``irt`` artifact."""
    spec = manifest["router"]
    w = manifest.array(spec.get("weights", "irt.npz"))
    params = T.IRTParams(list(manifest["models"]), *(np.asarray(w[k], np.float64) for k in ("b", "alpha", "a", "u", "V")),
                         np.asarray(w["absolute"]) > 0.5)
    return params, np.asarray(w["x_mean"], np.float64), np.asarray(w["d_norm"], np.float64), \
        T.IRTConfig.from_dict(spec.get("config") or {})


def write_artifact(out: Path, params: T.IRTParams, cfg: T.IRTConfig, *, prior: Prior, enc, x_mean, d_norm,
                   strong: str, weak: str, training: dict, metrics: dict, calibration: tuple[list[str], str],
                   name: str, overwrite: bool, description: str | None = None) -> None:
    from routekit import artifact

    from .build import calibrate_in_place, pair_fields

    prior.check_encoder(enc)
    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        enc_section = enc.copy_into(w.dir)
        shutil.copyfile(prior.weights_file, w.dir / "prior.npz")
        save_params(w.dir / "irt.npz", params, x_mean, d_norm)
        fitted = {m: ("quality" if a else "battles") for m, a in zip(params.models, params.absolute)}
        w.manifest.update({
            "name": name, "kind": "irt",
            "description": description or ("Item-response router: each model's quality per prompt from the default's "
                                            "score (prior) and the embedding, fitted on your labels"),
            **pair_fields(params.models, strong, weak), "encoder": enc_section,
            "router": {"weights": "irt.npz", "prior": prior.section, "config": cfg.to_dict(), "fitted_on": fitted},
            "training": training, "metrics": metrics})
        calibrate_in_place(w, *calibration)


def training_section(ml, enc) -> dict:
    return {"labels": ml.summary(), "encoder_source": enc.desc, "noncommercial_rows_included": None,
            "note": "your label file; its licence is yours to record (routekit-export fit does not know it)"}


# --------------------------------------------------------------------------- a strong/weak pair (fit --strong --weak)


def pair_inputs(inp, args, enc, kinds: list[str], why: dict) -> Prior | None:
    """Give ``inp`` what the ``default`` and ``irt`` candidates need (the prior on every prompt, the
    centred embeddings, the pair's labels); without the prior's encoder both are dropped (``why``)."""
    from . import fit as F

    if F.DEFAULT not in kinds and "irt" not in kinds:
        return None
    try:
        prior = Prior(args.prior)
        prior.check_encoder(enc)
    except LabelError as exc:
        for k in (F.DEFAULT, "irt"):
            if k in kinds:
                kinds.remove(k)
                why[k] = str(exc)
        return None
    lab = inp.labels
    d, X, prior.d_norm, prior.x_mean = standardise(prior.logits(inp.emb, lab.battle_prompts), inp.emb)
    ml = read_model_labels(args.labels, models=[lab.strong, lab.weak], skip_bad=args.skip_bad, require_all=False)
    at = {p: i for i, p in enumerate(lab.battle_prompts)}
    inp.prior_d, inp.irt_X = d, X
    inp.irt_obs = T.observations(ml.quality, ml.battles, np.array([at.get(p, -1) for p in ml.prompts], np.int64))
    return prior


def write_pair(kind: str, inp, prior: Prior, out: Path, enc, *, training: dict, metrics_cv: dict,
               calibration, name: str, overwrite: bool) -> None:
    """The pair's ``irt`` artifact: fitted on every label, or (``default`` chosen) the prior as it is."""
    lab = inp.labels
    models = [lab.strong, lab.weak]
    if kind == "irt":
        params = T.fit(inp.prior_d, inp.irt_X, inp.irt_obs, models, T.PAIR_CONFIG,
                       alpha0=T.prior_alpha(models, lab.strong, lab.weak))
        desc = None
    else:
        params = T.prior_params(models, inp.irt_X.shape[1], lab.strong, lab.weak)
        desc = ("The shipped default's score as it is, under your pair's names (cross-validation found no "
                "candidate fitted on your labels measurably better)")
    write_artifact(out, params, T.PAIR_CONFIG, prior=prior, enc=enc, x_mean=prior.x_mean, d_norm=prior.d_norm,
                   strong=lab.strong, weak=lab.weak, training=training, metrics={"cross_validation": metrics_cv},
                   calibration=calibration, name=name, overwrite=overwrite, description=desc)


# --------------------------------------------------------------------------- N models: cross-validated report


def cv_models(d, X, obs: T.Observations, models: list, cfg: T.IRTConfig, *, alpha0, folds: int = 5,
              seed: int = 0) -> dict:
    """Out-of-fold log-loss (adapted vs each model's mean quality), and per prompt labelled for every
    model: accuracy of the predicted best model vs the best single model (chosen on the other folds)."""
    from .fit_data import prompt_folds

    M = len(models)
    prompts = obs.prompts
    fold_of = np.full(len(d), -1)
    fold_of[prompts] = prompt_folds(prompts.size, folds, seed)
    q_pred = np.full(obs.q_y.size, np.nan)
    q_base = np.full(obs.q_y.size, np.nan)
    ll_b = np.zeros(0)
    theta = np.full((len(d), M), np.nan)
    best_single = np.full(len(d), -1)
    for k in range(folds):
        test = fold_of == k
        train_obs = obs.subset((fold_of >= 0) & ~test)
        params = T.fit(d, X, train_obs, models, cfg, alpha0=alpha0)
        rows = np.flatnonzero(test)
        theta[rows] = params.theta(d[rows], X[rows])
        means = np.array([train_obs.q_y[train_obs.q_model == j].mean() if np.any(train_obs.q_model == j) else 0.5
                          for j in range(M)])
        best_single[rows] = int(np.argmax(means))
        sel = test[obs.q_prompt]
        q_pred[sel] = T.sigmoid(theta[obs.q_prompt[sel], obs.q_model[sel]])
        q_base[sel] = np.clip(means[obs.q_model[sel]], 1e-4, 1 - 1e-4)
        if obs.b_o.size:
            bs = test[obs.b_prompt]
            z = theta[obs.b_prompt[bs], obs.b_a[bs]] - theta[obs.b_prompt[bs], obs.b_b[bs]]
            ll_b = np.append(ll_b, np.logaddexp(0.0, z) - obs.b_o[bs] * z)
    out: dict = {"folds": folds, "grouped_by": "prompt", "seed": seed, "config": cfg.to_dict(), "models": {}}
    if obs.q_y.size:
        y = obs.q_y
        ll = lambda p: float(-np.mean(y * np.log(np.clip(p, 1e-6, 1)) + (1 - y) * np.log(np.clip(1 - p, 1e-6, 1))))
        out["quality_log_loss"] = {"adapted": round(ll(q_pred), 4), "model_mean": round(ll(q_base), 4)}
        for j, m in enumerate(models):
            sel = obs.q_model == j
            if sel.any():
                out["models"][m] = {"labels": int(sel.sum()), "mean": round(float(y[sel].mean()), 4),
                                    "auc": _auc(q_pred[sel], y[sel])}
        full = _fully_labelled(obs, M)
        if full.size:
            Y = np.full((len(d), M), np.nan)
            Y[obs.q_prompt, obs.q_model] = obs.q_y
            pick = np.argmax(theta[full], axis=1)
            out["selection"] = {
                "prompts": int(full.size),
                "adapted_best_pick": round(float(Y[full, pick].mean()), 4),
                "best_single_model": round(float(Y[full, best_single[full]].mean()), 4),
                "oracle": round(float(np.nanmax(Y[full], axis=1).mean()), 4)}
    if ll_b.size:
        out["battle_log_loss"] = {"adapted": round(float(ll_b.mean()), 4), "coin": round(float(np.log(2)), 4)}
    return out


def _fully_labelled(obs: T.Observations, M: int) -> np.ndarray:
    seen = np.zeros((int(obs.q_prompt.max(initial=-1)) + 1, M), bool)
    seen[obs.q_prompt, obs.q_model] = True
    return np.flatnonzero(seen.all(axis=1))


def _auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """Probability that a label-1 prompt outranks a label-0 one (ties half); None without both."""
    from routekit.eval.suite import auc

    hard = np.asarray(y) >= 0.5
    if hard.all() or not hard.any():
        return None
    return round(auc(score, hard), 4)


def format_models_cv(rep: dict, chosen: dict, grid_table: list[dict] | None) -> str:
    lines = [f"CV ({rep['folds']}-fold, grouped by prompt), item-response fit of {len(rep['models'])} models"]
    if grid_table:
        lines.append("penalties (lam_u, lam_v, tau_a) by out-of-fold log-loss:")
        for row in grid_table:
            c = row["config"]
            mark = "  <- chosen" if c == chosen else ""
            lines.append(f"  {c['lam_u']!s:>5} {c['lam_v']!s:>5} {c['tau_a']:>5}   {row['cv_log_loss']:.4f}{mark}")
    if "quality_log_loss" in rep:
        q = rep["quality_log_loss"]
        lines.append(f"quality log-loss: adapted {q['adapted']:.4f}, each model's mean quality {q['model_mean']:.4f}")
        lines.append(f"{'model':<40} {'labels':>7} {'mean':>6} {'AUC':>6}")
        for m, r in rep["models"].items():
            auc = f"{r['auc']:.3f}" if r["auc"] is not None else "  –"
            lines.append(f"{m[:40]:<40} {r['labels']:>7} {r['mean']:>6.3f} {auc:>6}")
    if "selection" in rep:
        s = rep["selection"]
        lines.append(f"on {s['prompts']} prompts labelled for every model: predicted-best model right "
                     f"{s['adapted_best_pick']:.3f}, best single model {s['best_single_model']:.3f}, oracle {s['oracle']:.3f}")
    if "battle_log_loss" in rep:
        b = rep["battle_log_loss"]
        lines.append(f"battle log-loss: adapted {b['adapted']:.4f}, coin {b['coin']:.4f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def _calibration(args, prompts: list[str], what: str):
    if args.calibration_prompts is None:
        return prompts, f"{args.labels.name} ({what}, {len(prompts)})"
    from routekit.calibrate import load_prompt_file

    cp = load_prompt_file(args.calibration_prompts)
    if not cp:
        raise LabelError(f"{args.calibration_prompts}: no prompts")
    return cp, f"{args.calibration_prompts.name} ({len(cp)} prompts)"


def _embedded(args, ml, encoder_source):
    prior = Prior(args.prior)
    enc = encoder_source(args.encoder, threads=args.threads)
    prior.check_encoder(enc)
    emb = enc.embed(ml.prompts)
    return prior, enc, emb


def run_models(args, out: Path, rej: Path, encoder_source) -> dict:
    """Fit every model of the label file (or ``--models``) into one ``irt`` artifact (``encoder_source``:
    :class:`routekit_export.fit_build.EncoderSource`)."""
    t0 = time.time()
    ml = read_model_labels(args.labels, models=args.models, skip_bad=args.skip_bad)
    if ml.rejected:
        write_rejected(ml.rejected, rej)
        log(f"skipped {len(ml.rejected)} bad row(s) of {ml.counts['rows']}; they are in {rej}")
    if len(ml.models) < 2:
        raise LabelError(f"{args.labels}: labels of {len(ml.models)} model(s); fit needs at least two")
    if len(ml.prompts) < max(10, 2 * args.folds):
        raise LabelError(f"{args.labels}: {len(ml.prompts)} labelled prompts; fit needs at least {max(10, 2 * args.folds)}")
    prior, enc, emb = _embedded(args, ml, encoder_source)
    d, X, d_norm, x_mean = standardise(prior.logits(emb, ml.prompts), emb)
    obs = T.observations(ml.quality, ml.battles)
    strong, weak = _pair(args, ml)
    alpha0 = T.prior_alpha(ml.models, strong, weak)
    log(f"{ml.path.name}: {len(ml.prompts)} prompts, {ml.quality['y'].size} quality labels and "
        f"{ml.battles['outcome'].size} battles of {len(ml.models)} models; pair for routing: {strong} vs {weak}")
    grid_table = None
    if len(ml.models) >= T.GRID_MIN_MODELS:
        cfg, grid_table = T.choose_config(d, X, obs, ml.models, alpha0=alpha0, folds=args.folds, seed=args.seed)
    else:
        cfg = T.PAIR_CONFIG
    rep = cv_models(d, X, obs, ml.models, cfg, alpha0=alpha0, folds=args.folds, seed=args.seed)
    print(format_models_cv(rep, cfg.to_dict(), grid_table))
    params = T.fit(d, X, obs, ml.models, cfg, alpha0=alpha0)
    log(f"fitted {len(ml.models)} models in {time.time() - t0:.1f}s; writing {out}")
    write_artifact(out, params, cfg, prior=prior, enc=enc, x_mean=x_mean, d_norm=d_norm, strong=strong, weak=weak,
                   training=training_section(ml, enc),
                   metrics={"cross_validation": {**rep, "penalty_selection": grid_table,
                                                 "selected_by": ("lowest out-of-fold log-loss" if grid_table
                                                                 else "the fixed pair prior (two models)")}},
                   calibration=_calibration(args, ml.prompts, "the labelled prompts"),
                   name=args.name or out.name, overwrite=args.force)
    return {"artifact": str(out), "chosen": "irt", "models": ml.models, "seconds": round(time.time() - t0, 1)}


def _pair(args, ml) -> tuple[str, str]:
    """The pair ``route()`` uses: --strong/--weak, else the models with the highest and lowest mean quality."""
    if args.strong and args.weak:
        for m in (args.strong, args.weak):
            if m not in ml.models:
                raise LabelError(f"--strong/--weak: {m!r} has no label in {args.labels} (models: {ml.models[:12]})")
        return args.strong, args.weak
    M = len(ml.models)
    q = ml.quality
    means = np.array([q["y"][q["model"] == j].mean() if np.any(q["model"] == j) else np.nan for j in range(M)])
    if np.isfinite(means).sum() >= 2:
        order = np.argsort(-np.nan_to_num(means, nan=-1.0), kind="stable")
        return ml.models[order[0]], ml.models[[j for j in order if np.isfinite(means[j])][-1]]
    wins = np.zeros(M)  # battles only: most and fewest wins
    b = ml.battles
    np.add.at(wins, b["a"], b["outcome"])
    np.add.at(wins, b["b"], 1.0 - b["outcome"])
    order = np.argsort(-wins, kind="stable")
    return ml.models[order[0]], ml.models[order[-1]]


def run_add_model(args, out: Path, rej: Path, encoder_source) -> dict:
    """Add ``--add-model`` to the ``irt`` artifact ``--to``, every other model unchanged."""
    from routekit import artifact

    t0 = time.time()
    src = artifact.resolve(str(args.to))
    manifest = artifact.read_manifest(src)
    if manifest.get("kind") != "irt":
        raise LabelError(f"--to {args.to}: --add-model needs an irt artifact (written by fit), got kind "
                         f"{manifest.get('kind')!r}")
    params, x_mean, d_norm, cfg = read_params(manifest)
    name = args.add_model
    if name in params.models:
        raise LabelError(f"--add-model {name!r}: already in {src}'s model table")
    ml = read_model_labels(args.labels, models=[name] + list(params.models), skip_bad=args.skip_bad, require_all=False)
    if ml.rejected:
        write_rejected(ml.rejected, rej)
        log(f"skipped {len(ml.rejected)} bad row(s) of {ml.counts['rows']}; they are in {rej}")
    # model ids: the artifact's order, the new model last
    order = [ml.models.index(m) for m in params.models] + [0]
    remap = np.empty(len(ml.models), np.int64)
    remap[order] = np.arange(len(order))
    obs = T.observations({**ml.quality, "model": remap[ml.quality["model"]]},
                         {**ml.battles, "a": remap[ml.battles["a"]], "b": remap[ml.battles["b"]]})
    new = len(params.models)
    mine = (obs.q_model == new).sum() + ((obs.b_a == new) | (obs.b_b == new)).sum()
    if not mine:
        raise LabelError(f"{args.labels}: no label of {name!r}")
    import routekit

    enc = encoder_source(src, threads=args.threads)
    emb = enc.embed(ml.prompts)
    # the prior stored in the artifact, as its router computes it
    d = (routekit.load(src).prior_logits(emb, ml.prompts) - d_norm[0]) / d_norm[1]
    X = np.asarray(emb, np.float64) - x_mean
    grown = T.add_model(params, name, d, X, obs, cfg)
    log(f"{name}: {int(mine)} labels on {len(ml.prompts)} prompts; fitted in {time.time() - t0:.1f}s (the other "
        f"{len(params.models)} models unchanged); writing {out}")
    _write_grown(manifest, grown, (x_mean, d_norm), out, args, ml, name, int(mine))
    return {"artifact": str(out), "chosen": "irt", "added": name, "labels": int(mine),
            "seconds": round(time.time() - t0, 1)}


def _write_grown(manifest, params: T.IRTParams, norms: tuple, out: Path, args, ml, name: str, labels: int) -> None:
    """The artifact of ``manifest`` with ``params`` (one model more; ``norms``: its x_mean and d_norm, as
    read): every other file copied; the pair's win rates do not change, so its calibration table is kept
    (unless --calibration-prompts asks for a new one)."""
    from routekit import artifact

    from .build import calibrate_in_place

    weights = manifest["router"].get("weights", "irt.npz")
    with artifact.rewrite(manifest, out, overwrite=args.force, skip=(weights,),
                          drop=("created", "routekit_version")) as w:
        save_params(w.dir / weights, params, *norms)
        router = dict(manifest["router"])
        router["fitted_on"] = {**router.get("fitted_on", {}), name: "quality" if params.absolute[-1] else "battles"}
        training = dict(manifest.get("training") or {})
        training["added_models"] = list(training.get("added_models", [])) + [
            {"model": name, "labels": labels, "label_file": ml.summary()}]
        w.manifest.update(name=args.name or out.name, models=params.models, router=router, training=training)
        if args.calibration_prompts is not None:
            calibrate_in_place(w, *_calibration(args, [], ""))

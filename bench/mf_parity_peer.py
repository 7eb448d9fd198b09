"""Parity of a converted MF artifact with RouteLLM 0.2.0's own MatrixFactorizationRouter.

Needs a second virtualenv with ``routellm==0.2.0`` (default ``../peer/venv`` beside this repo, ``$PEER_PYTHON`` or ``--peer-python``).
For each checkpoint (the peer bench's random MF checkpoint, plus one written here in the same
on-disk format with larger weights so that win rates spread over (0, 1)):

1. convert it with ``routekit_export.convert.convert_mf`` (this interpreter);
2. score N fixed random unit 1536-d embeddings with routekit's MF router (``router.scores``);
3. in the peer venv, build ``MatrixFactorizationRouter(checkpoint_path=..., strong_model=...,
   weak_model=...)`` and call ``calculate_strong_win_rate(prompt)`` with the module global
   ``OPENAI_CLIENT`` replaced by a stub that returns the same embeddings (no network);
4. report max |ΔP| per model pair and check the 64-model id tables agree.

    python bench/mf_parity_peer.py [--n 20] [--tol 1e-6] [--json out.json]

Exit status 0 when every |ΔP| <= tol and the tables match.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import PEER_ASSETS  # noqa: E402 - bench/ is on sys.path
from _common import PEER_PY as PEER_PYTHON

PEER_CKPT = PEER_ASSETS + "/mf_ckpt"
PAIRS = [("gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"), ("claude-2.1", "llama-2-7b-chat"),
         ("gpt-3.5-turbo-0613", "gpt-4-0613"), ("zephyr-7b-beta", "RWKV-4-Raven-14B")]

# Runs inside the peer venv: argv = checkpoint, embeddings.npy, pairs.json; prints JSON.
PEER_CODE = r"""
import json, os, sys, types
os.environ.setdefault("OPENAI_API_KEY", "sk-offline-dummy")   # routellm builds an OpenAI client at import
import numpy as np, torch
torch.set_num_threads(1)
import routellm.routers.matrix_factorization.model as mfmod
from routellm.routers.routers import MatrixFactorizationRouter

ckpt, emb_path, pairs = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
emb = np.load(emb_path)
table = {f"prompt-{i}": emb[i].tolist() for i in range(len(emb))}
def create(input, model):
    assert model == "text-embedding-3-small", model
    return types.SimpleNamespace(data=[types.SimpleNamespace(embedding=table[input[0]])])
mfmod.OPENAI_CLIENT = types.SimpleNamespace(embeddings=types.SimpleNamespace(create=create))
out = {"model_ids": mfmod.MODEL_IDS, "win_rates": {}}
for strong, weak in pairs:
    r = MatrixFactorizationRouter(checkpoint_path=ckpt, strong_model=strong, weak_model=weak)
    out["win_rates"][f"{strong}|{weak}"] = [r.calculate_strong_win_rate(f"prompt-{i}") for i in range(len(emb))]
print("JSON:" + json.dumps(out))
"""


def scaled_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A checkpoint in RouteLLM's MF format whose random weights give win rates across (0, 1)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"dim": 128, "num_classes": 1, "num_models": 64, "text_dim": 1536, "use_proj": True}, indent=2))
    save_file({"P.weight": (rng.standard_normal((64, 128)) * rng.uniform(0.2, 5, (64, 1))).astype(np.float32),
               "text_proj.0.weight": rng.standard_normal((128, 1536)).astype(np.float32),
               "classifier.0.weight": rng.standard_normal((1, 128)).astype(np.float32)},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def compare(ckpt: Path, emb: np.ndarray, work: Path, peer_python: str) -> dict:
    from routekit_export.convert import ROUTELLM_MF_MODELS, convert_mf

    import routekit

    art = convert_mf(ckpt, work / f"art-{ckpt.name}", overwrite=True)
    ours = {f"{s}|{w}": routekit.load(art, strong=s, weak=w).scores(emb).tolist() for s, w in PAIRS}
    (work / "pairs.json").write_text(json.dumps(PAIRS))
    np.save(work / "emb.npy", emb)
    t0 = time.perf_counter()
    res = subprocess.run([peer_python, "-c", PEER_CODE, str(ckpt), str(work / "emb.npy"), str(work / "pairs.json")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    line = next((x for x in res.stdout.splitlines() if x.startswith("JSON:")), None)
    if res.returncode != 0 or line is None:
        raise SystemExit(f"peer run failed ({res.returncode}):\n{res.stderr[-3000:]}")
    peer = json.loads(line[5:])
    ids = peer["model_ids"]
    table_ok = [n for n, _ in sorted(ids.items(), key=lambda kv: kv[1])] == list(ROUTELLM_MF_MODELS)
    pairs = {}
    for key, ref in peer["win_rates"].items():
        ref, got = np.array(ref), np.array(ours[key])
        pairs[key] = {"max_abs_dP": float(np.abs(got - ref).max()), "ref_min": float(ref.min()),
                      "ref_max": float(ref.max())}
    return {"checkpoint": str(ckpt), "table_matches": table_ok, "pairs": pairs,
            "peer_seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default=PEER_PYTHON)
    ap.add_argument("--peer-checkpoint", default=PEER_CKPT)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not Path(args.peer_python).is_file():
        print(f"skip: no peer interpreter at {args.peer_python}")
        return 0
    emb = np.random.default_rng(args.seed).standard_normal((args.n, 1536))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    results = []
    with tempfile.TemporaryDirectory(prefix="mf-parity-") as tmp:
        work = Path(tmp)
        ckpts = [scaled_checkpoint(work / "scaled")]
        if Path(args.peer_checkpoint, "config.json").is_file():
            ckpts.insert(0, Path(args.peer_checkpoint))
        for ckpt in ckpts:
            results.append(compare(ckpt, emb, work, args.peer_python))
    worst = max(p["max_abs_dP"] for r in results for p in r["pairs"].values())
    ok = worst <= args.tol and all(r["table_matches"] for r in results)
    summary = {"n_embeddings": args.n, "tol": args.tol, "max_abs_dP": worst, "ok": ok, "results": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

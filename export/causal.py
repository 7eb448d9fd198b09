"""Fine-tune a causal LM as a 5-score routing classifier and write a ``causal`` artifact.

The model reads a classification prompt (system prompt + the user's prompt) and is trained to put
its next-token probability on one of five score tokens ``[[1]]`` … ``[[5]]``.  The score says how
well the *weak* model is expected to do against the strong one; at run time
P(strong) = P([[1]]) + P([[2]]) + P([[3]]) (see ``routekit/routers/causal.py``).

Labels (``score_*`` functions below), all for the artifact's strong/weak pair:

* judge battles with per-answer scores (Arena-Bench: GPT-4 reference-guided 1–10 scores), margin
  ``m = score_strong - score_weak``:  m ≥ 4 → 1,  2 ≤ m < 4 → 2,  0 < m < 2 → 3,  m = 0 → 4,  m < 0 → 5;
* judge battles with a winner only (AlpacaEval, non-commercial, opt-in):
  strong wins → 2, tie → 4, weak wins → 5;
* golden correctness (MMLU train split, RouterBench ARC/Winogrande/MBPP):
  only strong correct → 1, both wrong → 4, both correct → 5, only weak correct → 5.

So scores 1–3 mean "the strong model's answer is strictly better" and P(strong) is the same event the
BERT router's 3-label convention estimates (strong wins, not tie or weak).

Objective: cross-entropy over the five score logits at the last prompt position (the quantity
routed on), not over the whole vocabulary.  The five output rows of the LM head are trained as a
separate parameter and written back into the head at the end, so the saved model is an ordinary
Hugging Face causal LM.  Full fine-tuning by default; ``lora_r > 0`` trains LoRA adapters with
``peft`` (``pip install peft``) and merges them into the weights before saving.

Real Llama-3-8B weights: see ``docs/causal.md``.  The same code runs a tiny random Llama built by
:func:`make_tiny_llama` for tests and smoke runs (``routekit-export train-causal --tiny``).

Layout: :mod:`.causal_labels` (prompt and labels), :mod:`.causal_train` (fine-tuning, artifact),
:mod:`.causal_convert` (RouteLLM checkpoints), this module (the ``train-causal`` command; it also
re-exports the names above).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routekit.cli.common import Command

from . import data as D
from .causal_convert import (
    convert_routellm_causal,
    find_prompt_file,
    format_to_template,
)
from .causal_labels import (
    LLAMA3_ASSISTANT,
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_TEMPLATE,
    PLAIN_TEMPLATE,
    SYSTEM_PROMPT,
    TINY_SPECIALS,
    USER_TEMPLATE,
    Examples,
    default_prompt_spec,
    load_examples,
    score_from_golden,
    score_from_margin,
    score_from_outcome,
)
from .causal_train import (
    LORA_TARGETS,
    CausalConfig,
    build_causal,
    load_base,
    make_tiny_llama,
    make_tiny_tokenizer,
    throughput,
    tiny_corpus,
    train_classifier,
    write_causal_artifact,
)

#: Optimizer steps of ``train-causal --tiny`` unless ``--max-steps`` says otherwise (a smoke test).
TINY_STEPS = 20

__all__ = ["convert_routellm_causal", "find_prompt_file", "format_to_template", "LLAMA3_ASSISTANT",
           "LLAMA3_CHAT_TEMPLATE", "LLAMA3_TEMPLATE", "PLAIN_TEMPLATE", "SYSTEM_PROMPT", "TINY_SPECIALS",
           "USER_TEMPLATE", "Examples", "default_prompt_spec", "load_examples", "score_from_golden",
           "score_from_margin", "score_from_outcome", "LORA_TARGETS", "CausalConfig", "build_causal", "load_base",
           "make_tiny_llama", "make_tiny_tokenizer", "throughput", "tiny_corpus", "train_classifier",
           "write_causal_artifact", "add_arguments", "run_cli", "COMMAND"]


def add_arguments(c: argparse.ArgumentParser) -> None:
    from .data import default_data_dir
    from .train_config import add_config_options

    c.add_argument("--data", type=Path, default=default_data_dir(), help="data folder (default: %(default)s)")
    c.add_argument("--out", type=Path, required=True, help="artifact folder to write")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", type=Path, help="Hugging Face causal-LM folder (safetensors) to fine-tune")
    src.add_argument("--tiny", action="store_true",
                     help=f"a tiny random Llama built here: smoke tests only ({TINY_STEPS} steps unless --max-steps)")
    c.add_argument("--name", default=None, help="artifact name in the manifest (default: the --out folder name)")
    d = CausalConfig()
    add_config_options(c, d, {"epochs": "passes over the training examples"})
    c.add_argument("--max-steps", type=int, default=None,
                   help=f"stop after N optimizer steps (default: --epochs; --tiny: {TINY_STEPS})")
    c.add_argument("--lr", type=float, default=None, help="default 1e-5 (full) / 1e-4 (LoRA); --tiny: 1e-2")
    add_config_options(c, d, {
        "batch_size": "examples per forward pass", "grad_accum": "forward passes per optimizer step",
        "max_length": "token budget of the classification prompt", "weight_decay": "AdamW weight decay",
        "val_fraction": "share of prompts held out", "lora_r": "LoRA rank (needs peft); 0 = full fine-tune",
        "lora_alpha": "LoRA scaling alpha"})
    c.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (less memory, slower)")
    c.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    c.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on CUDA, fp32 on CPU)")
    add_config_options(c, d, {"seed": "seed of the split and the shuffling"})
    c.add_argument("--allow-noncommercial", action="store_true",
                   help="also train on CC BY-NC rows (AlpacaEval): research artifacts only")
    c.add_argument("--limit", type=int, default=None, help="use only the first N training examples (default: all)")
    c.add_argument("--calib-limit", type=int, default=None, help="calibrate on the first N prompts only (default: all)")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    c.add_argument("--force", action="store_true", help="replace --out if it exists")


def run_cli(args) -> int:
    import sys

    from routekit.errors import OutputError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lr = args.lr or (1e-2 if args.tiny else (1e-4 if args.lora_r else 1e-5))
    max_steps = args.max_steps if args.max_steps is not None else (TINY_STEPS if args.tiny else None)
    cfg = CausalConfig(epochs=args.epochs, max_steps=max_steps, lr=lr, batch_size=args.batch_size,
                       grad_accum=args.grad_accum, max_length=args.max_length, weight_decay=args.weight_decay,
                       val_fraction=args.val_fraction, seed=args.seed, lora_r=args.lora_r,
                       lora_alpha=args.lora_alpha, gradient_checkpointing=args.gradient_checkpointing)
    try:
        metrics = build_causal(args.out, data_dir=args.data, cfg=cfg, base_dir=args.base, tiny=args.tiny,
                               allow_noncommercial=args.allow_noncommercial, limit=args.limit,
                               calib_limit=args.calib_limit, overwrite=args.force, name=args.name or args.out.name,
                               device=args.device, dtype=args.dtype)
    except (D.DataError, FileExistsError, FileNotFoundError, ValueError, OutputError) as exc:
        print(f"routekit-export: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"artifact": str(args.out), **metrics["final"], "labels": metrics["labels"]}, indent=2))
    return 0


COMMAND = Command('train-causal', 'fine-tune a causal LM (e.g. Llama-3-8B) as the 5-score classifier router and write a causal artifact (docs/causal.md)', add_arguments, run_cli)

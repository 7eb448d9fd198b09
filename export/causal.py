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
"""

from __future__ import annotations

import json
import math
import shutil
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from routekit._progress import progress
from routekit.routers.causal import (DEFAULT_MAX_LENGTH, DEFAULT_STRONG_SCORES, SCORE_TOKENS, PromptEncoder,
                                     PromptSpec, configure_tokenizer, pick_device_dtype, score_token_ids)

from . import data as D

#: Our classification instructions (high score = the weak model is good enough).
SYSTEM_PROMPT = (
    "You help decide which AI model should answer a user's question. Predict how a capable, "
    "cost-efficient assistant would do on the question below compared with a frontier model, and "
    "answer with exactly one rating token:\n"
    "[[5]] its answer would be as good as or better than the frontier model's;\n"
    "[[4]] about as good: the difference would not matter;\n"
    "[[3]] slightly worse;\n"
    "[[2]] clearly worse;\n"
    "[[1]] much worse: the question needs the frontier model."
)
USER_TEMPLATE = "Question:\n{prompt}\n\nRating:"
PLAIN_TEMPLATE = "{system}\n\n{user}\n"

#: Llama-3 turn format written out (what RouteLLM's causal checkpoint was trained on); the
#: tokenizer adds <|begin_of_text|>.  The model writes the assistant header before its score.
LLAMA3_TEMPLATE = ("<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>")
LLAMA3_ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"

#: Reference-free Jinja chat template in the Llama-3 layout, for tiny test models.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TINY_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


# -- labels ---------------------------------------------------------------------------------------
def score_from_margin(strong_score: float, weak_score: float) -> int:
    """Judge scores of both answers -> 1..5 (1: strong far better … 4: tie, 5: weak better)."""
    m = float(strong_score) - float(weak_score)
    if m >= 4:
        return 1
    if m >= 2:
        return 2
    if m > 0:
        return 3
    return 4 if m == 0 else 5


def score_from_outcome(outcome: float) -> int:
    """A winner without scores: strong wins -> 2, tie -> 4, weak wins -> 5."""
    return 2 if outcome > 0.5 else (4 if outcome == 0.5 else 5)


def score_from_golden(strong_correct: bool, weak_correct: bool) -> int:
    if strong_correct and not weak_correct:
        return 1
    return 5 if weak_correct else 4


@dataclass
class Examples:
    prompts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, prompt: str, label: int, source: str, license: str) -> None:
        self.prompts.append(prompt)
        self.labels.append(int(label))
        info = self.sources.setdefault(source, {"rows": 0, "license": license})
        info["rows"] += 1

    def __len__(self) -> int:
        return len(self.labels)


def load_examples(data_dir: Path | None = None, *, strong: str = D.STRONG, weak: str = D.WEAK,
                  allow_noncommercial: bool = False, limit: int | None = None) -> Examples:
    """Pair-specific training examples from ``train/battles.jsonl`` and ``train/golden.jsonl``."""
    train = Path(data_dir or D.default_data_dir()) / "train"
    canon = lambda m: D.ALIASES.get(m, m)  # noqa: E731
    out = Examples()
    for lineno, row in D.read_jsonl(train / "battles.jsonl", ("prompt", "model_a", "model_b", "winner")):
        a, b = canon(row["model_a"]), canon(row["model_b"])
        if {a, b} != {strong, weak}:
            continue
        if D.is_noncommercial(row.get("license")) and not allow_noncommercial:
            continue
        outcome = {"model_a": 1.0, "model_b": 0.0}.get(row["winner"], 0.5)
        strong_first = a == strong
        if "score_a" in row and "score_b" in row and row["score_a"] is not None and row["score_b"] is not None:
            s, w = (row["score_a"], row["score_b"]) if strong_first else (row["score_b"], row["score_a"])
            label = score_from_margin(s, w)
        else:
            label = score_from_outcome(outcome if strong_first else 1.0 - outcome)
        out.add(row["prompt"], label, row.get("source", "battles"), row.get("license", "unknown"))
        if limit is not None and len(out) >= limit:
            return out
    for lineno, row in D.read_jsonl(train / "golden.jsonl", ("prompt", "strong_model", "weak_model",
                                                             "strong_correct", "weak_correct")):
        if (canon(row["strong_model"]), canon(row["weak_model"])) != (strong, weak):
            continue
        s, w = row["strong_correct"], row["weak_correct"]
        if not isinstance(s, bool) or not isinstance(w, bool):
            raise D.DataError(f"{train / 'golden.jsonl'}:{lineno}: strong_correct/weak_correct must be true or false")
        out.add(row["prompt"], score_from_golden(s, w), row.get("source", "golden"), row.get("license", "unknown"))
        if limit is not None and len(out) >= limit:
            break
    return out


# -- model preparation ----------------------------------------------------------------------------
def default_prompt_spec(tokenizer, system: str = SYSTEM_PROMPT, user: str = USER_TEMPLATE) -> PromptSpec:
    """The tokenizer's chat template when it has one, else a plain template (BOS from the tokenizer)."""
    if getattr(tokenizer, "chat_template", None):
        return PromptSpec(format="chat_template", system=system, user=user, add_special_tokens=False)
    return PromptSpec(format="template", system=system, user=user, template=PLAIN_TEMPLATE, add_special_tokens=True)


def load_base(folder: Path, *, device=None, dtype=None):
    """(model, tokenizer) from a Hugging Face folder, score tokens added and embeddings resized."""
    import torch
    import transformers

    dev, dt = pick_device_dtype(torch, device, dtype)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dt,
                                                              use_safetensors=True)
    configure_tokenizer(tok)
    ids = score_token_ids(tok, SCORE_TOKENS, add=True)
    if max(ids) >= model.get_output_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    return model.to(dev), tok


def tiny_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """Deterministic synthetic sentences (math, code, chat, trivia) to train a tiny tokenizer on."""
    rng = np.random.default_rng(seed)
    subjects = ["the cat", "a student", "my friend", "the model", "our team", "the teacher", "a robot", "the city"]
    verbs = ["writes", "solves", "explains", "translates", "summarises", "proves", "draws", "computes"]
    objects = ["a poem", "the integral", "this function", "a short story", "the theorem", "an email",
               "the bug in my code", "a list of primes", "the history of Rome", "a recipe for bread"]
    extras = ["What is 17 * 23?", "def f(x): return x ** 2", "Prove that sqrt(2) is irrational.",
              "Write a haiku about autumn.", "hi", "Translate 'good morning' into French.",
              "Explain quantum entanglement simply.", "Solve x^2 - 5x + 6 = 0.", "Écris un poème. 海の詩。"]
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append(extras[int(rng.integers(len(extras)))])
        else:
            out.append(f"{subjects[rng.integers(len(subjects))]} {verbs[rng.integers(len(verbs))]} "
                       f"{objects[rng.integers(len(objects))]} {int(rng.integers(1000))}.")
    return out + [SYSTEM_PROMPT, USER_TEMPLATE]


def make_tiny_tokenizer(corpus: Sequence[str] | None = None, *, vocab_size: int = 400,
                        chat_template: str | None = None):
    """A byte-level BPE tokenizer trained on ``corpus`` with Llama-3 style special tokens, BOS added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=TINY_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus or tiny_corpus()), trainer)
    bos = tok.token_to_id(TINY_SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(single=f"{TINY_SPECIALS[0]} $A",
                                                       pair=f"{TINY_SPECIALS[0]} $A {TINY_SPECIALS[0]} $B",
                                                       special_tokens=[(TINY_SPECIALS[0], bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=TINY_SPECIALS[0], eos_token=TINY_SPECIALS[1],
                                   additional_special_tokens=TINY_SPECIALS[2:])
    if chat_template:
        fast.chat_template = chat_template
    return fast


def make_tiny_llama(out: Path, *, corpus: Sequence[str] | None = None, vocab_size: int = 400, hidden: int = 32,
                    layers: int = 2, heads: int = 4, kv_heads: int = 2, intermediate: int = 64,
                    chat_template: str | None = None, extra_rows: int = 0, save_tokenizer: bool = True,
                    seed: int = 0, safe_serialization: bool = True) -> Path:
    """Write a random-init ``LlamaForCausalLM`` + tokenizer folder (no download).

    ``extra_rows`` adds output/embedding rows beyond the tokenizer (a checkpoint whose tokenizer gets
    its score tokens added at load time, as RouteLLM's does).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tiny_tokenizer(corpus, vocab_size=vocab_size, chat_template=chat_template)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok) + extra_rows, hidden_size=hidden, intermediate_size=intermediate,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      tie_word_embeddings=False, attn_implementation="sdpa")
    model = LlamaForCausalLM(cfg).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=safe_serialization)
    if save_tokenizer:
        tok.save_pretrained(out)
    return out


# -- training -------------------------------------------------------------------------------------
@dataclass
class CausalConfig:
    epochs: int = 1
    lr: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.05
    val_fraction: float = 0.1
    seed: int = 0
    max_steps: int | None = None
    lora_r: int = 0  #: 0 = full fine-tune; > 0 = LoRA rank (needs peft)
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _split(prompts: Sequence[str], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    uniq = sorted(set(prompts))
    rng = np.random.default_rng(seed)
    n_val = int(len(uniq) * val_fraction) if val_fraction and len(uniq) > 1 else 0
    val_set = set(rng.choice(len(uniq), size=n_val, replace=False).tolist()) if n_val else set()
    val_prompts = {uniq[i] for i in val_set}
    is_val = np.array([p in val_prompts for p in prompts], dtype=bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def train_classifier(model, tokenizer, spec: PromptSpec, prompts: Sequence[str], labels: Sequence[int],
                     cfg: CausalConfig, *, show_progress: bool = True, strong_scores=DEFAULT_STRONG_SCORES):
    """Fine-tune in place; returns ``(model, metrics)`` (a new object when LoRA adapters are merged)."""
    import torch

    if getattr(model.config, "final_logit_softcapping", None) or getattr(model.config, "logit_scale", None):
        raise ValueError("this trainer assumes logits = lm_head(hidden) (Llama/Mistral/Qwen-style models)")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if len(prompts) != len(labels_arr) or not len(prompts):
        raise ValueError("need as many labels as prompts (and at least one)")
    if labels_arr.min() < 1 or labels_arr.max() > len(SCORE_TOKENS):
        raise ValueError("labels must be scores 1..5")
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    configure_tokenizer(tokenizer)
    ids = score_token_ids(tokenizer, SCORE_TOKENS, add=False)
    head = model.get_output_embeddings()
    if max(ids) >= head.weight.shape[0]:
        raise ValueError("the model has no output rows for the score tokens; load it with load_base()")
    enc = PromptEncoder(tokenizer, spec, cfg.max_length)
    rows = [enc.encode(p) for p in progress(prompts, total=len(prompts), desc="tokenizing",
                                            enabled=show_progress, unit="prompt")]
    pad_id = int(tokenizer.pad_token_id or 0)
    train_idx, val_idx = _split(prompts, cfg.val_fraction, cfg.seed)
    if not len(train_idx):
        train_idx, val_idx = val_idx, train_idx

    if cfg.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise SystemExit("LoRA needs peft: pip install peft (or use --lora-r 0 for a full fine-tune)") from exc
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGETS))
        decoder = model.get_base_model().get_decoder()
    else:
        decoder = model.get_decoder()
    if cfg.gradient_checkpointing:
        (model.get_base_model() if cfg.lora_r > 0 else model).gradient_checkpointing_enable()
    # the five output rows, trained as their own fp32 parameter
    w5 = torch.nn.Parameter(head.weight.detach()[ids].float().clone())
    params = [p for p in decoder.parameters() if p.requires_grad] + [w5]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / (cfg.batch_size * cfg.grad_accum))
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    warm = max(1, int(total * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    strong_idx = [k - 1 for k in strong_scores]

    def logits5(batch: np.ndarray):
        x, m, p = (torch.from_numpy(a).to(device) for a in PromptEncoder.pad_left([rows[i] for i in batch], pad_id))
        h = decoder(input_ids=x, attention_mask=m, position_ids=p, use_cache=False).last_hidden_state[:, -1]
        return h.float() @ w5.T

    def evaluate(index: np.ndarray) -> dict:
        if not len(index):
            return {}
        decoder.eval()
        probs = []
        with torch.no_grad():
            for s in range(0, len(index), cfg.batch_size):
                probs.append(torch.softmax(logits5(index[s:s + cfg.batch_size]), -1).double().cpu().numpy())
        decoder.train()
        pr = np.concatenate(probs)
        y = labels_arr[index] - 1
        p_strong = pr[:, strong_idx].sum(1)
        y_strong = np.isin(y, strong_idx)
        return {"loss": round(float(-np.log(np.clip(pr[np.arange(len(y)), y], 1e-12, None)).mean()), 5),
                "accuracy_5way": round(float((pr.argmax(1) == y).mean()), 5),
                "accuracy_strong_vs_weak": round(float(((p_strong >= 0.5) == y_strong).mean()), 5),
                "mean_p_strong": round(float(p_strong.mean()), 5), "examples": int(len(index))}

    rng = np.random.default_rng(cfg.seed)
    history: list[dict] = []
    step, epoch = 0, 0
    decoder.train()
    bar = progress(range(total), total=total, desc="fine-tuning causal classifier", enabled=show_progress,
                   unit="step")
    bar_iter = iter(bar)
    while step < total:
        epoch += 1
        perm = rng.permutation(train_idx)
        losses = []
        micro = [perm[s:s + cfg.batch_size] for s in range(0, len(perm), cfg.batch_size)]
        for k in range(0, len(micro), cfg.grad_accum):
            group = micro[k:k + cfg.grad_accum]
            opt.zero_grad(set_to_none=True)
            for batch in group:
                y = torch.from_numpy(labels_arr[batch] - 1).to(device)
                loss = torch.nn.functional.cross_entropy(logits5(batch), y) * (len(batch) / sum(map(len, group)))
                loss.backward()
                losses.append(loss.item() * sum(map(len, group)) / len(batch))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            next(bar_iter, None)
            if step >= total:
                break
        history.append({"epoch": epoch, "step": step, "train_loss": round(float(np.mean(losses)), 5)})
    for _ in bar_iter:  # close the progress bar
        pass
    sub = rng.choice(train_idx, size=min(len(train_idx), 1000), replace=False)  # a sample is enough
    final = {"train": evaluate(np.sort(sub)), "val": evaluate(val_idx), "steps": step}
    decoder.eval()
    with torch.no_grad():
        head.weight[ids] = w5.detach().to(head.weight.dtype)
    if cfg.lora_r > 0:
        model = model.merge_and_unload()
    model.eval()
    metrics = {"config": asdict(cfg), "final": final, "history": history,
               "labels": {str(k): int((labels_arr == k).sum()) for k in range(1, 6)}}
    return model, metrics


# -- artifacts ------------------------------------------------------------------------------------
def write_causal_artifact(out: Path, model, tokenizer, spec: PromptSpec, *, name: str, max_length: int,
                          strong: str = D.STRONG, weak: str = D.WEAK, strong_scores=DEFAULT_STRONG_SCORES,
                          description: str, sections: dict[str, Any] | None = None,
                          calibration: tuple[list[str], str] | None = None, overwrite: bool = False,
                          model_dir: Path | None = None) -> Path:
    """Write a complete causal artifact (model folder, prompt in the manifest, optional calibration).

    Pass ``model``/``tokenizer`` objects to save them, or ``model_dir`` (a folder already holding
    ``config.json`` + safetensors weights) to copy its weight files as they are.
    """
    from routekit import artifact

    from .build import calibrate_in_place

    with artifact.ArtifactWriter(out, overwrite=overwrite) as w:
        dest = w.dir / "model"
        dest.mkdir()
        if model_dir is not None:
            for p in sorted(Path(model_dir).iterdir()):
                if p.is_file() and (p.suffix == ".safetensors" or p.name in (
                        "config.json", "generation_config.json", "model.safetensors.index.json")):
                    shutil.copyfile(p, dest / p.name)
        else:
            model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
        w.manifest.update({
            "name": name, "kind": "causal",
            "description": description,
            "pair": {"strong": strong, "weak": weak},
            "models": [strong, weak],
            "router": {"model_dir": "model", "score_tokens": list(SCORE_TOKENS),
                       "strong_scores": list(strong_scores), "max_length": int(max_length),
                       "prompt": spec.to_dict()},
            **(sections or {}),
        })
        if calibration is not None:
            calibrate_in_place(w, *calibration)
    return Path(out)


def build_causal(out: Path, *, data_dir: Path, cfg: CausalConfig, base_dir: Path | None = None,
                 tiny: bool = False, allow_noncommercial: bool = False, limit: int | None = None,
                 calib_limit: int | None = None, overwrite: bool = False, name: str = "causal",
                 device: str | None = None, dtype: str | None = None, show_progress: bool = True) -> dict:
    """Train on the shared data and write the artifact (the ``train-causal`` command)."""
    import tempfile

    from .build import calibration_prompts, noncommercial_fields

    from routekit.artifact import check_output_dir

    check_output_dir(out, overwrite=overwrite, inputs=[data_dir, base_dir])
    examples = load_examples(data_dir, allow_noncommercial=allow_noncommercial, limit=limit)
    if not len(examples):
        raise D.DataError(f"{data_dir}: no training rows for {D.STRONG} vs {D.WEAK}")
    with tempfile.TemporaryDirectory(prefix="routekit-tiny-") as tmp:
        if tiny:
            base_dir = make_tiny_llama(Path(tmp) / "tiny", corpus=tiny_corpus() + examples.prompts[:2000])
            source = "tiny random-init LlamaForCausalLM (smoke test, not a useful router)"
        elif base_dir is None:
            raise ValueError("give base_dir (a Hugging Face causal-LM folder) or tiny=True")
        else:
            source = str(base_dir)
        model, tok = load_base(base_dir, device=device, dtype=dtype)
        spec = default_prompt_spec(tok)
        model, metrics = train_classifier(model, tok, spec, examples.prompts, examples.labels, cfg,
                                          show_progress=show_progress)
        prompts, csource = calibration_prompts(data_dir, calib_limit)
        write_causal_artifact(
            out, model, tok, spec, name=name, max_length=cfg.max_length, overwrite=overwrite,
            description="Causal-LLM classifier router (RouteLLM §4): 5 score tokens, P(strong) = P(1..3)",
            sections={
                "base_model": {"source": source, "architecture": type(model).__name__,
                               "parameters": int(sum(p.numel() for p in model.parameters()))},
                "training": {"examples": len(examples), "sources": examples.sources,
                             "labels": metrics["labels"],
                             "label_mapping": "judge margin s-w: >=4:1, >=2:2, >0:3, 0:4, <0:5; winner only: "
                                              "strong 2, tie 4, weak 5; golden: only strong right 1, both "
                                              "wrong 4, weak right 5",
                             **noncommercial_fields(allow_noncommercial)},
                "metrics": {"validation": metrics["final"]["val"], "train": metrics["final"]["train"],
                            "config": metrics["config"]},
            },
            calibration=(prompts, csource))
    return metrics


# -- RouteLLM checkpoint conversion -------------------------------------------------------------
def format_to_template(text: str, field_name: str = "question") -> str:
    """A Python ``str.format`` template with ``{question}`` -> routekit's ``{prompt}`` template."""
    literal = []
    for piece, fname, spec, conv in string.Formatter().parse(text):
        literal.append(piece)
        if fname is None:
            continue
        if fname != field_name or spec or conv:
            raise ValueError(f"unsupported field {{{fname}}} in prompt template (only {{{field_name}}})")
        literal.append("\x00")
    joined = "".join(literal)
    if any(f"{{{k}}}" in joined for k in ("system", "user", "prompt")):
        raise ValueError("the template's text contains a literal {system}, {user} or {prompt}")
    return joined.replace("\x00", "{prompt}")


def find_prompt_file(folder: Path, stem: str) -> Path:
    """``<stem>*.txt`` in ``folder`` (e.g. ``system_ft_v5.txt``); exactly one must match."""
    found = sorted(Path(folder).glob(f"{stem}*.txt"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"{folder}: {'no' if not found else 'several'} {stem}*.txt prompt file(s) "
            f"{[p.name for p in found] if found else ''}; pass {stem}_prompt=PATH "
            f"(CLI: --set {stem}_prompt=PATH) with RouteLLM's {stem} prompt file")
    return found[0]


def convert_routellm_causal(checkpoint_dir: Path, out: Path, *, system_prompt: Path | None = None,
                            classifier_prompt: Path | None = None, tokenizer_dir: Path | None = None,
                            prompt_format: str = "llama3", score_threshold: int = 4,
                            max_length: int | None = None, strong: str = D.STRONG, weak: str = D.WEAK,
                            name: str | None = None, calibration: tuple[list[str], str] | None = None,
                            overwrite: bool = False, source: str | None = None,
                            license: str = "unknown") -> Path:
    """RouteLLM causal checkpoint (Llama-format folder) + its system/classifier prompt files -> artifact.

    The prompt files default to the single ``system*.txt`` / ``classifier*.txt`` in the checkpoint
    folder (RouteLLM ships them as ``system_ft_v5.txt`` and ``classifier_ft_v5.txt`` in its package).

    * weights: ``*.safetensors`` are copied byte for byte; a folder with only ``pytorch_model*.bin``
      is loaded once here (torch's ``weights_only`` loader) and re-saved as safetensors, so the
      runtime never unpickles;
    * tokenizer: from ``tokenizer_dir`` (the base model folder, e.g. Meta-Llama-3-8B) or the
      checkpoint; the five score tokens are added as special tokens if absent (ids right after the
      base vocabulary, as the reference does) and must fall inside the checkpoint's output rows;
    * prompt: the system file (stripped) as system message, the classifier file with ``{question}``
      as user message (stripped), in the Llama-3 turn format, BOS from the tokenizer, followed by the
      assistant header the model writes before its score (``prompt_format="llama3"``), or the
      tokenizer's chat template (``prompt_format="chat_template"``);
    * P(strong) = 1 − P(score ≥ score_threshold) = Σ_{k < score_threshold} P(k).
    """
    import tempfile

    import transformers

    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no config.json (not a Hugging Face model folder)")
    if not 2 <= score_threshold <= len(SCORE_TOKENS):
        raise ValueError(f"score_threshold must be in 2..{len(SCORE_TOKENS)}")
    system_file = Path(system_prompt) if system_prompt else find_prompt_file(checkpoint_dir, "system")
    classifier_file = Path(classifier_prompt) if classifier_prompt else find_prompt_file(checkpoint_dir, "classifier")
    system = system_file.read_text(encoding="utf-8")
    user = format_to_template(classifier_file.read_text(encoding="utf-8"))
    name = name or out.name
    max_length = int(max_length or DEFAULT_MAX_LENGTH)
    if prompt_format == "llama3":
        spec = PromptSpec(format="template", system=system, user=user, template=LLAMA3_TEMPLATE,
                          generation_prefix=LLAMA3_ASSISTANT, add_special_tokens=True, strip=True)
    elif prompt_format == "chat_template":
        spec = PromptSpec(format="chat_template", system=system, user=user, add_special_tokens=False, strip=True)
    else:
        raise ValueError(f"prompt_format must be llama3 or chat_template, got {prompt_format!r}")
    tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir or checkpoint_dir), local_files_only=True)
    configure_tokenizer(tok)
    ids = score_token_ids(tok, SCORE_TOKENS, add=True)
    config = json.loads((checkpoint_dir / "config.json").read_text())
    rows = int(config.get("vocab_size", 0))
    if max(ids) >= rows:
        raise ValueError(f"score token ids {ids} do not fit the checkpoint's vocab_size {rows}: "
                         "is this the fine-tuned classifier (with the five extra rows)?")
    from routekit.artifact import sha256_file

    sections = {"source": {"format": "routellm-causal", "checkpoint": source or checkpoint_dir.name,
                           "license": license, "system_file": system_file.name,
                           "classifier_file": classifier_file.name, "config": config,
                           "prompt_files_sha256": {p.name: sha256_file(p) for p in (system_file, classifier_file)},
                           "score_threshold": score_threshold, "prompt_format": prompt_format},
                "training": {"note": "converted from a RouteLLM causal-LLM checkpoint; see its model card "
                                     "for data and licence"}}
    strong_scores = list(range(1, score_threshold))
    desc = "Causal-LLM classifier converted from a RouteLLM checkpoint (P(strong) = 1 - P(score >= %d))" % score_threshold
    if any(checkpoint_dir.glob("*.safetensors")):
        return write_causal_artifact(out, None, tok, spec, name=name, max_length=max_length, strong=strong,
                                     weak=weak, strong_scores=strong_scores, description=desc, sections=sections,
                                     calibration=calibration, overwrite=overwrite, model_dir=checkpoint_dir)
    if not any(checkpoint_dir.glob("pytorch_model*.bin")):
        raise FileNotFoundError(f"{checkpoint_dir}: no *.safetensors or pytorch_model*.bin weights")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint_dir), local_files_only=True,
                                                              use_safetensors=False, dtype="auto")
    with tempfile.TemporaryDirectory(prefix="routekit-convert-", dir=out.parent if out.parent.exists() else None) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        del model
        return write_causal_artifact(out, None, tok, spec, name=name, max_length=max_length, strong=strong,
                                     weak=weak, strong_scores=strong_scores, description=desc, sections=sections,
                                     calibration=calibration, overwrite=overwrite, model_dir=Path(tmp))


# -- command line (``routekit-export train-causal``) ------------------------------------------------
def add_cli(sub) -> None:
    from .data import default_data_dir

    c = sub.add_parser("train-causal", help="fine-tune a causal LM (e.g. Llama-3-8B) as the 5-score classifier "
                                            "router and write a causal artifact (docs/causal.md)")
    c.add_argument("--data", type=Path, default=default_data_dir(), help="data folder (default: %(default)s)")
    c.add_argument("--out", type=Path, required=True)
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", type=Path, help="Hugging Face causal-LM folder (safetensors) to fine-tune")
    src.add_argument("--tiny", action="store_true", help="a tiny random Llama built here: smoke tests only")
    c.add_argument("--name", default=None, help="artifact name in the manifest")
    c.add_argument("--epochs", type=int, default=1)
    c.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    c.add_argument("--lr", type=float, default=None, help="default 1e-5 (full) / 1e-4 (LoRA); --tiny: 1e-2")
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--grad-accum", type=int, default=1)
    c.add_argument("--max-length", type=int, default=512, help="token budget of the classification prompt")
    c.add_argument("--weight-decay", type=float, default=0.0)
    c.add_argument("--val-fraction", type=float, default=0.1)
    c.add_argument("--lora-r", type=int, default=0, help="LoRA rank (needs peft); 0 = full fine-tune")
    c.add_argument("--lora-alpha", type=int, default=32)
    c.add_argument("--gradient-checkpointing", action="store_true")
    c.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    c.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: bf16 on CUDA, fp32 on CPU)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--allow-noncommercial", action="store_true",
                   help="also train on CC BY-NC rows (AlpacaEval): research artifacts only")
    c.add_argument("--limit", type=int, default=None, help="use only the first N training examples")
    c.add_argument("--calib-limit", type=int, default=None, help="calibrate on the first N prompts only")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    c.add_argument("--force", action="store_true", help="replace --out if it exists")


def run_cli(args) -> int:
    import sys

    from routekit.errors import OutputError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lr = args.lr or (1e-2 if args.tiny else (1e-4 if args.lora_r else 1e-5))
    cfg = CausalConfig(epochs=args.epochs, max_steps=args.max_steps, lr=lr, batch_size=args.batch_size,
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


# -- throughput (GPU check; also runs on CPU) ------------------------------------------------------
def throughput(router, prompts: Sequence[str], batch_sizes: Sequence[int] = (1, 32), repeats: int = 1) -> dict:
    """Requests per second of ``router.win_rates`` at each batch size (one warm-up pass first)."""
    import time

    torch = router._torch
    sync = torch.cuda.synchronize if router.device.type == "cuda" else (lambda: None)
    out = {}
    for bs in batch_sizes:
        router.batch_size = int(bs)
        router.win_rates(list(prompts[:bs]), batch_size=max(bs, 1))  # warm-up (kernels, allocator)
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            router.win_rates(list(prompts), batch_size=max(bs, 1))
        sync()
        dt = time.perf_counter() - t0
        out[f"batch_{bs}"] = {"requests_per_s": round(len(prompts) * repeats / dt, 2), "seconds": round(dt, 3)}
    return out

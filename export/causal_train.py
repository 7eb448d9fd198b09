"""Fine-tune a causal LM as the 5-score classifier and write its artifact (``build_causal``), plus
tiny random Llamas for tests and smoke runs."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from routekit.routers.causal import (
    DEFAULT_STRONG_SCORES,
    SCORE_TOKENS,
    PromptEncoder,
    PromptSpec,
    configure_tokenizer,
    pick_device_dtype,
    score_token_ids,
)

from . import data as D
from .causal_labels import (
    SYSTEM_PROMPT,
    TINY_SPECIALS,
    USER_TEMPLATE,
    default_prompt_spec,
    load_examples,
)
from .errors import ExportError
from .train_config import TextTrainConfig


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
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
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
class CausalConfig(TextTrainConfig):
    batch_size: int = 8
    max_length: int = 512
    warmup_fraction: float = 0.05
    epochs: int = 1
    grad_accum: int = 1
    max_steps: int | None = None
    lora_r: int = 0  #: 0 = full fine-tune; > 0 = LoRA rank (needs peft)
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = False


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
    rows = [enc.encode(p) for p in tqdm(prompts, total=len(prompts), desc="tokenizing",
                                            disable=not show_progress, unit="prompt")]
    pad_id = int(tokenizer.pad_token_id or 0)
    train_idx, val_idx = D.split_by_prompt(prompts, cfg.val_fraction, cfg.seed)
    if not len(train_idx):
        train_idx, val_idx = val_idx, train_idx

    if cfg.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise ExportError("LoRA needs peft: pip install peft (or use --lora-r 0 for a full fine-tune)") from exc
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
    warm = max(1, int(total * cfg.warmup_fraction))
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, warm, total)  # linear warm-up, then linear decay to 0
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
    bar = tqdm(range(total), total=total, desc="fine-tuning causal classifier", disable=not show_progress,
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

    from routekit.artifact import check_output_dir

    from .build import calibration_prompts, noncommercial_fields

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

"""Fine-tune a BERT-family classifier router (3 labels) with torch, then export it via ``convert_bert``.

Labels (routekit and RouteLLM use the same order): ``0 = strong wins, 1 = tie, 2 = weak wins``;
the runtime reads P(strong) = softmax[0] = 1 − P(tie) − P(weak wins).

Training examples (every prompt gets a *distribution* over the 3 labels; the loss is the
cross-entropy against it, so a prompt with one battle has a hard label):

* **Battles** (``train/battles.jsonl``, permissive rows unless ``allow_noncommercial``): the
  classifier is for one pair, but the pair itself met on only ~300 prompts.  Following the SW
  router's tiering idea, models are grouped by their overall win fraction in the loaded battles:
  the *strong side* is every model within ``tier_width`` of the strong model's win fraction, the
  *weak side* every model within ``tier_width`` of the weak model's (with the Arena-Bench data:
  gpt-4-1106-preview + gpt-4-0314 vs Mixtral, GPT-3.5 (both), Claude 1 / 2.1 / Instant).  Every
  battle between a strong-side and a weak-side model on a prompt counts as one outcome for that
  prompt (oriented from the strong side); the prompt's target is the empirical distribution of
  those outcomes.  ``tier_width=0`` uses the pair's own battles only.  Battles inside a side, or
  with models in neither side, say nothing about "does this prompt need the strong tier" and are
  not used.
* **Golden labels** (``train/golden.jsonl``: MMLU gold-train split + RouterBench ARC / Winogrande /
  MBPP, correctness of the exact pair): strong right and weak wrong → strong wins; both right or both
  wrong → tie; weak right only → weak wins.

The paper's setup (lr 1e-5, weight decay 0.01, batch 16, ~2000 steps, max length 512) is the
default, except ``max_length=256`` (the runtime's, and ~2× cheaper on CPU).  Training shows a
progress bar, writes a resumable checkpoint (model, optimizer, scheduler, step) every
``save_every`` steps and when ``time_budget_s`` runs out, and ends with a Hugging Face folder
(``model/``: ``config.json``, ``model.safetensors``, ``tokenizer.json``) that ``convert_bert``
turns into a routekit artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from routekit.encoders import clean_text, load_tokenizer

from . import data as D
from .bert_model import load_classifier
from .errors import ExportError
from .train_config import TextTrainConfig

STATE = "train_state.pt"


@dataclass
class BertTrainConfig(TextTrainConfig):
    weight_decay: float = 0.01
    val_fraction: float = 0.05
    steps: int = 2000
    tier_width: float = 0.06  #: win-fraction distance that puts a model on the strong/weak side (0: pair only)
    time_budget_s: float | None = None  #: stop (and checkpoint) after this much training wall time
    save_every: int = 100
    threads: int | None = None


@dataclass
class Examples:
    """Prompts with a target distribution over (strong wins, tie, weak wins)."""

    prompts: list[str] = field(default_factory=list)
    targets: list[list[float]] = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    sides: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p, t in zip(self.prompts, self.targets):
            h.update(p.encode("utf-8", "replace"))
            h.update(np.asarray(t, np.float32).tobytes())
        return h.hexdigest()[:16]


# --------------------------------------------------------------------------- data


def model_sides(battles: list[tuple[str, str, str, float]], strong: str, weak: str,
                tier_width: float) -> tuple[set[str], set[str], dict[str, float]]:
    """(strong side, weak side, win fraction per model) from (prompt, a, b, outcome) battles."""
    wins: dict[str, float] = defaultdict(float)
    games: dict[str, int] = defaultdict(int)
    for _, a, b, o in battles:
        wins[a] += o
        wins[b] += 1.0 - o
        games[a] += 1
        games[b] += 1
    frac = {m: wins[m] / games[m] for m in games}
    if tier_width <= 0 or strong not in frac or weak not in frac:
        return {strong}, {weak}, frac
    s_side = {m for m, f in frac.items() if abs(f - frac[strong]) <= tier_width}
    w_side = {m for m, f in frac.items() if abs(f - frac[weak]) <= tier_width} - s_side
    s_side.add(strong)
    w_side.add(weak)
    return s_side, w_side, frac


def load_examples(data_dir: Path | None = None, *, allow_noncommercial: bool = False, tier_width: float = 0.06,
                  limit: int | None = None, strong: str = D.STRONG, weak: str = D.WEAK) -> Examples:
    """Training examples for the (strong, weak) classifier; ``limit`` caps the rows read per file."""
    train = Path(data_dir or D.default_data_dir()) / "train"
    battles, licences = [], {}
    for r in ([] if limit is not None and limit <= 0 else
              D.battle_rows(train / "battles.jsonl", allow_noncommercial=allow_noncommercial)):
        battles.append((r.prompt, r.model_a, r.model_b, r.outcome, r.source))
        licences.setdefault(r.source, r.license)
        if limit is not None and len(battles) >= limit:
            break
    s_side, w_side, frac = model_sides([b[:4] for b in battles], strong, weak, tier_width)
    counts: dict[str, np.ndarray] = {}
    src_of: dict[str, str] = {}
    for prompt, a, b, o, src in battles:
        if a in s_side and b in w_side:
            res = o
        elif b in s_side and a in w_side:
            res = 1.0 - o
        else:
            continue
        c = counts.setdefault(prompt, np.zeros(3))
        c[0 if res == 1.0 else 2 if res == 0.0 else 1] += 1
        src_of.setdefault(prompt, src)
    ex = Examples()
    ex.sides = {"strong_side": sorted(s_side), "weak_side": sorted(w_side), "tier_width": tier_width,
                "win_fraction": {m: round(f, 4) for m, f in sorted(frac.items(), key=lambda kv: -kv[1])}}
    for prompt, c in counts.items():
        ex.prompts.append(prompt)
        ex.targets.append((c / c.sum()).tolist())
        info = ex.sources.setdefault(src_of[prompt], {"prompts": 0, "battles": 0, "license": licences[src_of[prompt]]})
        info["prompts"] += 1
        info["battles"] += int(c.sum())
    n_golden = 0
    for r in D.golden_rows(train / "golden.jsonl", allow_noncommercial=allow_noncommercial):
        if limit is not None and n_golden >= max(1, limit // 2):
            break
        if {r.strong_model, r.weak_model} != {strong, weak}:
            continue
        s_ok, w_ok = r.strong_correct, r.weak_correct
        if r.strong_model != strong:  # the row's "strong" is our weak model: swap
            s_ok, w_ok = w_ok, s_ok
        label = 1 if s_ok == w_ok else (0 if s_ok else 2)
        ex.prompts.append(r.prompt)
        ex.targets.append([1.0 if i == label else 0.0 for i in range(3)])
        src = r.source.split(" ")[0]
        info = ex.sources.setdefault(src, {"prompts": 0, "license": r.license})
        info["prompts"] += 1
        n_golden += 1
    if not ex.prompts:
        raise D.DataError(f"{train}: no training example for {strong} vs {weak}")
    return ex


def split_examples(ex: Examples, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val); a prompt is in exactly one of them (:func:`data.split_by_prompt`)."""
    return D.split_by_prompt(ex.prompts, val_fraction, seed)


# --------------------------------------------------------------------------- tokenizer / models


def make_tokenizer(tokenizer_json: Path, max_length: int, *, pad: bool = True):
    """The runtime's tokenization (routekit.encoders.Encoder): truncation to max_length, dynamic padding."""
    return load_tokenizer(tokenizer_json, max_length, pad=pad)


def encode(tok, texts: list[str], max_length: int, chars_per_token: int = 12):
    """(input_ids, attention_mask) int64 torch tensors, texts cut by characters first (like the runtime)."""
    import torch

    cut = [clean_text(t, max_length * chars_per_token) for t in texts]
    encs = tok.encode_batch(cut)
    ids = torch.tensor([e.ids for e in encs], dtype=torch.long)
    mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.long)
    return ids, mask


def tiny_base_model(dest: Path, texts: list[str], *, hidden: int = 32, layers: int = 2, vocab: int = 800,
                    seed: int = 0) -> Path:
    """A random tiny BertForSequenceClassification + a WordPiece tokenizer trained on ``texts``
    (for tests: no download, seconds to fine-tune)."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=vocab, min_frequency=1,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False)
    from tokenizers.processors import BertProcessing

    wp.post_processor = BertProcessing(("[SEP]", wp.token_to_id("[SEP]")), ("[CLS]", wp.token_to_id("[CLS]")))
    wp.save(str(dest / "tokenizer.json"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=wp.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512,
                     num_labels=3)
    BertForSequenceClassification(cfg).save_pretrained(str(dest))
    return dest


def tokenizer_file(model_dir: Path) -> Path:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise ExportError(f"{model_dir}: no tokenizer.json (a fast tokenizer is required)")
    return path


def truncate_layers(model_dir: Path, dest: Path, layers: int) -> Path:
    """Copy a BERT classifier folder keeping only its first ``layers`` encoder layers.

    Embeddings, pooler and classification head are kept as they are; the result is a starting point
    for a short re-fine-tune (``train-bert --base DIR --layers N``): per-request cost on CPU scales
    with the layer count (4 of 6 layers: ~2/3 of the time)."""
    model_dir, dest = Path(model_dir), Path(dest)
    model = load_classifier(model_dir)
    encoder = model.base_model.encoder
    n = len(encoder.layer)
    if not 1 <= int(layers) <= n:
        raise ValueError(f"layers must be in 1..{n} for {model_dir}, got {layers}")
    encoder.layer = encoder.layer[: int(layers)]
    model.config.num_hidden_layers = int(layers)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    shutil.copyfile(tokenizer_file(model_dir), dest / "tokenizer.json")
    return dest


def distill_examples(ex: Examples, teacher_dir: Path, *, alpha: float = 1.0, max_length: int = 256,
                     batch_size: int = 32, show_progress: bool = False,
                     extra_prompts: list[str] | None = None) -> Examples:
    """``ex`` with targets ``alpha · teacher + (1 − alpha) · labels``: the teacher classifier's softmax on
    each prompt (same tokenization as training and the runtime).  Distilling a layer-dropped student
    from the full model keeps the full model's ranking of prompts, which is what routing uses.
    ``extra_prompts`` (unlabelled, e.g. chat prompts unlike the labelled data) are appended with the
    teacher's targets only; prompts already in ``ex`` are skipped."""
    import torch

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    seen = set(ex.prompts)
    extra = [p for p in dict.fromkeys(extra_prompts or []) if p not in seen]
    labels = np.asarray(ex.targets, dtype=np.float64).reshape(len(ex), 3)
    ex = Examples(list(ex.prompts) + extra, list(ex.targets) + [[1 / 3] * 3] * len(extra), ex.sources, ex.sides)
    teacher = load_classifier(Path(teacher_dir)).eval()
    tok = make_tokenizer(tokenizer_file(Path(teacher_dir)), max_length)
    order = sorted(range(len(ex)), key=lambda i: len(ex.prompts[i]))
    soft = np.zeros((len(ex), 3))
    bar = tqdm(total=len(ex), desc="teacher targets", unit="prompt", dynamic_ncols=True) if show_progress else None
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            ii = order[s:s + batch_size]
            ids, mask = encode(tok, [ex.prompts[i] for i in ii], max_length)
            soft[ii] = torch.softmax(teacher(input_ids=ids, attention_mask=mask).logits.double(), -1).numpy()
            if bar is not None:
                bar.update(len(ii))
    if bar is not None:
        bar.close()
    mixed = soft.copy()
    mixed[: len(labels)] = alpha * soft[: len(labels)] + (1.0 - alpha) * labels
    sources = dict(ex.sources)
    sources["distillation"] = {"teacher": str(teacher_dir), "alpha": alpha, "max_length": max_length,
                               "unlabelled_prompts": len(extra)}
    return Examples(list(ex.prompts), [[float(x) for x in row] for row in mixed], sources, dict(ex.sides))


# --------------------------------------------------------------------------- training


def _epoch_batches(lengths: np.ndarray, batch: int, seed: int, epoch: int, pool: int = 50) -> list[np.ndarray]:
    """Batches of one epoch: a fresh permutation, cut into pools of ``pool`` batches, each pool sorted
    by token length (little padding: ~2.5× faster on this data), batch order shuffled again.
    Deterministic in (seed, epoch), so a resumed run sees the same batches."""
    n = len(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    per_epoch = max(1, n // batch)
    perm = perm[: per_epoch * batch] if n >= batch else perm
    out = []
    for s in range(0, len(perm), batch * pool):
        chunk = perm[s:s + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i:i + batch] for i in range(0, len(chunk), batch))
    return [out[i] for i in rng.permutation(len(out))]


def evaluate_examples(model, tok, ex: Examples, idx: np.ndarray, cfg: BertTrainConfig, batch: int = 32) -> dict:
    """Soft cross-entropy, hard-label accuracy and the mean P(strong) on ``idx``."""
    import torch

    if len(idx) == 0:
        return {}
    model.eval()
    losses, correct, p_strong = [], [], []
    order = sorted(idx.tolist(), key=lambda i: len(ex.prompts[i]))
    with torch.no_grad():
        for s in range(0, len(order), batch):
            ii = order[s:s + batch]
            ids, mask = encode(tok, [ex.prompts[i] for i in ii], cfg.max_length)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), -1)
            t = torch.tensor([ex.targets[i] for i in ii], dtype=torch.float64)
            losses.extend((-(t * logp).sum(-1)).tolist())
            correct.extend((logp.argmax(-1) == t.argmax(-1)).tolist())
            p_strong.extend(logp[:, 0].exp().tolist())
    return {"loss": round(float(np.mean(losses)), 5), "accuracy": round(float(np.mean(correct)), 5),
            "mean_p_strong": round(float(np.mean(p_strong)), 5), "examples": int(len(idx))}


def train_bert(ex: Examples, base_dir: Path, work_dir: Path, cfg: BertTrainConfig, *, resume: bool = False,
               show_progress: bool = True, stop_after: int | None = None) -> tuple[Path, dict]:
    """Fine-tune ``base_dir`` on ``ex``; returns (Hugging Face folder ``work_dir/model``, metrics).

    ``work_dir`` holds the resumable checkpoint ``train_state.pt`` (weights, optimizer, scheduler,
    step, RNG state); with ``resume`` training continues from it (same examples and base model
    required) and ends with the same weights as an uninterrupted run.  ``stop_after`` ends this call
    after that many steps (checkpointed), like an interrupted run."""
    import torch

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    tok = make_tokenizer(tokenizer_file(base_dir), cfg.max_length)
    model = load_classifier(base_dir)
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_fraction * cfg.steps), cfg.steps)
    train_idx, val_idx = split_examples(ex, cfg.val_fraction, cfg.seed)
    fp = ex.fingerprint()
    state_path = work_dir / STATE
    step, history, elapsed = 0, [], 0.0
    if resume:
        if not state_path.is_file():
            raise ExportError(f"--resume: no checkpoint at {state_path}")
        st = torch.load(state_path, map_location="cpu", weights_only=True)  # tensors and plain containers only
        if st["fingerprint"] != fp or st["base_dir"] != str(base_dir):
            raise ExportError(f"--resume: {state_path} was written for other examples or another base model")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        step, history, elapsed = st["step"], st["history"], st.get("elapsed_s", 0.0)
        if "torch_rng" in st:  # checkpoints from before RNG state was saved resume without it
            torch.set_rng_state(st["torch_rng"])

    def save_state():
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "history": history, "elapsed_s": elapsed, "fingerprint": fp,
                    "base_dir": str(base_dir), "config": asdict(cfg), "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, state_path)

    targets = torch.tensor(ex.targets, dtype=torch.float32)
    no_pad = make_tokenizer(tokenizer_file(base_dir), cfg.max_length, pad=False)
    lengths = np.array([len(e.ids) for e in no_pad.encode_batch(
        [clean_text(ex.prompts[i], cfg.max_length * 12) for i in train_idx])])
    epochs: dict[int, list[np.ndarray]] = {}
    bar = (tqdm(total=cfg.steps, initial=step, desc="fine-tuning BERT router", unit="step", dynamic_ncols=True)
           if show_progress else None)
    t0 = time.monotonic() - elapsed
    ema, stopped_early = None, False
    n_examples_seen = 0
    model.train()
    first = step
    while step < cfg.steps:
        if (cfg.time_budget_s is not None and time.monotonic() - t0 >= cfg.time_budget_s) or \
                (stop_after is not None and step - first >= stop_after):
            stopped_early = True
            break
        per_epoch = max(1, len(train_idx) // cfg.batch_size)
        epoch, pos = divmod(step, per_epoch)
        if epoch not in epochs:
            epochs.clear()
            epochs[epoch] = _epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch)
        batch = train_idx[epochs[epoch][pos]]
        ids, mask = encode(tok, [ex.prompts[i] for i in batch], cfg.max_length)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = -(targets[batch] * torch.log_softmax(logits, -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        n_examples_seen += len(batch)
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        elapsed = time.monotonic() - t0
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", ex_s=f"{n_examples_seen / max(elapsed, 1e-9):.1f}", refresh=False)
        if step % 50 == 0 or step == cfg.steps:
            history.append({"step": step, "train_loss_ema": round(ema, 5), "elapsed_s": round(elapsed, 1)})
        if cfg.save_every and step % cfg.save_every == 0:
            save_state()
    if bar is not None:
        bar.close()
    elapsed = time.monotonic() - t0
    save_state()
    metrics = {
        "config": asdict(cfg), "steps_done": step, "stopped_by_time_budget": stopped_early,
        "train_wall_s": round(elapsed, 1), "examples": {"train": int(len(train_idx)), "val": int(len(val_idx))},
        "val": evaluate_examples(model, tok, ex, val_idx, cfg), "history": history[-20:],
        "examples_fingerprint": fp,
    }
    out = work_dir / "model"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(str(out))
    shutil.copyfile(tokenizer_file(base_dir), out / "tokenizer.json")
    (work_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out, metrics


# --------------------------------------------------------------------------- reference scoring (tests)


def torch_p_strong(model_dir: Path, texts: list[str], *, max_length: int = 256, strong_label: int = 0) -> np.ndarray:
    """P(strong) from the torch model, one text at a time (reference for parity tests)."""
    import torch

    model = load_classifier(model_dir).eval()
    tok = make_tokenizer(tokenizer_file(model_dir), max_length)
    out = []
    with torch.no_grad():
        for t in texts:
            ids, mask = encode(tok, [t], max_length)
            logits = model(input_ids=ids, attention_mask=mask).logits.double()
            out.append(float(torch.softmax(logits, -1)[0, strong_label]))
    return np.asarray(out)


# --------------------------------------------------------------------------- artifact


def build_bert(out: Path, *, data_dir: Path, work_dir: Path, cfg: BertTrainConfig, base_dir: Path | None = None,
               int8: bool = False, allow_noncommercial: bool = False, limit: int | None = None,
               calib_limit: int | None = None, resume: bool = False, overwrite: bool = False,
               name: str = "bert", show_progress: bool = True, layers: int | None = None,
               teacher_dir: Path | None = None, distill_alpha: float = 1.0,
               distill_prompts: tuple[list[str], str] | None = None, base_license: str | None = None,
               examples: Examples | None = None) -> dict:
    """Train (or resume), export to ONNX (optionally int8) and write a calibrated ``bert`` artifact.

    ``layers`` keeps only the base model's first N encoder layers (:func:`truncate_layers`, written to
    ``work_dir/base-lN``); ``teacher_dir`` trains on the teacher's soft labels mixed with the data's
    (:func:`distill_examples`, weight ``distill_alpha`` on the teacher); ``distill_prompts=(prompts,
    description)`` adds unlabelled prompts scored by the teacher only.  ``base_license`` is recorded
    as the weights' licence when ``base_dir`` is given (default: "unknown"; MiniLM's own otherwise).
    ``examples``: the training examples if the caller already loaded them (same arguments)."""
    from routekit.artifact import check_output_dir

    from .build import calibration_prompts, noncommercial_fields
    from .convert import convert_bert
    from .encoder import ENCODER_ID, ENCODER_LICENSE, ENCODER_PACKAGE, minilm_dir

    check_output_dir(out, overwrite=overwrite, inputs=[data_dir, base_dir, teacher_dir])
    base = Path(base_dir) if base_dir else minilm_dir()
    base_desc = (f"{ENCODER_ID} (PyPI package {ENCODER_PACKAGE}, {ENCODER_LICENSE})" if base_dir is None
                 else str(base_dir))
    ex = examples if examples is not None else load_examples(
        data_dir, allow_noncommercial=allow_noncommercial, tier_width=cfg.tier_width, limit=limit)
    labelled = ex
    if layers:
        cut = Path(work_dir) / f"base-l{int(layers)}"
        if not (resume and (cut / "config.json").is_file()):
            truncate_layers(base, cut, int(layers))
        base, base_desc = cut, f"the first {int(layers)} layers of {base_desc}"
    if teacher_dir is not None:
        ex = distill_examples(ex, Path(teacher_dir), alpha=distill_alpha, max_length=cfg.max_length,
                              show_progress=show_progress,
                              extra_prompts=distill_prompts[0] if distill_prompts else None)
        if distill_prompts:
            ex.sources["distillation"]["unlabelled_source"] = distill_prompts[1]
    model_dir, metrics = train_bert(ex, base, work_dir, cfg, resume=resume, show_progress=show_progress)
    if teacher_dir is not None:  # validation loss/accuracy against the data's own labels too
        import torch

        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        _, val_idx = split_examples(labelled, cfg.val_fraction, cfg.seed)
        metrics["val_vs_labels"] = evaluate_examples(
            load_classifier(model_dir), make_tokenizer(tokenizer_file(model_dir), cfg.max_length), labelled,
            val_idx, cfg)
    prompts, source = calibration_prompts(data_dir, calib_limit)
    convert_bert(model_dir, out, int8=int8, max_length=cfg.max_length, overwrite=overwrite, name=name,
                 calibration=(prompts, source), show_progress=show_progress,
                 source=f"fine-tuned by routekit-export train-bert from {base_desc}",
                 license=ENCODER_LICENSE if base_dir is None else (base_license or "unknown"),
                 extra={
                     "description": "BERT-family classifier router (RouteLLM §4), MiniLM-L6 fine-tuned on 3 labels"
                                    + (f" (first {int(layers)} layers kept)" if layers else "")
                                    + (" by distillation from a teacher" if teacher_dir is not None else ""),
                     "training": {
                         "examples": len(ex), "sources": ex.sources, "labelling": ex.sides,
                         **noncommercial_fields(allow_noncommercial),
                     },
                     "metrics": {"validation": metrics["val"], "steps": metrics["steps_done"],
                                 **({"validation_vs_labels": metrics["val_vs_labels"],
                                     "distillation": ex.sources.get("distillation")}
                                    if teacher_dir is not None else {}),
                                 "stopped_by_time_budget": metrics["stopped_by_time_budget"],
                                 "train_wall_s": metrics["train_wall_s"], "config": metrics["config"]},
                 })
    return metrics

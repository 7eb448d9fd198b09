"""Convert trained router checkpoints (e.g. RouteLLM's published ones) into routekit artifacts.

``convert_bert``: a Hugging Face sequence-classification folder with 3 labels (``config.json``,
weights, and a fast tokenizer) → ONNX (optimum's exporter; optional dynamic int8 through optimum's
``ORTQuantizer``) → a routekit ``bert`` artifact.
The label order is RouteLLM's (its ``BERTRouter`` returns 1 − P(label 1) − P(label 2), commented
"tie, tier 2 wins"): ``0 = strong wins, 1 = tie, 2 = weak wins``; routekit's own ``train-bert``
uses the same order.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import routekit
from routekit import artifact

from . import data as D
from .bert_model import LABELS as BERT_LABELS
from .errors import ExportError


def export_classifier_onnx(model, out: Path) -> Path:
    """A sequence classifier -> ONNX (optimum), dynamic batch and sequence axes, output ``logits``."""
    from .onnx_export import export_hf

    return export_hf(model, out, task="text-classification")


def drop_attention_mask(src: Path, dst: Path) -> bool:
    """Write ``src`` without its attention-mask additions to ``dst`` (a graph for one unpadded prompt
    per run); ``False`` (and nothing written) if the graph's mask path is not the expected one.

    A BERT export turns ``attention_mask`` into an additive bias, ``(1 − mask) · min_float``, added to
    the attention scores of every layer.  With one prompt per run and no padding the mask is all ones
    and the bias all zeros, so those ``Add`` nodes (each a 12 × L × L pass per layer) are bypassed.
    ``attention_mask`` stays a graph input (unused), so callers feed the same inputs as before.
    """
    import onnx

    model = onnx.load(str(src))
    g = model.graph
    consts = {t.name for t in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    # tensors computed from attention_mask and constants only (the extended-mask chain)
    derived, changed = {"attention_mask"}, True
    while changed:
        changed = False
        for n in g.node:
            ins = [i for i in n.input if i]
            if ins and any(i in derived for i in ins) and all(i in derived or i in consts for i in ins):
                new = set(n.output) - derived
                if new:
                    derived |= new
                    changed = True
    bypass = {}
    for n in g.node:
        if any(i in derived for i in n.input) and not set(n.output) <= derived:
            others = [i for i in n.input if i not in derived]
            if n.op_type != "Add" or len(n.input) != 2 or len(others) != 1:
                return False  # the mask is used some other way: keep the graph as it is
            bypass[n.output[0]] = others[0]
    if not bypass or any(o.name in bypass for o in g.output):
        return False
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in bypass:
                n.input[k] = bypass[i]
    keep = [n for n in g.node if n.output[0] not in bypass]
    outputs = {o.name for o in g.output}
    while True:  # drop the now unused mask chain
        used = {i for n in keep for i in n.input} | outputs
        alive = [n for n in keep if any(o in used for o in n.output)]
        if len(alive) == len(keep):
            break
        keep = alive
    del g.node[:]
    g.node.extend(keep)
    onnx.save(model, str(dst))
    return True


def _same_one_prompt_outputs(a: Path, b: Path, tol: float = 1e-5) -> bool:
    """Whether two classifier graphs give the same logits for single unpadded prompts."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sa, sb = (ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (a, b))
    rng = np.random.default_rng(0)
    for n in (1, 5, 37):
        ids = rng.integers(1, 100, (1, n)).astype(np.int64)  # small ids: valid for any vocab
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        outs = [s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})[0] for s in (sa, sb)]
        if np.abs(outs[0] - outs[1]).max() > tol:
            return False
    return True


def _tokenizer_json(checkpoint_dir: Path, dest: Path) -> None:
    src = checkpoint_dir / "tokenizer.json"
    if src.is_file():
        shutil.copyfile(src, dest)
        return
    from transformers import (
        AutoTokenizer,  # slow-only folders (vocab.txt): build the fast tokenizer
    )

    tok = AutoTokenizer.from_pretrained(str(checkpoint_dir), use_fast=True)
    if not getattr(tok, "is_fast", False):
        raise ExportError(f"{checkpoint_dir}: no tokenizer.json and no fast tokenizer could be built")
    tok.backend_tokenizer.save(str(dest))


def _default_max_length(checkpoint_dir: Path, config) -> int:
    import json

    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    tc = checkpoint_dir / "tokenizer_config.json"
    if tc.is_file():
        mml = json.loads(tc.read_text()).get("model_max_length")
        if isinstance(mml, (int, float)) and 0 < mml < 100_000:
            limit = min(limit, int(mml))
    return min(limit, 512)


#: onnxruntime graph transformers the runtime skips for int8 BERT graphs (manifest
#: ``encoder.ort_disabled_optimizers``).  ORT 1.32's fused SkipLayerNormalization kernel took ~0.3 ms
#: per call at 256 tokens × 384 on the 2-core dev box (AVX-512) where the unfused Add + LayerNorm take
#: ~0.1 ms: the int8 classifier ran ~10 % faster without the fusion (fp32: no difference).
INT8_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def convert_bert(checkpoint_dir, out_dir, int8: bool = False, *, max_length: int | None = None,
                 strong: str = D.STRONG, weak: str = D.WEAK, labels: Sequence[str] = BERT_LABELS,
                 name: str | None = None, overwrite: bool = False,
                 calibration: tuple[list[str], str] | None = None, source: str | None = None,
                 license: str = "unknown", extra: dict | None = None, show_progress: bool = False,
                 one_prompt_graph: bool | None = None) -> Path:
    """Write a routekit ``bert`` artifact at ``out_dir`` from a 3-label HF classifier folder.

    ``labels`` names the classifier outputs in order (must contain ``strong_wins``; default is
    RouteLLM's order).  ``int8`` applies dynamic per-channel int8 quantization (the runtime then
    scores prompts one at a time).  ``one_prompt_graph`` (default: with ``int8``) also removes the
    attention-mask additions (:func:`drop_attention_mask`): the manifest then says
    ``"batch_size": 1`` and the runtime never pads.  ``calibration=(prompts, description)`` stores
    the win-rate quantiles so that ``strong_fraction=`` works.  ``extra`` is merged into the manifest.
    """
    from .bert_model import load_classifier
    from .build import calibrate_in_place, pair_fields
    from .onnx_export import quantize_int8

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    artifact.check_output_dir(out_dir, overwrite=overwrite, inputs=[checkpoint_dir])
    if not (checkpoint_dir / "config.json").is_file():
        raise ExportError(f"{checkpoint_dir}: not a Hugging Face model folder (no config.json)")
    labels = list(labels)
    if len(labels) != 3 or "strong_wins" not in labels:
        raise ValueError(f"labels must be 3 names incl. 'strong_wins', got {labels!r}")
    model = load_classifier(checkpoint_dir).eval()
    if model.config.num_labels != 3:
        raise ExportError(f"{checkpoint_dir}: classifier has {model.config.num_labels} labels, expected 3")
    max_length = int(max_length or _default_max_length(checkpoint_dir, model.config))
    with artifact.ArtifactWriter(out_dir, overwrite=overwrite) as w:
        with tempfile.TemporaryDirectory(dir=w.dir.parent, prefix=".bert-onnx-") as tmp:
            fp32 = Path(tmp) / "classifier.onnx"
            export_classifier_onnx(model, fp32)
            one = int8 if one_prompt_graph is None else bool(one_prompt_graph)
            if one:
                nomask = Path(tmp) / "classifier.nomask.onnx"
                one = drop_attention_mask(fp32, nomask) and _same_one_prompt_outputs(fp32, nomask)
                if one:
                    fp32 = nomask
            if int8:
                quantize_int8(fp32, w.dir / "classifier.onnx")
            else:
                shutil.copyfile(fp32, w.dir / "classifier.onnx")
        _tokenizer_json(checkpoint_dir, w.dir / "tokenizer.json")
        w.manifest.update({
            "name": name or out_dir.name, "kind": "bert",
            "description": "BERT-family 3-label classifier router (RouteLLM §4)",
            **pair_fields([strong, weak], strong, weak),
            "encoder": {
                "file": "classifier.onnx", "tokenizer": "tokenizer.json", "output": "logits",
                "max_length": max_length, "n_labels": 3,
                "quantization": "int8-dynamic-per-channel" if int8 else "fp32",
                "architecture": type(model).__name__,
                "layers": int(getattr(model.config, "num_hidden_layers", 0)) or None,
                "source": source or f"converted from {checkpoint_dir.name}", "license": license,
                **({"batch_size": 1, "attention_mask": "unused: one unpadded prompt per run"} if one else {}),
                **({"ort_disabled_optimizers": list(INT8_DISABLED_OPTIMIZERS)} if int8 else {}),
            },
            "router": {
                "labels": labels,
                "p_strong": "softmax(logits)[labels.index('strong_wins')] = 1 - P(tie) - P(weak_wins)",
            },
        })
        if extra:
            w.manifest.update(extra)
        if calibration is not None:
            prompts, desc = calibration
            calibrate_in_place(w, list(prompts), desc)
    return out_dir


# --- RouteLLM matrix factorisation (MF) -----------------------------------------------------------
#
# RouteLLM's MF checkpoint (``routellm/mf_gpt4_augmented``) is a PyTorchModelHubMixin folder:
# ``config.json`` = {"dim", "num_models", "text_dim", "num_classes", "use_proj"} and
# ``model.safetensors`` with ``P.weight`` (num_models × dim, model embeddings),
# ``text_proj.0.weight`` (dim × text_dim, no bias) and ``classifier.0.weight`` (num_classes × dim,
# no bias).  Its score is  δ(M, q) = c · (normalize(P_M) ⊙ W q)  on OpenAI text-embedding-3-small
# vectors q, and P(strong) = σ(δ(strong, q) − δ(weak, q)).  routekit's MF router computes
# head · (model_emb_M ⊙ (proj_w q + proj_b)), so the conversion stores the L2-normalised rows of P
# as ``model_emb``, W as ``proj_w``, zeros as ``proj_b`` and c as ``head``: the same function.

#: RouteLLM's 64-model id table: a model's id is its position (the names in code-point order).
ROUTELLM_MF_MODELS = (
    "RWKV-4-Raven-14B", "alpaca-13b", "chatglm-6b", "chatglm2-6b", "chatglm3-6b", "claude-1", "claude-2.0",
    "claude-2.1", "claude-instant-1", "codellama-34b-instruct", "deepseek-llm-67b-chat", "dolly-v2-12b",
    "dolphin-2.2.1-mistral-7b", "falcon-180b-chat", "fastchat-t5-3b", "gemini-pro", "gemini-pro-dev-api",
    "gpt-3.5-turbo-0125", "gpt-3.5-turbo-0314", "gpt-3.5-turbo-0613", "gpt-3.5-turbo-1106",
    "gpt-4-0125-preview", "gpt-4-0314", "gpt-4-0613", "gpt-4-1106-preview", "gpt4all-13b-snoozy",
    "guanaco-33b", "koala-13b", "llama-13b", "llama-2-13b-chat", "llama-2-70b-chat", "llama-2-7b-chat",
    "llama2-70b-steerlm-chat", "mistral-7b-instruct", "mistral-7b-instruct-v0.2", "mistral-medium",
    "mixtral-8x7b-instruct-v0.1", "mpt-30b-chat", "mpt-7b-chat", "nous-hermes-2-mixtral-8x7b-dpo",
    "oasst-pythia-12b", "openchat-3.5", "openchat-3.5-0106", "openhermes-2.5-mistral-7b", "palm-2",
    "pplx-70b-online", "pplx-7b-online", "qwen-14b-chat", "qwen1.5-4b-chat", "qwen1.5-72b-chat",
    "qwen1.5-7b-chat", "solar-10.7b-instruct-v1.0", "stablelm-tuned-alpha-7b", "starling-lm-7b-alpha",
    "stripedhyena-nous-7b", "tulu-2-dpo-70b", "vicuna-13b", "vicuna-33b", "vicuna-7b", "wizardlm-13b",
    "wizardlm-70b", "yi-34b-chat", "zephyr-7b-alpha", "zephyr-7b-beta",
)
MF_TENSORS = ("P.weight", "text_proj.0.weight", "classifier.0.weight")
MF_EMBEDDING_MODEL = "text-embedding-3-small"


class MFCheckpointError(ValueError):
    """A folder is not a RouteLLM MF checkpoint routekit can convert (the message says why)."""


def read_routellm_mf(checkpoint_dir) -> tuple[dict, dict]:
    """(config, {tensor name: float32 array}) of a RouteLLM MF checkpoint folder.

    Reads ``model.safetensors`` with safetensors' numpy API (no torch); an older
    ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``.
    """
    import json

    import numpy as np

    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise MFCheckpointError(f"{folder}: not a folder")
    config: dict = {}
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise MFCheckpointError(f"{folder}/config.json: not valid JSON ({exc})") from exc
        if not isinstance(config, dict):
            raise MFCheckpointError(f"{folder}/config.json: expected a JSON object")
    st, pt = folder / "model.safetensors", folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors.numpy import load_file

        try:
            raw = load_file(str(st))
        except Exception as exc:  # safetensors raises its own error types (e.g. bf16 has no numpy dtype)
            raise MFCheckpointError(f"{st}: cannot be read as numpy arrays ({exc})") from exc
    elif pt.is_file():
        import torch

        state = torch.load(str(pt), map_location="cpu", weights_only=True)
        raw = {k: v.detach().float().numpy() for k, v in state.items()}
    else:
        raise MFCheckpointError(f"{folder}: no model.safetensors (or pytorch_model.bin); "
                                "download the whole checkpoint folder, e.g. routellm/mf_gpt4_augmented")
    return config, {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}


def routellm_mf_arrays(config: dict, tensors: dict) -> dict:
    """routekit MF arrays (``model_emb``, ``proj_w``, ``proj_b``, ``head``) for a RouteLLM MF model."""
    import numpy as np

    unexpected = sorted(set(tensors) - set(MF_TENSORS))
    missing = [k for k in ("P.weight", "classifier.0.weight") if k not in tensors]
    if missing or unexpected:
        raise MFCheckpointError(
            f"not RouteLLM's MF format: expected tensors {', '.join(MF_TENSORS)}; "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'}")
    P, C = tensors["P.weight"], tensors["classifier.0.weight"]
    use_proj = bool(config.get("use_proj", "text_proj.0.weight" in tensors))
    if P.ndim != 2 or C.ndim != 2:
        raise MFCheckpointError(f"P.weight {P.shape} and classifier.0.weight {C.shape} must be matrices")
    n_models, dim = P.shape
    if C.shape != (1, dim):
        raise MFCheckpointError(
            f"classifier.0.weight has shape {C.shape}; RouteLLM's win rate needs num_classes = 1 and "
            f"the model embedding size {dim}")
    if use_proj:
        if "text_proj.0.weight" not in tensors:
            raise MFCheckpointError("config says use_proj but the weights have no text_proj.0.weight")
        W = tensors["text_proj.0.weight"]
        if W.ndim != 2 or W.shape[0] != dim:
            raise MFCheckpointError(f"text_proj.0.weight has shape {W.shape}, expected ({dim}, text_dim)")
    else:  # no projection: the prompt embedding is used as is (text_dim == dim)
        if "text_proj.0.weight" in tensors:
            raise MFCheckpointError("config says use_proj = false but the weights hold text_proj.0.weight")
        W = np.eye(dim, dtype=np.float32)
    found = {"dim": dim, "num_models": n_models, "text_dim": W.shape[1], "num_classes": 1}
    bad = {k: (config[k], v) for k, v in found.items() if k in config and int(config[k]) != v}
    if bad:
        raise MFCheckpointError("config.json disagrees with the weights: " +
                                ", ".join(f"{k} = {c} in config, {v} in weights" for k, (c, v) in bad.items()))
    P64 = P.astype(np.float64)
    norms = np.maximum(np.linalg.norm(P64, axis=1, keepdims=True), 1e-12)  # torch F.normalize's eps
    return {
        "model_emb": (P64 / norms).astype(np.float32),
        "proj_w": np.ascontiguousarray(W, dtype=np.float32),
        "proj_b": np.zeros(dim, dtype=np.float32),
        "head": C.reshape(-1).astype(np.float32),
    }


def _mf_model_table(models, n_models: int) -> list[str]:
    import json

    if models is None:
        if n_models != len(ROUTELLM_MF_MODELS):
            raise MFCheckpointError(
                f"the checkpoint has {n_models} model embeddings, RouteLLM's table has {len(ROUTELLM_MF_MODELS)}: "
                "pass models= (a list of names in id order, or a JSON file with a list or a {name: id} object)")
        return list(ROUTELLM_MF_MODELS)
    if isinstance(models, (str, Path)):
        loaded = json.loads(Path(models).read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            ids = sorted(loaded.items(), key=lambda kv: int(kv[1]))
            if [int(i) for _, i in ids] != list(range(len(ids))):
                raise MFCheckpointError(f"{models}: model ids must be 0..{len(ids) - 1}")
            loaded = [name for name, _ in ids]
        models = loaded
    names = [str(m) for m in models]
    if len(names) != n_models or len(set(names)) != len(names):
        raise MFCheckpointError(f"the model table has {len(names)} names ({len(set(names))} distinct); "
                                f"the checkpoint has {n_models} model embeddings")
    return names


def convert_mf(checkpoint_dir, out_dir, *, models=None, strong: str = D.STRONG, weak: str = D.WEAK,
               name: str | None = None, overwrite: bool = False, embedding_model: str = MF_EMBEDDING_MODEL,
               base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", dimensions: int | None = None,
               calibration: tuple[list[str], str] | None = None, calibration_embeddings=None,
               source: str | None = None, license: str = "unknown", extra: dict | None = None) -> Path:
    """Write a routekit ``mf`` artifact at ``out_dir`` from a RouteLLM MF checkpoint folder.

    The artifact's encoder is the OpenAI embedder (``embedding_model``, default
    text-embedding-3-small; ``base_url``/``api_key_env`` for Azure or compatible servers), and its
    manifest lists the whole model table, so any two known models can be asked for
    (``routekit.load(out, strong=..., weak=...)``).  ``models`` replaces RouteLLM's 64-model table
    for checkpoints trained on other models.  Calibration (for ``strong_fraction=``) is optional:
    ``calibration=(prompts, description)`` embeds the prompts through the API (network, key),
    ``calibration_embeddings=(array n × text_dim or .npy path, description)`` uses vectors you have.
    """

    import numpy as np

    from routekit.calibrate import calibration_table

    from .build import calibrate_in_place, pair_fields

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    artifact.check_output_dir(out_dir, overwrite=overwrite, inputs=[checkpoint_dir])
    config, tensors = read_routellm_mf(checkpoint_dir)
    weights = routellm_mf_arrays(config, tensors)
    n_models, dim = weights["model_emb"].shape
    text_dim = weights["proj_w"].shape[1]
    table = _mf_model_table(models, n_models)
    for role, m in (("strong", strong), ("weak", weak)):
        if m not in table:
            raise MFCheckpointError(f"{role} model {m!r} is not in the model table ({len(table)} models: "
                                    f"{', '.join(table)})")
    if strong == weak:
        raise MFCheckpointError(f"strong and weak model are both {strong!r}")
    wfile = checkpoint_dir / "model.safetensors"
    if not wfile.is_file():
        wfile = checkpoint_dir / "pytorch_model.bin"
    encoder = {"kind": "openai", "model": embedding_model, "dim": int(dimensions or text_dim),
               "base_url": base_url, "api_key_env": api_key_env}
    if dimensions:
        encoder["dimensions"] = int(dimensions)
    if encoder["dim"] != text_dim:
        raise MFCheckpointError(f"the checkpoint expects {text_dim}-d prompt embeddings, not {encoder['dim']}")
    with artifact.ArtifactWriter(out_dir, overwrite=overwrite) as w:
        np.savez(w.dir / "mf.npz", **weights)
        w.manifest.update({
            "name": name or out_dir.name, "kind": "mf",
            "description": (f"Matrix-factorisation router converted from a RouteLLM MF checkpoint; prompts are "
                            f"embedded with {embedding_model} through the OpenAI API "
                            "(pip install 'routekit[openai]', key in $" + api_key_env + ")"),
            **pair_fields(table, strong, weak),
            "encoder": encoder,
            "router": {"weights": "mf.npz", "hidden": int(dim), "source_format": "routellm-mf",
                       "formula": "delta(M,q) = head . (normalize(P_M) * (W q)); model_emb = normalize(P), "
                                  "proj_b = 0"},
            "source": {
                "format": "RouteLLM MFModel checkpoint (PyTorchModelHubMixin: config.json + model.safetensors)",
                "checkpoint": source or checkpoint_dir.name, "config": config,
                "weights_sha256": artifact.sha256_file(wfile), "license": license,
            },
        })
        if extra:
            w.manifest.update(extra)
        if calibration_embeddings is not None:
            emb, desc = calibration_embeddings
            if isinstance(emb, (str, Path)):
                emb = np.load(emb, allow_pickle=False)
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[1] != text_dim:
                raise MFCheckpointError(f"calibration embeddings must be n × {text_dim}, got {emb.shape}")
            w.write_manifest()
            router = routekit.load(w.dir)
            w.manifest["calibration"] = calibration_table(router.scores(emb), prompts=desc)
        elif calibration is not None:
            prompts, desc = calibration
            calibrate_in_place(w, list(prompts), desc)
    return out_dir


# --- RouteLLM causal-LLM classifier ----------------------------------------------------------------
def convert_causal(checkpoint_dir, out_dir, *, system_prompt=None, classifier_prompt=None, tokenizer_dir=None,
                   prompt_format: str = "llama3", score_threshold: int = 4, max_length: int | None = None,
                   strong: str = D.STRONG, weak: str = D.WEAK, name: str | None = None, overwrite: bool = False,
                   calibration: tuple[list[str], str] | None = None, source: str | None = None,
                   license: str = "unknown") -> Path:
    """Write a routekit ``causal`` artifact (torch backend, ``pip install 'routekit[causal]'``) from a
    RouteLLM causal-LLM checkpoint: a Llama-format folder (``config.json`` + safetensors, or
    ``pytorch_model*.bin`` re-saved as safetensors here) plus its system and classifier prompt files
    (default: the one ``system*.txt`` / ``classifier*.txt`` in the folder; CLI:
    ``--set system_prompt=PATH --set classifier_prompt=PATH``).  ``tokenizer_dir``: the base model's
    tokenizer folder when the checkpoint has none (``--set tokenizer_dir=PATH``).  P(strong) =
    1 − P(score ≥ score_threshold).  Implementation and details: ``routekit_export.causal``.
    """
    from .causal_convert import convert_routellm_causal

    return convert_routellm_causal(
        Path(checkpoint_dir), Path(out_dir), system_prompt=system_prompt, classifier_prompt=classifier_prompt,
        tokenizer_dir=tokenizer_dir, prompt_format=prompt_format, score_threshold=int(score_threshold),
        max_length=max_length, strong=strong, weak=weak, name=name, calibration=calibration,
        overwrite=overwrite, source=source, license=license)

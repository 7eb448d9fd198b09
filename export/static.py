"""Distil a static token-embedding table from an ONNX sentence encoder (the "ultra-fast" tier).

Every vocabulary token is run through the encoder on its own (``[CLS] token [SEP]``, mean-pooled
and normalised as usual); the table row is that embedding.  At query time a prompt's embedding is
the normalised mean of its tokens' rows (``routekit.encoders.StaticEncoder``): no network runs.
Optionally the table is reduced with PCA (fitted on the table itself) to ``dim`` columns.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import ExportError


def distill(encoder_dir: Path, out: Path, *, dim: int | None = None, max_length: int = 512,
            batch_size: int = 512, overwrite: bool = False, fp16: bool = False) -> Path:
    from .build import load_encoder, partial_encoder_dir, publish_encoder_dir

    out = Path(out)
    tmp = partial_encoder_dir(out, overwrite)
    enc, spec = load_encoder(encoder_dir)
    if spec.get("kind") == "static":
        raise ExportError("distil from a neural encoder folder, not a static one")
    vocab = enc.tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    cls_id, sep_id = vocab.get("[CLS]", 101), vocab.get("[SEP]", 102)
    session, name = enc.session, enc.output
    rows = np.zeros((size, session.get_outputs()[0].shape[-1] or 384), dtype=np.float32)
    ids = np.arange(size)
    for start in tqdm(range(0, size, batch_size), total=(size + batch_size - 1) // batch_size,
                          desc="distilling tokens", unit="batch"):
        chunk = ids[start:start + batch_size]
        input_ids = np.stack([np.full(len(chunk), cls_id), chunk, np.full(len(chunk), sep_id)], axis=1).astype(np.int64)
        feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        rows[chunk] = session.run([name], feeds)[0]
    if dim and dim < rows.shape[1]:
        mean = rows.mean(0)
        _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
        rows = (rows - mean) @ vt[:dim].T
    tmp.mkdir(parents=True)
    np.save(tmp / "static.npy", rows.astype(np.float16 if fp16 else np.float32))
    shutil.copyfile(Path(encoder_dir) / spec["tokenizer"], tmp / "tokenizer.json")
    new = {"kind": "static", "file": "static.npy", "tokenizer": "tokenizer.json", "dim": int(rows.shape[1]),
           "max_length": max_length, "pooling": "mean of distilled token vectors", "normalize": True,
           "quantization": "fp16" if fp16 else "fp32", "source": f"distilled from {spec.get('source')} ({spec.get('quantization')})",
           "license": spec.get("license")}
    return publish_encoder_dir(tmp, out, new)

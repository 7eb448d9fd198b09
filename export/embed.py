"""Embed training prompts with an artifact's encoder, caching vectors on disk (outside the package)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
from tqdm.auto import tqdm

from routekit.artifact import cache_dir


def embed_texts(encoder, texts: list[str], *, encoder_key: str, batch_size: int = 64,
                use_cache: bool = True, show_progress: bool = True) -> np.ndarray:
    """Embeddings for ``texts`` (n × d float32), reading and extending a cache keyed by encoder hash."""
    keys = [hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts]
    path = cache_dir() / "embeddings" / f"{encoder_key[:16]}.npz"
    cached: dict[str, np.ndarray] = {}
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            cached = dict(zip(z["keys"].tolist(), z["vectors"]))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cached}.items())
    if todo:
        chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        for chunk in tqdm(chunks, total=len(chunks), desc="embedding prompts", disable=not show_progress,
                              unit="batch"):
            vecs = encoder([t for _, t in chunk], batch_size=batch_size)
            cached.update(zip((k for k, _ in chunk), vecs))
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            allk = sorted(cached)
            np.savez(tmp, keys=np.array(allk), vectors=np.stack([cached[k] for k in allk]).astype(np.float32))
            os.replace(tmp, path)
    return np.stack([cached[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 384), np.float32)

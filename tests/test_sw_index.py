"""The FAISS index shipped in SW artifacts (sw.faiss) and the artifact's default mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

import routekit
from routekit import artifact
from routekit.errors import BadArtifactError

PROMPTS = ["Prove that sqrt(2) is irrational.", "hi there", "Write a sonnet about the sea",
           "What is the capital of Peru?", "Fix this segfault in my C code", "2+2", "Explain TCP slow start"]


def test_every_shipped_sw_artifact_lists_its_index():
    for name, folder in artifact.shipped().items():
        m = artifact.read_manifest(folder, verify=False)
        if m.kind == "sw":
            assert m["router"]["index"]["file"] == "sw.faiss" and "sha256" in m.files["sw.faiss"], name


def test_shipped_index_read_in_fast_mode(name="sw-static"):
    import faiss

    fast = routekit.load(name, mode="fast")
    assert isinstance(fast.sw.index, faiss.IndexScalarQuantizer)  # read from the file, not rebuilt
    assert fast.sw.index.ntotal == fast.sw.n_prompts
    exact = routekit.load(name)
    assert exact.sw.mode == "exact"  # small artifacts route exactly by default
    d = np.abs(fast.win_rates(PROMPTS) - exact.win_rates(PROMPTS))
    assert d.max() < 0.05, d  # fast mode's documented approximation (dev MMLU mean 0.004)


def _copy(tmp_path, name="sw-static"):
    dst = tmp_path / name
    artifact.copy_artifact(artifact.resolve(name), dst)
    return dst


def _edit(folder, fn):
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    data.pop("manifest_sha256", None)
    path.write_text(json.dumps(data, indent=2))
    artifact.seal(folder)


def test_index_kinds_and_default_mode(tmp_path):
    pytest.importorskip("routekit_export")
    from routekit_export.sw import add_index

    folder = _copy(tmp_path)
    base = routekit.load(folder, mode="fast").win_rates(PROMPTS)
    assert add_index(folder, "hnsw")["type"].startswith("IndexHNSWFlat")
    hnsw = routekit.load(folder, mode="fast")
    assert hnsw.sw.index.hnsw.efSearch == 256
    # the index only picks neighbours; similarities come from the embeddings
    assert np.abs(hnsw.win_rates(PROMPTS) - base).max() < 1e-3
    assert add_index(folder, "none") is None and "index" not in artifact.read_manifest(folder)["router"]
    _edit(folder, lambda d: d["router"].update(mode="fast"))
    assert routekit.load(folder).sw.mode == "fast" and routekit.load(folder, mode="exact").sw.mode == "exact"
    with pytest.raises(BadArtifactError, match="router.mode"):  # the schema refuses it (seal and load)
        _edit(folder, lambda d: d["router"].update(mode="quick"))


def test_damaged_index_is_a_bad_artifact(tmp_path):
    folder = _copy(tmp_path)
    idx = folder / "sw.faiss"
    idx.write_bytes(idx.read_bytes()[:1000])  # truncated, hash updated: faiss cannot read it
    _edit(folder, lambda d: d["files"]["sw.faiss"].update(sha256=artifact.sha256_file(idx), bytes=1000))
    with pytest.raises(BadArtifactError, match="sw.faiss"):
        routekit.load(folder, mode="fast")

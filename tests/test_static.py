"""The static (distilled token-table) encoder tier."""

import json

import numpy as np
import pytest

import routekit
from routekit import artifact
from routekit.encoders import StaticEncoder


@pytest.fixture(scope="module")
def tokenizer_path():
    return artifact.read_manifest(artifact.shipped()["default"], verify=False).path("tokenizer.json")


def test_static_encoder_is_mean_of_token_rows(tokenizer_path):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((30522, 8)).astype(np.float32)
    enc = StaticEncoder(table, tokenizer_path, max_length=64)
    ids = [t for t, s in zip(enc.tokenizer.encode("hello world").ids, enc.tokenizer.encode("hello world").special_tokens_mask) if not s]
    expect = table[ids].mean(0)
    expect /= np.linalg.norm(expect)
    np.testing.assert_allclose(enc(["hello world"])[0], expect, rtol=1e-5, atol=1e-6)
    out = enc(["", "hello world", "x" * 100_000])
    assert out.shape == (3, 8) and np.all(out[0] == 0)  # empty prompt: zero vector, no NaN
    np.testing.assert_allclose(np.linalg.norm(out[1:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(enc(["a", "b c"]), np.vstack([enc(["a"]), enc(["b c"])]), atol=1e-7)


@pytest.mark.slow
def test_distill_and_route(tmp_path, encoder_dir, data_root):
    from routekit_export.build import build_mf
    from routekit_export.mf import MFConfig
    from routekit_export.static import distill

    st = distill(encoder_dir, tmp_path / "static", dim=64)
    spec = json.loads((st / "encoder.json").read_text())
    assert spec["kind"] == "static" and spec["dim"] == 64
    build_mf(tmp_path / "mf", encoder_dir=st, data_dir=data_root, cfg=MFConfig(epochs=1, hidden=8),
             limit=300, calib_limit=20)
    r = routekit.load(tmp_path / "mf")
    assert r.encoder.__class__.__name__ == "StaticEncoder"
    rates = r.win_rates(["hi", "Prove that there are infinitely many primes."])
    assert np.all((rates >= 0) & (rates <= 1))

"""The OpenAI embedder against a real HTTP server on loopback (tests/_fake_openai.py): batching,
the on-disk cache, retries, errors, and that nothing imports ``openai`` before the first call."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _fake_openai import fake_openai  # noqa: F401  (fixture)

from routekit.encoders.openai import (
    EmbeddingCache,
    EmbeddingServiceError,
    NoAPIKeyError,
    OpenAIEmbedder,
)
from routekit.errors import RoutekitError

pytest.importorskip("openai", reason="needs the openai extra: pip install 'routekit[openai]'")

TEXTS = [f"prompt number {i}: " + "words " * i for i in range(10)]


def make(server, tmp_path, **kw):
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("cache", tmp_path / "emb.sqlite3")
    return OpenAIEmbedder("fake-embed", dim=server.dim, base_url=server.url, **kw)


def expected(server, texts):
    return np.stack([server.vector(t, server.dim) for t in texts])


def test_batches_and_order(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, batch_size=4)
    texts = TEXTS + [TEXTS[3]]  # a duplicate is sent once
    out = emb(texts)
    assert out.dtype == np.float32 and out.shape == (11, fake_openai.dim)
    np.testing.assert_array_equal(out, expected(fake_openai, texts))
    assert [len(x) for x in fake_openai.inputs()] == [4, 4, 2]
    req = fake_openai.requests[0]
    assert req["path"] == "/v1/embeddings"
    assert req["headers"]["authorization"] == "Bearer sk-test"
    assert req["body"]["model"] == "fake-embed" and "dimensions" not in req["body"]
    # the batch_size argument of the Encoder signature overrides the default
    emb2 = make(fake_openai, tmp_path, cache=False)
    emb2(TEXTS, batch_size=3)
    assert [len(x) for x in fake_openai.inputs()[3:]] == [3, 3, 3, 1]


def test_cache_hits_make_no_request_and_persist(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path)
    first = emb(TEXTS[:5])
    n = len(fake_openai.requests)
    assert n == 1
    np.testing.assert_array_equal(emb(TEXTS[:5]), first)
    assert len(fake_openai.requests) == n  # all cached
    # a fresh embedder on the same cache file: still no request; a new text costs one
    again = make(fake_openai, tmp_path)
    np.testing.assert_array_equal(again(list(reversed(TEXTS[:6])))[1:], first[::-1])
    assert fake_openai.inputs()[n:] == [[TEXTS[5]]]
    # another model (or dimensions) is another key
    other = OpenAIEmbedder("other-model", dim=fake_openai.dim, base_url=fake_openai.url, api_key="k",
                           cache=tmp_path / "emb.sqlite3")
    other(TEXTS[:2])
    assert fake_openai.inputs()[-1] == TEXTS[:2]


def test_default_cache_location_uses_routekit_cache(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTEKIT_CACHE", str(tmp_path / "rc"))
    emb = make(fake_openai, tmp_path, cache=True)
    emb(["hello"])
    assert (tmp_path / "rc" / "openai-embeddings.sqlite3").is_file()
    assert emb.cache.stats()["entries"] == 1


def test_cache_is_bounded_lru(tmp_path):
    per = 8 * 4
    cache = EmbeddingCache(tmp_path / "c.sqlite3", max_bytes=6 * per)  # evicts down to 90 %: 5 rows
    vec = lambda i: np.full(8, i, dtype=np.float32)  # noqa: E731
    cache.put_many([(f"k{i}", vec(i)) for i in range(4)])
    assert cache.get_many(["k0"])["k0"][0] == 0  # k0 becomes the most recently used
    cache.put_many([(f"k{i}", vec(i)) for i in range(4, 8)])
    stats = cache.stats()
    assert stats["entries"] == 5 and stats["bytes"] == 5 * per
    left = cache.get_many([f"k{i}" for i in range(8)])
    assert "k0" in left and "k1" not in left and all(f"k{i}" in left for i in range(4, 8))


def test_retries_429_and_5xx_with_backoff(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False)
    fake_openai.failures[:] = [(429, {"Retry-After": "0"}), (500,), (503,)]
    out = emb(TEXTS[:3])
    np.testing.assert_array_equal(out, expected(fake_openai, TEXTS[:3]))
    assert len(fake_openai.requests) == 4  # the SDK's retries (max_retries), one embeddings call
    assert emb.requests == 1


def test_gives_up_after_max_retries(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False, max_retries=2)
    fake_openai.failures[:] = [(500,)] * 5
    with pytest.raises(EmbeddingServiceError, match="after 3 attempts"):
        emb(["x"])
    assert len(fake_openai.requests) == 3


def test_client_errors_are_not_retried(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False)
    fake_openai.failures[:] = [(401,)]
    with pytest.raises(EmbeddingServiceError, match="401"):
        emb(["x"])
    fake_openai.failures[:] = [(404,)]
    with pytest.raises(EmbeddingServiceError, match="404"):
        emb(["x"])
    assert len(fake_openai.requests) == 2


def test_timeout_is_retried(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False, timeout=0.3)
    fake_openai.failures[:] = [("sleep", 1.0)]
    np.testing.assert_array_equal(emb(["slow"]), expected(fake_openai, ["slow"]))
    assert len(fake_openai.requests) == 2 and emb.requests == 1


def test_too_long_text_is_shortened(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False)
    fake_openai.max_chars = 1000
    long = "a" * 3000
    out = emb(["short", long])
    np.testing.assert_array_equal(out[0], fake_openai.vector("short", fake_openai.dim))
    np.testing.assert_array_equal(out[1], fake_openai.vector("a" * 750, fake_openai.dim))


def test_empty_text_and_dimension_check(fake_openai, tmp_path):
    emb = make(fake_openai, tmp_path, cache=False)
    assert emb([""]).shape == (1, fake_openai.dim)  # sent as " " (the API refuses "")
    assert fake_openai.inputs()[-1] == [" "]
    assert emb([]).shape == (0, fake_openai.dim)
    wrong = OpenAIEmbedder("fake-embed", dim=16, base_url=fake_openai.url, api_key="k", cache=False)
    with pytest.raises(EmbeddingServiceError, match="16-d"):
        wrong(["x"])
    sized = OpenAIEmbedder("fake-embed", dimensions=4, base_url=fake_openai.url, api_key="k", cache=False)
    assert sized(["x"]).shape == (1, 4) and fake_openai.requests[-1]["body"]["dimensions"] == 4


def test_no_key_is_a_clear_error(fake_openai, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    emb = OpenAIEmbedder(base_url=fake_openai.url, cache=False)
    with pytest.raises(NoAPIKeyError, match=r"\$OPENAI_API_KEY") as info:
        emb(["x"])
    assert isinstance(info.value, RoutekitError)
    assert not fake_openai.requests
    monkeypatch.setenv("MY_KEY", "sk-env")  # the key comes from the named variable
    OpenAIEmbedder("fake-embed", dim=8, base_url=fake_openai.url, api_key_env="MY_KEY", cache=False)(["x"])
    assert fake_openai.requests[-1]["headers"]["authorization"] == "Bearer sk-env"


def test_azure_client(fake_openai, tmp_path):
    emb = OpenAIEmbedder("my-deployment", dim=8, base_url=fake_openai.url.removesuffix("/v1"),
                         api_version="2024-10-21", api_key="az-key", cache=False)
    np.testing.assert_array_equal(emb(["x"]), expected(fake_openai, ["x"]))
    req = fake_openai.requests[-1]
    assert "/openai/deployments/my-deployment/embeddings" in req["path"] and "api-version=2024-10-21" in req["path"]
    assert req["headers"].get("api-key") == "az-key"


def test_from_spec_roundtrip():
    spec = {"kind": "openai", "model": "text-embedding-3-small", "dim": 1536, "base_url": None,
            "api_key_env": "OPENAI_API_KEY"}
    emb = OpenAIEmbedder.from_spec(spec)
    assert emb.spec() == spec and emb._client is None


def test_import_routekit_does_not_import_openai():
    code = ("import sys, routekit, routekit.encoders.openai, routekit.routers.mf, routekit.encoders.session\n"
            "e = routekit.encoders.openai.OpenAIEmbedder()\n"
            "assert 'openai' not in sys.modules, 'openai imported'\n"
            "print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_missing_openai_package_gives_install_hint(monkeypatch):
    from routekit.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail
    emb = OpenAIEmbedder(api_key="k", cache=None)
    with pytest.raises(MissingExtraError, match=r"routekit\[openai\]"):
        emb(["x"])

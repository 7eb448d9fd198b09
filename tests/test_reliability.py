"""Hostile inputs and concurrency on the shipped default router (issue: reliability)."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import routekit
from routekit.errors import BadArtifactError, BadInputError


def _timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t


@pytest.mark.parametrize("size_mb", [1, 10])
def test_huge_prompt_is_cut_not_slow(default_router, size_mb):
    small, t_small = _timed(default_router.win_rate, "word " * 5000)
    big, t_big = _timed(default_router.win_rate, "word " * (size_mb * 200_000))
    assert 0 <= big <= 1
    assert big == pytest.approx(small, abs=1e-6)  # only the first max_length tokens count
    assert t_big < 2.0, f"{size_mb} MB prompt took {t_big:.2f}s"


@pytest.mark.parametrize("prompt", ["", " ", "\n\t\r", "\x00" * 100, "\ud800 lone surrogate",
                                    "🤖" * 3000, "שלום עולם مرحبا بالعالم", "中文" * 5000,
                                    "\u202e reversed", "a" * 100_000])
def test_odd_strings_give_a_finite_win_rate(default_router, prompt):
    w = default_router.win_rate(prompt)
    assert np.isfinite(w) and 0 <= w <= 1
    d = default_router.route(prompt)
    assert d.route in ("strong", "weak")


def test_invalid_utf8_bytes(default_router):
    w = default_router.win_rate(b"\xc3\x28 invalid \xa0\xa1 bytes \xff")
    assert 0 <= w <= 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-9, 1 + 1e-9, "0.5x", [0.5]])
def test_threshold_and_fraction_validation(default_router, bad):
    with pytest.raises(BadInputError):
        default_router.route("x", threshold=bad)
    with pytest.raises(BadInputError):
        default_router.route("x", strong_fraction=bad)


def test_empty_batch(default_router):
    out = default_router.win_rates([])
    assert out.shape == (0,)
    assert default_router.route_many([]) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), min_size=1, max_size=6))
def test_property_finite_and_batch_equals_single(default_router, texts):
    batch = default_router.win_rates(texts)
    assert np.all(np.isfinite(batch)) and np.all((batch >= 0) & (batch <= 1))
    single = np.array([default_router.win_rate(t) for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-6)


MIXED = ["hi", "", "Prove that sqrt(2) is irrational.", "写一首关于秋天的诗", "def f(): pass\n" * 50,
         "x" * 20_000, "What's the capital of France?", "🙂" * 10]


def _concurrent(router, n_threads, n_prompts):
    prompts = [f"{MIXED[i % len(MIXED)]} {i}" for i in range(n_prompts)]
    expected = router.win_rates(prompts)
    with ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(lambda k=k: np.array([router.win_rate(p) for p in prompts[k::n_threads]]))
                   for k in range(n_threads)]
        parts = [f.result() for f in futures]
    for k, part in enumerate(parts):
        np.testing.assert_allclose(part, expected[k::n_threads], atol=1e-6)
    with ThreadPoolExecutor(n_threads) as pool:  # batched calls from many threads too
        batches = list(pool.map(router.win_rates, [prompts[i:i + 16] for i in range(0, len(prompts), 16)]))
    np.testing.assert_allclose(np.concatenate(batches), expected, atol=1e-6)


def test_concurrent_small(default_router):
    _concurrent(default_router, 4, 64)


@pytest.mark.parametrize("name", ["sw", "bert"])
def test_concurrent_shipped_sw_and_bert(name):
    """The int8 similarity session (SW) and the one-prompt BERT graph, shared by threads."""
    import routekit

    _concurrent(routekit.load(name), 4, 48)


@pytest.mark.slow
def test_concurrent_8x500(default_router):
    _concurrent(default_router, 8, 4000)


def test_truncated_onnx_refused_even_without_hash_check(tmp_path):

    src = routekit.artifact.shipped()["default"]
    dst = tmp_path / "t"
    routekit.artifact.copy_artifact(src, dst)
    onnx = next(dst.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes()[: 4096])
    with pytest.raises(BadArtifactError):
        routekit.load(dst)  # size/hash check
    with pytest.raises(BadArtifactError, match="onnxruntime could not load"):
        routekit.load(dst, verify=False)

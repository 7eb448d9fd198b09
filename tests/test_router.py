import subprocess
import sys
import threading

import numpy as np
import pytest

import routekit
from routekit.errors import BadInputError, UnknownModelError

PROMPTS = [
    "Prove that there are infinitely many primes.",
    "hi",
    "",
    "   \n\t ",
    "Écris un poème sur la mer. 海についての詩を書いてください。 اكتب قصيدة",
    "emoji 🤖🚀 and NUL \x00 bytes",
    "Write a Python function that merges two sorted lists in O(n) time. " * 40,
]


def test_decision_fields(default_router):
    d = default_router.route(PROMPTS[0])
    assert d.route in ("strong", "weak")
    assert d.model == (d.strong_model if d.route == "strong" else d.weak_model)
    assert 0.0 <= d.win_rate <= 1.0
    assert d.threshold == pytest.approx(default_router.default_threshold)
    assert (d.win_rate >= d.threshold) == d.is_strong
    assert set(d.to_dict()) >= {"route", "model", "win_rate", "threshold", "router"}


def test_batch_equals_single(default_router):
    batch = default_router.win_rates(PROMPTS)
    single = np.array([default_router.win_rate(p) for p in PROMPTS])
    assert batch.shape == (len(PROMPTS),)
    np.testing.assert_allclose(batch, single, atol=1e-6)
    assert np.all(np.isfinite(batch)) and np.all((batch >= 0) & (batch <= 1))


def test_prompts_differ(default_router):
    rates = default_router.win_rates(PROMPTS)
    assert np.ptp(rates) > 1e-3, "router gives the same score to very different prompts"


def test_strong_fraction_uses_calibration(default_router):
    cal = default_router.calibration
    assert cal and len(cal["quantiles"]) >= 11
    lo = default_router.threshold_for(0.1)
    hi = default_router.threshold_for(0.9)
    assert lo > hi  # sending fewer prompts to strong needs a higher threshold
    assert default_router.threshold_for(0.3) == pytest.approx(cal["thresholds"]["0.3"], abs=1e-9)
    assert default_router.route("x", strong_fraction=0.0).route == "weak"
    assert default_router.route("x", strong_fraction=1.0).route == "strong"
    assert default_router.route("x", threshold=0.0).route == "strong"


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "abc", None])
def test_bad_threshold(default_router, bad):
    if bad is None:
        with pytest.raises(BadInputError, match="not both"):
            default_router.route("x", threshold=0.5, strong_fraction=0.5)
        return
    with pytest.raises(BadInputError):
        default_router.route("x", threshold=bad)
    with pytest.raises(BadInputError):
        default_router.route("x", strong_fraction=bad)


@pytest.mark.parametrize("bad", [None, 3, 4.5, ["a"], {"p": 1}])
def test_non_string_prompt(default_router, bad):
    with pytest.raises(BadInputError, match="must be str"):
        default_router.win_rate(bad)


def test_batch_with_one_bad_element_names_it(default_router):
    with pytest.raises(BadInputError, match=r"prompts\[2\]"):
        default_router.win_rates(["a", "b", 7])
    with pytest.raises(BadInputError, match="sequence"):
        default_router.win_rates("a single string")


def test_bytes_prompt_decoded(default_router):
    assert default_router.win_rate(b"hello \xff\xfe world") == pytest.approx(
        default_router.win_rate("hello \ufffd\ufffd world"), abs=1e-6)


def test_other_pair_and_unknown_model():
    r = routekit.load("mf", strong="claude-2.1", weak="llama-13b")
    assert r.strong_model == "claude-2.1" and r.weak_model == "llama-13b"
    wr = r.win_rate("Write a haiku about autumn.")
    assert 0 <= wr <= 1
    assert r.calibration is None
    with pytest.raises(BadInputError, match="no calibration"):
        r.route("x")
    assert r.route("x", threshold=0.5).model in ("claude-2.1", "llama-13b")
    # aliases from other sources resolve to the table's names
    r2 = routekit.load("mf", weak="mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert r2.weak_model == "mixtral-8x7b-instruct-v0.1"
    with pytest.raises(UnknownModelError, match="gpt-4o"):
        routekit.load("default", strong="gpt-4o")
    with pytest.raises(UnknownModelError, match="gpt-4o"):
        routekit.load("mf", strong="gpt-4o")


def test_router_path_and_repr(default_router):
    assert default_router.path is not None and (default_router.path / "manifest.json").is_file()
    assert default_router.kind in repr(default_router) and default_router.name in repr(default_router)


def test_random_router_is_reproducible():
    a, b = routekit.load("random"), routekit.load("random:7")
    ps = [f"prompt {i}" for i in range(200)]
    ra = a.win_rates(ps)
    np.testing.assert_array_equal(ra, a.win_rates(ps))
    np.testing.assert_array_equal(ra[:5], [a.win_rate(p) for p in ps[:5]])
    assert not np.allclose(ra, b.win_rates(ps))
    assert 0.35 < (ra >= a.threshold_for(0.5)).mean() < 0.65


def test_threads_identical(default_router):
    prompts = [f"{p} #{i}" for i in range(20) for p in PROMPTS[:3]]
    expected = default_router.win_rates(prompts)
    results, errors = {}, []

    def work(k):
        try:
            results[k] = np.array([default_router.win_rate(p) for p in prompts])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        np.testing.assert_allclose(results[k], expected, atol=1e-6)


def test_route_one_liner_without_torch():
    code = ("import routekit, sys; d = routekit.route('hi'); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'transformers' not in sys.modules; print(d.route)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("strong", "weak")


def test_import_is_lazy():
    code = ("import sys, routekit; "
            "heavy = [m for m in ('onnxruntime', 'tokenizers', 'faiss', 'torch') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at import time: {out.stdout}"


def test_router_set_shares_one_encoder_pass(monkeypatch):
    names = ["linear", "mf", "sw", "bert", "random"]
    rs = routekit.RouterSet(names)
    prompts = PROMPTS + ["Solve 3x + 5 = 20.", "Tell me a joke about cats."]
    expected = [routekit.load(n).win_rates(prompts) for n in names]
    calls = []
    shared = rs.routers[0].encoder
    original = type(shared).__call__

    def counting(self, texts, **kw):
        calls.append(len(list(texts)))
        return original(self, texts, **kw)

    monkeypatch.setattr(type(shared), "__call__", counting)
    got = rs.win_rates(prompts)
    for n, g, e in zip(names, got, expected):
        np.testing.assert_allclose(g, e, atol=1e-9, err_msg=n)
    # linear, mf and sw ship the same MiniLM file: one pass for the three (+1 for bert's classifier)
    assert calls.count(len(prompts)) == 2, calls
    ds = rs.route("hi", strong_fraction=0.5)
    assert [d.router for d in ds] == [r.name for r in rs.routers]

"""N-model ranking and selection (routekit.select; Router.rank / Router.select)."""

import numpy as np
import pytest

import routekit
from routekit.errors import BadInputError, UnknownModelError

PROMPTS = ["hi!", "Prove that there are infinitely many primes.", "Write a Rust JSON parser with tests."]


@pytest.fixture(scope="module")
def mf():
    return routekit.load("mf")


def test_mf_rank_matches_the_pair_win_rate(mf):
    for p in PROMPTS:
        r = mf.rank(p, [mf.strong_model, "claude-v2"], reference=mf.weak_model)
        assert r[mf.strong_model] == pytest.approx(mf.win_rate(p), abs=1e-5)
        assert list(r) == sorted(r, key=lambda m: -r[m])  # best first
    full = mf.rank(PROMPTS[1])
    assert set(full) == set(mf.models) and full[mf.weak_model] == pytest.approx(0.5)


def test_select_trades_quality_for_price(mf):
    cands = ["gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1", "claude-v2", "mistral-7b-instruct"]
    prices = {"gpt-4-1106-preview": 20.0, "mixtral-8x7b-instruct-v0.1": 0.6, "claude-v2": 16.0,
              "mistral-7b-instruct": 0.1}
    for p in PROMPTS:
        q = mf.rank(p, cands)
        assert mf.select(p, cands).model == max(q, key=q.get)  # no price: best predicted quality
        assert mf.select(p, cands, prices=prices, willingness_to_pay=0).model == "mistral-7b-instruct"
        s = mf.select(p, cands, prices=prices, willingness_to_pay=30.0)
        util = {m: q[m] - prices[m] / 30.0 for m in cands}
        assert s.model == max(util, key=util.get) and s.utility[s.model] == pytest.approx(util[s.model])
        assert mf.select(p, cands, prices=prices, willingness_to_pay=float("inf")).model == max(q, key=q.get)
    # a larger budget never picks a cheaper model
    wtps = [0.0, 1.0, 5.0, 20.0, 100.0, 1e6]
    picked = [prices[mf.select(PROMPTS[1], cands, prices=prices, willingness_to_pay=w).model] for w in wtps]
    assert picked == sorted(picked)


def test_sw_rank_uses_tier_ratings():
    sw = routekit.load("sw")
    p = PROMPTS[1]
    r = sw.rank(p, [sw.strong_model], reference=sw.weak_model)
    assert r[sw.strong_model] == pytest.approx(sw.win_rate(p), abs=1e-6)


@pytest.mark.parametrize("kw", [dict(candidates=[]), dict(candidates="gpt-4-1106-preview"),
                                dict(candidates=[3]), dict(candidates=["claude-v2", "claude-v2"]),
                                dict(prices={"claude-v2": 1.0}, willingness_to_pay=1.0),
                                dict(prices={"claude-v2": -1.0, "mistral-7b-instruct": 1.0}, willingness_to_pay=1.0),
                                dict(willingness_to_pay=1.0),
                                dict(prices={"claude-v2": 1.0, "mistral-7b-instruct": 1.0}, willingness_to_pay=-2)])
def test_select_refuses_bad_input(mf, kw):
    kw.setdefault("candidates", ["claude-v2", "mistral-7b-instruct"])
    with pytest.raises(BadInputError):
        mf.select("x", kw.pop("candidates"), **kw)


def test_rank_needs_a_model_table(mf):
    with pytest.raises(UnknownModelError):
        mf.rank("x", ["gpt-5"])
    with pytest.raises(BadInputError, match="no model table"):
        routekit.load("random").rank("x", ["a", "b"])
    assert np.isfinite(list(mf.rank("x", ["claude-v2", "llama-13b"]).values())).all()


@pytest.mark.parametrize("bad", [None, 5, ["ok", None]])
def test_rank_and_select_refuse_a_prompt_that_is_not_a_string(mf, bad):
    """rank(None) raised a bare TypeError from deep in the encoder."""
    if not isinstance(bad, list):
        with pytest.raises(BadInputError, match="prompt must be str"):
            mf.rank(bad)
        with pytest.raises(BadInputError, match="prompt must be str"):
            mf.select(bad)
    with pytest.raises(BadInputError, match="prompt"):
        routekit.select.rank_many(mf, bad if isinstance(bad, list) else [bad])


def test_rank_many_refuses_one_string_for_many_prompts(mf):
    """rank_many(r, "abc") ranked three one-character prompts."""
    with pytest.raises(BadInputError, match="sequence of prompts"):
        routekit.select.rank_many(mf, "abc")
    assert routekit.select.rank_many(mf, (p for p in PROMPTS)).shape == (3, len(mf.models))
    assert mf.rank(b"hi!") == mf.rank("hi!")  # UTF-8 bytes are a prompt, as in win_rate()

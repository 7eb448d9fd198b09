"""The length-only baseline (``routekit.load("length")``), baselines in eval reports, and suites with
bands and pairs through ``routekit eval --suite``."""

import json

import numpy as np
import pytest

import routekit
from routekit import cli
from routekit import eval as ev
from routekit.errors import BadInputError, UnknownArtifactError
from routekit.eval.sets import EvalSet
from routekit.eval.suite import (
    auc,
    format_band_table,
    load_suite,
    load_suites,
    pair_accuracy,
    shipped_suites,
    suite_report,
)
from routekit.routers.length import CHAR_QUANTILES, LengthRouter


# -- the length router --------------------------------------------------------------------------------
def test_length_router_ranks_by_number_of_characters():
    r = routekit.load("length")
    assert isinstance(r, LengthRouter) and r.kind == "length" and r.name == "length" and r.path is None
    rng = np.random.default_rng(0)
    prompts = ["é" * int(n) for n in rng.integers(1, 5000, 200)] + ["x" * 100_000, "y"]
    w = r.win_rates(prompts)
    chars = np.array([len(p) for p in prompts])
    assert ((w > 0) & (w < 1)).all()
    order = np.argsort(chars, kind="stable")
    assert (np.diff(w[order]) >= 0).all()  # monotone in characters (code points, not bytes)
    assert auc(w, chars > 1000) == auc(chars, chars > 1000) == 1.0
    assert w[-2] > w[np.argmax(chars[:-2])]  # still strictly increasing far out
    assert r.win_rate("ab") == pytest.approx(2 / 502)


def test_length_router_default_threshold_sends_the_mix_strong_share():
    from routekit_export.build import strong_share

    r = routekit.load("length")
    assert r.calibration["default_strong_fraction"] == strong_share()
    t = r.default_threshold  # between the mix's character quantiles at levels 0.60 and 0.65
    cut = 500 * t / (1 - t)
    assert CHAR_QUANTILES[12] < cut < CHAR_QUANTILES[13]
    assert r.route("a" * (int(cut) + 1)).is_strong and not r.route("a" * (int(cut) - 1)).is_strong
    assert r.threshold_for(0.3) > r.default_threshold
    assert r.route("hi", strong_fraction=1.0).is_strong


def test_length_router_options_and_artifact_commands():
    with pytest.raises(BadInputError, match="'length' router: seed"):
        routekit.load("length", seed=1)
    with pytest.raises(UnknownArtifactError, match="length-only baseline"):
        routekit.artifact.resolve("length")
    assert cli.main(["artifacts", "verify", "length"]) == 2


def test_length_quantiles_are_the_reference_mix(data_root):
    """CHAR_QUANTILES are recomputed from the data the shipped thresholds are calibrated on."""
    from routekit_export.build import traffic_mix

    from routekit.calibrate import weighted_quantile

    prompts, weights, _, _ = traffic_mix(data_root)
    q = weighted_quantile(np.array([len(p) for p in prompts], dtype=float), np.linspace(0, 1, 21), weights)
    np.testing.assert_allclose(q, CHAR_QUANTILES, atol=0.051)


# -- the length baseline in benchmark reports -------------------------------------------------------
def _evalset(strong_wins_on_long: bool) -> EvalSet:
    prompts = [f"q{i} " + "x" * (3 * i) for i in range(60)]
    long = np.arange(60) >= 30
    strong = np.where(long == strong_wins_on_long, 1.0, 0.0)
    weak = np.full(60, 0.4)
    return EvalSet("toy", prompts, strong, weak, 0, "h")


@pytest.mark.parametrize("long_needs_strong", [True, False])
def test_report_carries_the_length_baseline(long_needs_strong):
    es = _evalset(long_needs_strong)
    rates = routekit.load("random").win_rates(es.prompts)
    summary = ev.report([ev.evaluate(rates, es, "random")], es, [rates])
    length = summary["length"]
    chars = np.array([len(p) for p in es.prompts], dtype=float)
    assert length["apgr"] == pytest.approx(ev.apgr(chars, es.strong, es.weak))
    if long_needs_strong:  # a ruler is the oracle here
        assert length["apgr"] == pytest.approx(ev.optimal_curve(es).area())
    else:  # and ranks this set backwards
        assert length["apgr"] < 0.5
    assert length["apgr_ci95"][0] <= length["apgr"] <= length["apgr_ci95"][1]
    table = ev.format_table(summary)
    assert "length (characters)" in table and f"{length['apgr']:>7.3f}" in table
    again = ev.report([ev.evaluate(rates, es, "length")], es, [rates])
    assert "length (characters)" not in ev.format_table(again)  # asked for as a router: one row


# -- suites with bands and pairs ------------------------------------------------------------------------
def _banded(tmp_path):
    rows = []
    for i in range(6):  # long easy: long trivial prompts
        rows.append({"id": f"le{i}", "prompt": f"Fix the typos {i}: " + "word " * (100 + 10 * i), "side": "trivial",
                     "category": "proofread", "band": "long_easy"})
    for i in range(6):  # short hard
        rows.append({"id": f"sh{i}", "prompt": f"Prove claim {i}.", "side": "hard", "category": "proof",
                     "band": "short_hard"})
    for i in range(4):  # matched pairs: the hard one is shorter in pairs 0-2, longer in pair 3
        t, h = "Reformat this list: a, b, c, d" + "!" * 5, "Prove it for every n." + "?" * (5 if i < 3 else 40)
        rows.append({"id": f"m{i}t", "prompt": t + f" #{i}", "side": "trivial", "category": "reformat",
                     "band": "matched", "pair": f"p{i}"})
        rows.append({"id": f"m{i}h", "prompt": h + f" #{i}", "side": "hard", "category": "proof", "band": "matched",
                     "pair": f"p{i}"})
    f = tmp_path / "lenfix.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_suite_with_bands_and_pairs(tmp_path):
    s = load_suite(_banded(tmp_path))
    assert s.bands[:1] == ["long_easy"] and s.pairs[0] is None and s.pairs[-1] == "p3"
    length = routekit.load("length")
    rep = suite_report(length, s)
    b = rep["bands"]
    assert set(b) == {"long_easy", "short_hard", "matched"}
    assert b["long_easy"] == {"n": 6, "n_hard": 0, "auc": None, "trivial_to_strong": 1.0}
    assert b["short_hard"]["auc"] is None and b["short_hard"]["hard_to_strong"] == 0.0  # < 51 characters
    assert b["matched"]["pair_accuracy"] == rep["pair_accuracy"] == 0.25  # only pair 3's hard prompt is longer
    assert rep["auc"] < 0.5
    w = length.win_rates(s.prompts)
    m = np.array(s.bands) == "matched"
    assert b["matched"]["auc"] == pytest.approx(auc(w[m], s.hard[m]), abs=1e-4)
    table = format_band_table([rep, suite_report(routekit.load("random"), s)])
    assert "long_easy trivial → strong" in table and "matched pairs right" in table and "| random |" in table
    assert "short_hard trivial" not in table  # a band with one side gets one column


def test_pair_accuracy_counts_ties_half_and_skips_incomplete_pairs():
    assert pair_accuracy([1, 1, 0, 2, 5], [True, False, True, False, True], ["a", "a", "b", "b", "c"]) == 0.25
    assert pair_accuracy([1, 2], [True, True], ["a", "a"]) is None


def test_load_suite_refuses_non_string_band(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"prompt": "x", "side": "hard", "band": 3}) + "\n")
    with pytest.raises(BadInputError, match="b.jsonl:1: 'band' must be a string"):
        load_suite(f)


def test_load_suites_all_is_every_shipped_suite():
    assert [s.name for s in load_suites("all")] == shipped_suites()
    assert [s.name for s in load_suites(["everyday", "all"])] == shipped_suites()  # each once


def test_eval_several_suites_json(tmp_path, capsys):
    f = _banded(tmp_path)
    assert cli.main(["eval", "--suite", str(f), "--suite", "everyday", "--router", "random", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["suite"] for s in out["suites"]] == ["lenfix", "everyday"]
    for s in out["suites"]:
        assert [r["router"] for r in s["routers"]] == ["random", "length"]  # the baselines, each once
    fix = out["suites"][0]["routers"][1]
    assert fix["bands"]["long_easy"]["trivial_to_strong"] == 1.0 and "bands" not in out["suites"][1]["routers"][0]


def test_eval_suite_text_prints_bands(tmp_path, capsys):
    assert cli.main(["eval", "--suite", str(_banded(tmp_path)), "--router", "length"]) == 0
    text = capsys.readouterr().out
    assert "suite lenfix: 20 prompts (10 hard)" in text and "by band" in text
    assert text.count("| length |") == 2 and "| random |" in text


def test_the_runtime_eval_path_never_imports_litellm():
    """LiteLLM's complexity router is a bench baseline (bench/litellm_baseline.py), not a runtime dependency."""
    import subprocess
    import sys

    code = ("import sys, routekit, routekit.eval, routekit.eval.suite, routekit.cli.eval; "
            "routekit.load('length').win_rates(['x']); print(sorted(m for m in sys.modules if 'litellm' in m))")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr

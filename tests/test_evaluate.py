"""Tests for routekit.eval: metric definitions (RouteLLM §3.2), loaders, cost and plot."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routekit.errors import BadInputError, MissingExtraError
from routekit.eval import (
    BENCHMARKS,
    DEFAULT_STRONG,
    DEFAULT_WEAK,
    EvalDataError,
    EvalSet,
    apgr,
    cost_savings,
    cpt,
    evaluate,
    load_benchmark,
    optimal_curve,
    pgr_curve,
    plot,
    random_baseline,
)

DATA_DIR = Path(os.environ.get("ROUTEKIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
EVALS = DATA_DIR / "dev" / "routellm-evals"
needs_data = pytest.mark.skipif(
    not EVALS.is_dir(), reason=f"dev eval data not found at {EVALS} (set ROUTEKIT_DATA to the data root)")


def make_set(strong, weak, name="synthetic") -> EvalSet:
    s, w = np.asarray(strong, float), np.asarray(weak, float)
    return EvalSet(name, [f"p{i}" for i in range(len(s))], s, w, 0, "x")


def synthetic(n=1000, seed=0) -> EvalSet:
    rng = np.random.default_rng(seed)
    weak = (rng.random(n) < 0.6).astype(float)
    strong = np.maximum(weak, rng.random(n) < 0.5).astype(float)  # strong better on average
    strong[rng.random(n) < 0.05] = 0.0
    return make_set(strong, weak)


# hypothesis: quality pairs with a non-zero gap
qualities = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 1), min_size=n, max_size=n),
    st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n),
)).filter(lambda t: sum(t[0]) != sum(t[1]))


# --------------------------------------------------------------------------- metrics


@given(qualities)
@settings(max_examples=200, deadline=None)
def test_pgr_is_0_at_c0_and_1_at_c1(t):
    s, w, win = t
    for grid in (None, np.linspace(0, 1, 11)):
        c = pgr_curve(win, s, w, grid)
        assert c.pgr[0] == 0.0 and c.pgr[-1] == 1.0
        assert c.quality[0] == pytest.approx(np.mean(w)) and c.quality[-1] == pytest.approx(np.mean(s))


@given(qualities)
@settings(max_examples=200, deadline=None)
def test_no_router_beats_the_optimal_curve(t):
    s, w, win = t
    es = make_set(s, w)
    opt, got = optimal_curve(es, None), pgr_curve(win, s, w, None)
    assert np.all(got.quality <= opt.quality + 1e-12)
    if sum(s) > sum(w):  # PGR flips sign when the "strong" model is the worse one
        assert np.all(got.pgr <= opt.pgr + 1e-12)
        assert apgr(win, s, w) <= optimal_curve(es).area() + 1e-12


def test_perfect_router_reaches_optimal_curve():
    es = synthetic()
    oracle = evaluate(es.strong - es.weak, es, "oracle")
    opt = optimal_curve(es)
    np.testing.assert_allclose(oracle.curve.pgr, opt.pgr)
    np.testing.assert_allclose(oracle.fine_curve.pgr, optimal_curve(es, None).pgr)
    assert oracle.apgr == pytest.approx(opt.area())
    # the oracle recovers the whole gap once every strong-only win is routed: PGR > 1 in between
    assert opt.pgr.max() > 1.0 and oracle.apgr > 1.0


def test_inverted_router_scores_below_random():
    es = synthetic()
    rnd = random_baseline(es, 50)
    inverted = evaluate(-(es.strong - es.weak), es, "inverted")
    assert inverted.apgr < rnd.apgr_mean - 5 * rnd.apgr_std
    assert inverted.apgr < 0.0  # on this data it is worse than always-weak for most c


def test_random_apgr_is_half_in_expectation_synthetic():
    es = synthetic(n=1000, seed=1)
    rnd = random_baseline(es, 300)
    assert abs(rnd.apgr_mean - 0.5) < 0.015, rnd.apgr_mean
    # the mean random curve tracks the diagonal PGR(c) = c
    np.testing.assert_allclose(rnd.curve.pgr, rnd.curve.strong_fraction, atol=0.03)


def test_cpt_exact_on_hand_computed_example():
    # gains strong-weak = [1, 1, 0, -1, 1], total 2; r(strong)=0.8, r(weak)=0.4
    strong, weak = [1, 1, 1, 0, 1], [0, 0, 1, 1, 0]
    win = [0.2, 0.9, 0.8, 0.95, 0.1]  # order: 3 (-1), 1 (+1), 2 (0), 0 (+1), 4 (+1)
    fine = pgr_curve(win, strong, weak, None)
    np.testing.assert_allclose(fine.pgr, [0, -0.5, 0, 0, 0.5, 1])
    np.testing.assert_allclose(fine.quality, [0.4, 0.2, 0.4, 0.4, 0.6, 0.8])
    assert cpt(win, strong, weak, 0.0) == 0.0
    assert cpt(win, strong, weak, 0.25) == 0.8
    assert cpt(win, strong, weak, 0.5) == 0.8
    assert cpt(win, strong, weak, 0.8) == 1.0
    assert cpt(win, strong, weak, 1.0) == 1.0
    # grid: k = round(c*5), halves up -> k = 0,1,1,2,2,3,3,4,4,5,5
    grid = pgr_curve(win, strong, weak)
    np.testing.assert_allclose(grid.pgr, [0, -.5, -.5, 0, 0, 0, 0, .5, .5, 1, 1])
    assert apgr(win, strong, weak) == pytest.approx(0.1 * (grid.pgr[1:] + grid.pgr[:-1]).sum() / 2)
    res = evaluate(win, make_set(strong, weak), "hand")
    assert (res.cpt50, res.cpt80) == (0.8, 1.0)


def test_ties_break_by_earlier_index_deterministically():
    strong, weak = [1, 0, 0, 1], [0, 0, 0, 0]
    tied = [0.5, 0.5, 0.5, 0.5]
    c = pgr_curve(tied, strong, weak, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(c.pgr, [0, 0.5, 0.5, 0.5, 1])  # index 0, then 1, 2, 3
    assert cpt(tied, strong, weak, 0.6) == 1.0
    # a strictly higher score still wins over the tie
    assert cpt([0.5, 0.5, 0.5, 0.6], strong, weak, 1.0) == 0.5
    es = make_set(strong, weak)
    a, b = evaluate(tied, es, "t").to_dict(True), evaluate(list(tied), es, "t").to_dict(True)
    assert a == b


def test_equal_strong_and_weak_quality_raises():
    with pytest.raises(EvalDataError, match="same mean quality"):
        apgr([0.1, 0.2], [1, 0], [0, 1])


def test_bad_metric_inputs():
    with pytest.raises(BadInputError, match="equal length"):
        apgr([0.1, 0.2, 0.3], [1, 0], [0, 0])
    with pytest.raises(BadInputError, match="finite"):
        apgr([np.nan, 0.2], [1, 0], [0, 0])
    with pytest.raises(BadInputError, match="0.5 for 50%"):
        cpt([0.1, 0.2], [1, 0], [0, 0], 50)
    with pytest.raises(BadInputError, match="expected 2 win rates"):
        evaluate([0.1], make_set([1, 0], [0, 0]), "short")


def test_cost_savings_paper_prices():
    full = cost_savings(1.0)
    assert full.cost_ratio == pytest.approx(1.0) and full.savings == pytest.approx(0.0)
    none = cost_savings(0.0)
    assert none.cost_ratio == pytest.approx(0.24 / 24.7)
    assert none.times_cheaper == pytest.approx(24.7 / 0.24)
    half = cost_savings(0.5)
    assert half.cost_ratio == pytest.approx((0.5 * 24.7 + 0.5 * 0.24) / 24.7)
    assert half.savings == pytest.approx(1 - half.cost_ratio)
    assert cost_savings(0.5, (10.0, 0.0)).times_cheaper == pytest.approx(2.0)
    assert cost_savings(0.5, {"strong": 10.0, "weak": 0.0}).savings == pytest.approx(0.5)


def test_evaluate_result_is_json_able():
    es = synthetic(200)
    res = evaluate(np.random.default_rng(3).random(200), es, "rand", prices=(10.0, 1.0))
    d = json.loads(json.dumps(res.to_dict(include_fine_curve=True), allow_nan=False))
    assert d["router"] == "rand" and d["n"] == 200 and len(d["curve"]["pgr"]) == 11
    assert len(d["fine_curve"]["pgr"]) == 201
    assert d["savings50"]["strong_fraction"] == res.cpt50
    assert d["savings50"]["cost_ratio"] == pytest.approx((res.cpt50 * 10 + (1 - res.cpt50)) / 10)


# --------------------------------------------------------------------------- real dev data


@needs_data
@pytest.mark.parametrize("name,total", [("mmlu", 1513), ("gsm8k", 100), ("mt-bench", 10)])
def test_loaders_on_real_data(name, total):
    es = load_benchmark(name, EVALS)
    full = load_benchmark(name, EVALS, drop_contaminated=False)
    assert len(full) == total and full.n_dropped_contaminated == 0
    assert len(es) + es.n_dropped_contaminated == total
    assert len(es.prompts) == len(es.strong) == len(es.weak) == len(es.ids)
    folder = "mt_bench" if name == "mt-bench" else name
    bad = {json.loads(line)["eval_prompt"] for line in open(EVALS / folder / "contaminated_prompts.jsonl")}
    assert not bad & set(es.prompts)
    assert es.n_dropped_contaminated == sum(p in bad for p in full.prompts)
    lo, hi = (1, 10) if name == "mt-bench" else (0, 1)
    assert es.strong.min() >= lo and es.strong.max() <= hi and es.weak.min() >= lo
    assert es.data_hash == load_benchmark(name, DATA_DIR).data_hash  # data root also accepted
    assert es.data_hash != full.data_hash or es.n_dropped_contaminated == 0


@needs_data
def test_real_dropped_counts_and_mt_bench_turn_averaging():
    counts = {b: load_benchmark(b, EVALS).n_dropped_contaminated for b in BENCHMARKS}
    assert counts == {"mmlu": 0, "gsm8k": 0, "mt-bench": 1}
    mt = load_benchmark("mt-bench", EVALS)
    judgements = [json.loads(line) for line in open(EVALS / "mt_bench" / "judgements.jsonl")]
    qid = int(mt.ids[0].split(":")[1])
    mine = [j["score"] for j in judgements if j["question_id"] == qid and j["model"] == DEFAULT_STRONG]
    assert mt.strong[0] == pytest.approx(np.mean(mine))


@needs_data
def test_real_mmlu_random_is_half_and_inverted_is_worse():
    es = load_benchmark("mmlu", EVALS)
    rnd = random_baseline(es, 50)
    assert abs(rnd.apgr_mean - 0.5) < 0.02, rnd.apgr_mean
    oracle = evaluate(es.strong - es.weak, es, "oracle")
    inverted = evaluate(es.weak - es.strong, es, "inverted")
    assert inverted.apgr < rnd.apgr_mean - 3 * rnd.apgr_std < oracle.apgr
    assert oracle.cpt50 < 0.5 < inverted.cpt50


@needs_data
def test_real_mt_bench_metric_defined_or_clear_error():
    es = load_benchmark("mt-bench", EVALS)
    if np.isclose(es.quality_strong, es.quality_weak):  # true for the 9-question dev sample
        with pytest.raises(EvalDataError, match="same mean quality"):
            evaluate(np.zeros(len(es)), es, "r")
    full = load_benchmark("mt-bench", EVALS, drop_contaminated=False)
    assert evaluate(full.strong - full.weak, full, "oracle").apgr > 0.5


# --------------------------------------------------------------------------- loader errors


def write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


HEADER = f"prompt,{DEFAULT_WEAK},{DEFAULT_STRONG}"


def test_small_csv_loads_and_drops_exact_contaminated(tmp_path):
    write_csv(tmp_path / "gsm8k" / "gsm8k_responses.csv", HEADER,
              ["q1,False,True", "q2,True,True", '"q 3",True,False', '"q4 ",True,True'])
    write_jsonl(tmp_path / "gsm8k" / "contaminated_prompts.jsonl",  # exact string match only
                [{"eval_prompt": "q2"}, {"eval_prompt": "q 3 "}, {"eval_prompt": "q4 "}])
    es = load_benchmark("gsm8k", tmp_path)
    assert es.prompts == ["q1", "q 3"] and es.n_dropped_contaminated == 2
    np.testing.assert_array_equal(es.strong, [1, 0]) and np.testing.assert_array_equal(es.weak, [0, 1])


def test_missing_column_lists_found_columns(tmp_path):
    write_csv(tmp_path / "mmlu" / "responses" / "mmlu_x.csv", f"question,{DEFAULT_WEAK},{DEFAULT_STRONG}",
              ["q,True,True"])
    with pytest.raises(EvalDataError, match=r"missing column 'prompt'.*columns found: \['question'"):
        load_benchmark("mmlu", tmp_path)


def test_unknown_model_lists_available(tmp_path):
    write_csv(tmp_path / "gsm8k" / "gsm8k_responses.csv", HEADER + f",{DEFAULT_WEAK}_response",
              ["q,True,True,answer"])
    with pytest.raises(EvalDataError, match=r"unknown strong model 'gpt-5'.*available: \['mistralai"):
        load_benchmark("gsm8k", tmp_path, strong_model="gpt-5")
    write_jsonl(tmp_path / "mt_bench" / "question.jsonl", [{"question_id": 1, "turns": ["a", "b"]}])
    write_jsonl(tmp_path / "mt_bench" / "judgements.jsonl",
                [{"question_id": 1, "model": "m1", "score": 5, "turn": 1}])
    with pytest.raises(EvalDataError, match=r"unknown weak model .*available: \['m1'\]"):
        load_benchmark("mt-bench", tmp_path, strong_model="m1")


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(EvalDataError, match="does not exist"):
        load_benchmark("mmlu", tmp_path / "nope")
    with pytest.raises(EvalDataError, match="no mmlu/ folder"):
        load_benchmark("mmlu", tmp_path)
    (tmp_path / "mmlu" / "responses").mkdir(parents=True)
    with pytest.raises(EvalDataError, match="no response file"):
        load_benchmark("mmlu", tmp_path)
    (tmp_path / "gsm8k").mkdir()
    with pytest.raises(EvalDataError, match="gsm8k_responses.csv"):
        load_benchmark("gsm8k", tmp_path)
    write_jsonl(tmp_path / "mt_bench" / "question.jsonl", [{"question_id": 1, "turns": ["a", "b"]}])
    with pytest.raises(EvalDataError, match="missing file .*judgements.jsonl"):
        load_benchmark("mt-bench", tmp_path)
    with pytest.raises(EvalDataError, match="unknown benchmark 'hellaswag'"):
        load_benchmark("hellaswag", tmp_path)


def test_bad_cell_value_names_file_and_row(tmp_path):
    write_csv(tmp_path / "gsm8k" / "gsm8k_responses.csv", HEADER, ["q1,True,True", "q2,maybe,True"])
    with pytest.raises(EvalDataError, match=r"data row 2.*'maybe'"):
        load_benchmark("gsm8k", tmp_path)


def test_mt_bench_skips_invalid_scores(tmp_path):
    write_jsonl(tmp_path / "mt_bench" / "question.jsonl",
                [{"question_id": q, "turns": [f"first {q}", f"second {q}"]} for q in (1, 2, 3)])
    j = [{"question_id": 1, "model": "s", "score": 9, "turn": 1},
         {"question_id": 1, "model": "s", "score": -1, "turn": 2},  # unparsed rating: skipped
         {"question_id": 1, "model": "w", "score": 4, "turn": 1},
         {"question_id": 1, "model": "w", "score": 6, "turn": 2},
         {"question_id": 2, "model": "s", "score": None, "turn": 1},  # no valid strong score
         {"question_id": 2, "model": "w", "score": 3, "turn": 1},
         {"question_id": 3, "model": "s", "score": 7, "turn": 1},
         {"question_id": 3, "model": "w", "score": 7, "turn": 2}]
    write_jsonl(tmp_path / "mt_bench" / "judgements.jsonl", j)
    es = load_benchmark("mt-bench", tmp_path, strong_model="s", weak_model="w")
    assert es.prompts == ["first 1", "first 3"] and es.n_dropped_invalid == 1
    np.testing.assert_allclose(es.strong, [9, 7]) and np.testing.assert_allclose(es.weak, [5, 7])


# --------------------------------------------------------------------------- plot


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    es = synthetic(300)
    results = [evaluate(es.strong - es.weak + 0.3 * np.random.default_rng(0).random(300), es, "noisy oracle"),
               evaluate(np.zeros(300), es, "constant")]
    out = plot(results, es, tmp_path / "curve.png", random_seeds=5)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_without_matplotlib_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"routekit\[plot\]"):
        plot([], synthetic(50), tmp_path / "x.png")


@pytest.mark.parametrize("damage", ["torn", "empty", "wrong length"])
def test_an_unreadable_win_rate_cache_file_is_a_miss_and_is_rewritten(tmp_path, damage):
    """A cache file torn by a crash made every later `routekit eval` fail in np.load; now it is scored
    again, and the cache is written through a temporary file so no reader sees a half-written one."""
    import routekit
    from routekit.eval import cached_win_rates

    es = make_set([1, 0, 1, 0, 1], [0, 0, 1, 1, 0])
    es.prompts[:] = ["a", "bb bb", "ccc ccc ccc", "d" * 40, "e" * 400]
    router = routekit.load("length")
    first = cached_win_rates([router], es, tmp_path, show_progress=False)[0]
    (cached,) = list(tmp_path.iterdir())  # one file, no temporary left over
    raw = cached.read_bytes()
    if damage == "torn":
        cached.write_bytes(raw[:-9])
    elif damage == "empty":
        cached.write_bytes(b"")
    else:
        np.save(cached, first[:-1])
    again = cached_win_rates([router], es, tmp_path, show_progress=False)[0]
    np.testing.assert_array_equal(again, first)
    assert cached.read_bytes() == raw and list(tmp_path.iterdir()) == [cached]

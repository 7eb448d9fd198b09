"""routekit.control (issue 29): the budget controller, the calibrated win-rate map, explanations."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

import routekit
from routekit.artifact.probmap import ProbMap
from routekit.control.budget import BudgetController

from _copies import linked_copy


@pytest.fixture()
def rnd():
    return routekit.load("random")


def _shifting_stream(n_seg=6, seg=2000, seed=0):
    """Win rates whose distribution jumps every ``seg`` requests (low, high, wide, ...)."""
    rng = np.random.default_rng(seed)
    shapes = [(2, 8), (8, 2), (1, 1)]
    return np.concatenate([rng.beta(*shapes[i % 3], size=seg) for i in range(n_seg)])


def _windows(strong, width=1000, skip=500):
    c = np.concatenate([[0], np.cumsum(strong)])
    s = np.arange(skip, len(strong) - width + 1)
    return (c[s + width] - c[s]) / width


def test_warm_start_routes_like_the_calibrated_threshold(rnd, default_router):
    for router in (rnd, default_router):
        ctl = BudgetController(router, target_strong_share=0.3)
        assert ctl.threshold == pytest.approx(router.threshold_for(0.3), abs=2e-3)


def test_holds_the_share_on_shifting_traffic_where_a_fixed_threshold_drifts(rnd):
    wr = _shifting_stream()
    ctl = BudgetController(rnd, target_strong_share=0.3)
    strong = ctl.run(wr)
    shares = _windows(strong)
    assert np.abs(shares - 0.3).max() <= 0.03
    fixed = _windows(wr >= rnd.threshold_for(0.3))
    assert np.abs(fixed - 0.3).max() > 0.3  # the same stream moves a fixed threshold's share a lot


def test_one_request_never_makes_the_threshold_jump(rnd):
    ctl = BudgetController(rnd, target_strong_share=0.3)
    ctl.run(np.random.default_rng(1).uniform(size=500))
    before = ctl.threshold
    for extreme in (1.0, 0.0, 1.0):
        ctl.decide(extreme)
        assert abs(ctl.threshold - before) < 0.03
        before = ctl.threshold


def test_attached_controller_is_used_by_route_and_explicit_options_win(rnd):
    ctl = BudgetController(rnd, target_strong_share=0.5).attach()
    try:
        assert rnd.route("a prompt").threshold_source == "budget"
        assert [d.threshold_source for d in rnd.route_many(["x", "y"])] == ["budget", "budget"]
        d = rnd.route("a prompt", threshold=0.99)
        assert (d.threshold, d.threshold_source, d.route) == (0.99, "raw", "weak")
        assert rnd.route("a prompt", strong_fraction=1.0).route == "strong"
        assert rnd.route("a prompt", strong_fraction=0.2).threshold_source == "calibration"
        assert ctl.stats().decisions == 3  # explicit options are not counted toward the share
    finally:
        ctl.detach()
    assert rnd.route("a prompt").threshold_source == "calibration"


def test_threads_share_one_budget(rnd):
    ctl = BudgetController(rnd, target_strong_share=0.3, window=4000)
    rng = np.random.default_rng(2)
    chunks = [rng.uniform(size=1000) for _ in range(4)]
    out: list = []
    ts = [threading.Thread(target=lambda c=c: out.append(ctl.run(c))) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    st = ctl.stats()
    assert st.decisions == 4000 and st.window_decisions == 4000
    total = int(sum(o.sum() for o in out))
    assert st.window_strong_share == total / 4000
    assert abs(total - 1200) <= 40  # one feedback loop over all threads' decisions


def test_state_is_saved_atomically_and_restored(rnd, tmp_path, caplog):
    path = tmp_path / "state.json"
    ctl = BudgetController(rnd, target_strong_share=0.3, state_path=path, save_every=50)
    ctl.run(np.random.default_rng(3).beta(8, 2, size=120))
    assert json.loads(path.read_text())["decisions"] == 100  # saved every 50 decisions
    ctl.save()
    again = BudgetController(rnd, target_strong_share=0.3, state_path=path)
    assert again.threshold == ctl.threshold and again.stats() == ctl.stats()
    # a state for another target is not used
    with caplog.at_level(logging.WARNING, logger="routekit"):
        other = BudgetController(rnd, target_strong_share=0.5, state_path=path)
    assert other.stats().decisions == 0 and "another" in caplog.text
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="routekit"):
        broken = BudgetController(rnd, target_strong_share=0.3, state_path=path)
    assert broken.stats().decisions == 0 and "unreadable" in caplog.text
    assert not list(tmp_path.glob(".state.json.tmp-*"))


def test_cost_form_turns_a_budget_into_a_share(rnd):
    # 0.3 strong at $0.01 + 0.7 weak at $0.001 = $0.0037 per request
    ctl = BudgetController(rnd, budget_usd=3.7, costs=(0.01, 0.001), window=1000)
    assert ctl.target_strong_share == pytest.approx(0.3)
    for _ in range(400):
        ctl.observe_cost("strong", 0.02)  # strong calls turn out dearer: fewer of them fit
    assert ctl.target_strong_share < 0.2
    with pytest.raises(routekit.BadInputError):
        BudgetController(rnd, budget_usd=1.0)
    with pytest.raises(routekit.BadInputError):
        BudgetController(rnd, target_strong_share=0.3, budget_usd=1.0, costs=(1, 0))
    with pytest.raises(routekit.BadInputError):
        BudgetController(rnd, target_strong_share=1.3)



def test_a_failing_periodic_save_warns_once_and_routing_goes_on(rnd, tmp_path, caplog):
    folder = tmp_path / "state"
    folder.mkdir()
    ctl = BudgetController(rnd, target_strong_share=0.3, state_path=folder / "state.json", save_every=10)
    folder.rmdir()  # the state folder is gone (or the disk is full): every save fails
    with caplog.at_level(logging.WARNING, logger="routekit"):
        strong = ctl.run(np.random.default_rng(4).uniform(size=45))
    assert len(strong) == 45 and ctl.stats().decisions == 45
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "could not save" in r.getMessage()]
    assert len(warnings) == 1  # one warning, not one per decision or per retry
    folder.mkdir()  # the folder is back: a later periodic save writes the state again
    ctl.run(np.random.default_rng(5).uniform(size=10))  # saves at the 50th (10 after the failed try at 40)
    assert json.loads((folder / "state.json").read_text())["decisions"] == 50


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, float("inf"), None])
def test_a_win_rate_outside_0_1_is_refused_and_leaves_the_state_alone(rnd, tmp_path, bad):
    ctl = BudgetController(rnd, target_strong_share=0.3, state_path=tmp_path / "s.json")
    before = ctl.stats()
    for call in (ctl.decide, ctl.observe):
        with pytest.raises(routekit.BadInputError, match="win_rate"):
            call(bad)
    assert ctl.stats() == before
    with pytest.raises(routekit.BadInputError, match="win_rate"):
        ctl.run([0.5, bad])
    assert ctl.stats().decisions == 1  # the valid one only
    ctl.save()  # nothing invalid entered the buffer: the state is still valid JSON
    assert all(0.0 <= x <= 1.0 for x in json.loads((tmp_path / "s.json").read_text())["buffer"])


def test_share_one_sends_everything_strong_and_share_zero_everything_weak(rnd):
    rates = np.concatenate([np.random.default_rng(6).uniform(0.3, 0.7, size=300), [0.0, 0.01, 0.99, 1.0]])
    everything = BudgetController(rnd, target_strong_share=1.0)
    assert everything.threshold == 0.0
    assert everything.run(rates).all()
    nothing = BudgetController(rnd, target_strong_share=0.0)
    assert not nothing.run(rates).any()  # even the win rates above every one in the buffer


# -- the calibrated win-rate map ------------------------------------------------------------------
@pytest.mark.parametrize("pm", [ProbMap("platt", a=2.0, b=-0.3),
                                ProbMap("isotonic", x=(0.0, 0.4, 0.6, 1.0), y=(0.0, 0.1, 0.8, 1.0))])
def test_prob_map_is_strictly_increasing_and_invertible(pm):
    r = np.linspace(0.001, 0.999, 999)
    p = pm(r)
    assert (np.diff(p) > 0).all()
    assert np.allclose(pm.inverse(p), r, atol=1e-9)


def test_artifact_with_a_prob_map_keeps_ranking_and_decisions(tmp_path, default_router):
    pytest.importorskip("routekit_export")
    from routekit_export.calibration_map import apply_prob_map

    folder = linked_copy(default_router.path, tmp_path / "linear")
    pm = ProbMap("platt", a=3.0, b=0.2)
    apply_prob_map(folder, pm, {"note": "test"})
    mapped = routekit.load(folder)
    prompts = ["hi", "Prove Fermat's little theorem.", "Write a haiku about tea.", "What is 17 * 23?",
               "Summarise the causes of the French revolution in detail."]
    raw, new = default_router.win_rates(prompts), mapped.win_rates(prompts)
    assert np.allclose(new, pm(raw)) and (np.argsort(new) == np.argsort(raw)).all()
    for f in (0.2, 0.5, 0.8):
        assert mapped.threshold_for(f) == pytest.approx(float(pm(default_router.threshold_for(f))), abs=1e-9)
        assert [d.route for d in mapped.route_many(prompts, strong_fraction=f)] == \
               [d.route for d in default_router.route_many(prompts, strong_fraction=f)]
    # a second map replaces the first: the table goes back through the old map's inverse
    apply_prob_map(folder, ProbMap("platt", a=0.5, b=0.0), {})
    again = routekit.load(folder)
    assert again.threshold_for(0.5) == pytest.approx(
        float(ProbMap("platt", a=0.5, b=0.0)(default_router.threshold_for(0.5))), abs=1e-9)
    apply_prob_map(folder, None, {})
    assert np.allclose(routekit.load(folder).win_rates(prompts), raw)


def test_a_broken_prob_map_is_an_artifact_error(tmp_path, default_router):
    pytest.importorskip("routekit_export")
    from routekit_export.calibration_map import apply_prob_map

    folder = linked_copy(default_router.path, tmp_path / "linear")
    apply_prob_map(folder, ProbMap("platt", a=1.0, b=0.0), {})
    m = json.loads((folder / "manifest.json").read_text())
    m["prob_map"]["a"] = -1.0
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(routekit.BadArtifactError, match="prob_map"):
        routekit.load(folder, verify=False).win_rate("hi")


def test_fitted_maps_reduce_calibration_error_on_synthetic_labels():
    pytest.importorskip("routekit_export")
    from routekit_export.calibration_map import ece, fit_prob_map

    rng = np.random.default_rng(4)
    raw = rng.uniform(0.45, 0.7, 4000)  # compressed raw scores
    truth = 1 / (1 + np.exp(-12 * (raw - 0.58)))  # the real probability is much wider
    y = (rng.uniform(size=raw.size) < truth).astype(float)
    assert ece(raw, y) > 0.1
    for kind in ("platt", "isotonic"):
        pm = fit_prob_map(raw, y, kind)
        assert ece(pm(raw), y) < 0.04
        assert (np.diff(pm(np.sort(raw))) >= 0).all()


# -- explanations ---------------------------------------------------------------------------------
def test_linear_explanation_adds_up_to_the_win_rate(default_router):
    p = "Solve for x: 3x^2 + 2x - 5 = 0 and explain each step."
    ex = default_router.explain(p, top=1000)
    assert ex.raw_win_rate == pytest.approx(default_router.win_rate(p), abs=1e-9)
    assert sum(c.contribution for c in ex.contributions) == pytest.approx(ex.logit, abs=1e-9)
    assert {c.group for c in ex.contributions} >= {"embedding", "term", "feature", "bias"}
    d = default_router.route(p)
    assert (ex.route, ex.threshold, ex.threshold_source) == (d.route, d.threshold, "calibration")
    assert default_router.explain(p, threshold=0.01).threshold_source == "raw"
    short = default_router.explain(p, top=3)
    assert [abs(c.contribution) for c in short.contributions] == \
           sorted((abs(c.contribution) for c in ex.contributions), reverse=True)[:3]


def test_explanation_shows_the_budget_threshold_in_force(default_router):
    ctl = BudgetController(default_router, target_strong_share=0.3).attach()
    try:
        ex = default_router.explain("hello there")
        assert (ex.threshold_source, ex.threshold) == ("budget", ctl.threshold)
        assert ctl.stats().decisions == 0  # explaining decides nothing
    finally:
        ctl.detach()


def test_mf_and_sw_explanations_and_kinds_that_cannot():
    p = "Prove that there are infinitely many primes."
    mf = routekit.load("mf")
    ex = mf.explain(p)
    assert ex.raw_win_rate == pytest.approx(mf.win_rate(p), abs=1e-9)
    assert ex.detail["score of strong"] - ex.detail["score of weak"] == pytest.approx(ex.logit, abs=1e-9)
    sw = routekit.load("sw")
    ex = sw.explain(p, top=5)
    assert ex.raw_win_rate == pytest.approx(sw.win_rate(p), abs=1e-9)
    assert len(ex.neighbours) == 5 and ex.neighbours[0].weight_share >= ex.neighbours[-1].weight_share
    assert all(n.strong_wins + n.weak_wins <= n.battles for n in ex.neighbours)
    with pytest.raises(routekit.BadInputError, match="cannot explain"):
        routekit.load("random").explain(p)

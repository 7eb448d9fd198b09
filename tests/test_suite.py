"""Everyday suite, suite metrics, the out-of-range threshold warning and weighted calibration."""

import json
import logging

import numpy as np
import pytest

import routekit
from routekit import cli
from routekit.calibrate import calibration_table, weighted_quantile
from routekit.errors import BadInputError
from routekit.eval.suite import auc, load_suite, suite_report


def test_shipped_suite_shape():
    s = load_suite("everyday")
    assert len(s) >= 200
    cats = {c: bool(h) for c, h in zip(s.categories, s.hard)}
    assert sum(cats.values()) >= 8 and sum(not v for v in cats.values()) >= 8  # >= 8 categories a side
    assert len(set(s.prompts)) == len(s.prompts)


def _lowered(prompts) -> set[str]:
    return {p.strip().lower() for p in prompts}


def test_suite_not_in_training_prompts():
    from routekit_export.data import read_prompts
    from routekit_export.mixture import EVERYDAY_TRAIN

    assert not _lowered(read_prompts(EVERYDAY_TRAIN)) & _lowered(load_suite("everyday").prompts)


def test_calibration_everyday_prompts_are_held_out():
    """The mix's everyday component is neither trained on nor part of the dev suite."""
    from routekit_export.build import EVERYDAY_CALIB
    from routekit_export.data import read_prompts
    from routekit_export.mixture import EVERYDAY_TRAIN

    calib = _lowered(read_prompts(EVERYDAY_CALIB))
    assert len(calib) >= 100
    assert not calib & _lowered(read_prompts(EVERYDAY_TRAIN))
    assert not calib & _lowered(load_suite("everyday").prompts)


def test_calibration_long_easy_prompts_are_held_out():
    """The mix's long-easy component is not trained on (length_train.jsonl) nor part of a dev suite,
    and it is what its name says: long prompts."""
    from routekit_export.build import LONG_EASY_CALIB
    from routekit_export.data import read_prompts
    from routekit_export.mixture import LENGTH_TRAIN

    prompts = read_prompts(LONG_EASY_CALIB)
    calib = _lowered(prompts)
    assert len(calib) >= 100 and min(len(p) for p in prompts) >= 400
    assert not calib & _lowered(read_prompts(LENGTH_TRAIN))
    assert not calib & _lowered(load_suite("length").prompts)
    assert not calib & _lowered(load_suite("everyday").prompts)


def test_strong_share_of_the_mix():
    from routekit_export.build import NEEDS_STRONG, TRAFFIC_MIX, strong_share

    assert set(NEEDS_STRONG) <= set(TRAFFIC_MIX) and "everyday" not in NEEDS_STRONG
    assert all(0 < v < 1 for v in NEEDS_STRONG.values())
    # 0.5 x 196/292 (Arena-Bench: the strong model judged better) + 0.1 x (0.920 - 0.744) (GSM8K accuracy gap)
    assert strong_share() == pytest.approx(0.5 * 196 / 292 + 0.1 * 0.176, abs=1e-4)
    # a data folder without GSM8K questions: the mix is renormalised, and so is the share
    assert strong_share({"arena-hard": {"share": 0.5 / 0.9}, "everyday": {"share": 0.4 / 0.9}}) == pytest.approx(
        0.5 / 0.9 * 196 / 292, abs=1e-4)


def test_arena_needs_strong_share_is_the_pairs_judge_record(data_root):
    """NEEDS_STRONG["arena-hard"] is counted from the data, not assumed: the pair's Arena-Bench scores."""
    from routekit_export.build import ARENA_BENCH_STRONG_BETTER
    from routekit_export.data import STRONG, WEAK

    better = n = 0
    for line in open(data_root / "train" / "multi_model_scores.jsonl"):
        r = json.loads(line)
        s, w = r["scores"].get(STRONG), r["scores"].get(WEAK)
        if "arena" in r["source"] and s is not None and w is not None:
            n += 1
            better += s > w
    assert (better, n) == ARENA_BENCH_STRONG_BETTER


def test_traffic_mix_gsm8k_is_disjoint_from_the_training_draw(tmp_path):
    from routekit_export.build import traffic_mix
    from routekit_export.mixture import extra_rows

    (tmp_path / "unlabelled").mkdir()
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "prompts.jsonl").write_text(json.dumps({"prompt": "Design a cache."}) + "\n")
    (tmp_path / "unlabelled" / "gsm8k_train_questions.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Tom has {i} apples and buys 3 more. How many?"}) + "\n" for i in range(300)))
    prompts, weights, _, mix = traffic_mix(tmp_path, gsm8k_n=50)
    gsm = set(prompts[-mix["gsm8k-train"]["n"]:])  # the last component of the mix
    train = {r.prompt for r in extra_rows(tmp_path, ("gsm8k-train",), gsm8k_limit=250, log=lambda *a: None)}
    assert len(gsm) == 50 and not gsm & train
    assert mix["gsm8k-train"]["needs_strong"] and not mix["everyday"]["needs_strong"]
    assert weights.sum() == pytest.approx(1.0)


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(60), 1)  # many ties
    h = rng.random(60) < 0.5
    a, b = s[h], s[~h]
    direct = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    assert auc(s, h) == pytest.approx(direct)
    assert auc(np.r_[np.zeros(3), np.ones(3)], np.r_[[False] * 3, [True] * 3]) == 1.0


def test_load_suite_errors(tmp_path):
    with pytest.raises(BadInputError, match="no such suite"):
        load_suite("nope")
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"prompt": "hi", "side": "easy"}\n')
    with pytest.raises(BadInputError, match=r"s.jsonl:1"):
        load_suite(bad)
    (tmp_path / "u.jsonl").write_bytes(b'{"prompt": "\xff", "side": "hard"}\n')
    with pytest.raises(BadInputError, match="invalid UTF-8"):
        load_suite(tmp_path / "u.jsonl")
    (tmp_path / "j.jsonl").write_text('{"prompt": \n')
    with pytest.raises(BadInputError, match=r"j.jsonl:1: invalid JSON"):
        load_suite(tmp_path / "j.jsonl")
    one = tmp_path / "one.jsonl"
    one.write_text('{"prompt": "hi", "side": "trivial"}\n')
    with pytest.raises(BadInputError, match="both sides"):
        load_suite(one)


def test_suite_report_random_router(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"p{i}", "side": "hard" if i % 2 else "trivial"}) + "\n"
                         for i in range(40)))
    r = routekit.load("random")
    rep = suite_report(r, load_suite(f))
    assert rep["n"] == 40 and rep["n_hard"] == 20 and 0.0 <= rep["auc"] <= 1.0
    w = r.win_rates([f"p{i}" for i in range(40)])
    assert rep["auc"] == pytest.approx(auc(w, np.arange(40) % 2 == 1), abs=1e-4)


def test_eval_suite_cli(capsys):
    assert cli.main(["eval", "--suite", "everyday", "--router", "random", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["suite"] == "everyday" and out["routers"][0]["router"].startswith("random")


def test_default_router_orders_everyday_traffic(default_router):
    """The shipped default must rank hard prompts above trivial ones on the (never trained on) suite."""
    rep = suite_report(default_router, load_suite("everyday"))
    assert rep["auc"] >= 0.85
    assert rep["default"]["trivial_to_strong"] <= 0.15
    assert rep["default"]["hard_to_strong"] >= 0.5


def test_threshold_warning_once(caplog):
    r = routekit.load("linear")
    lo, hi = r.calibrated_range()
    assert r.threshold_warning((lo + hi) / 2) is None
    assert "strong" in r.threshold_warning(lo / 2)
    assert "weak" in r.threshold_warning(min(1.0, hi + (1 - hi) / 2))
    with caplog.at_level(logging.WARNING, logger="routekit"):
        for _ in range(3):
            r.route("hi", threshold=lo / 2)
    assert sum("below every win rate" in m for m in caplog.messages) == 1


def test_weighted_quantile():
    v = np.random.default_rng(1).random(50)
    levels = np.linspace(0, 1, 11)
    assert np.allclose(weighted_quantile(v, levels, np.ones(50)), np.quantile(v, levels))
    # doubling the weight of the upper half moves the median up
    w = np.where(v > np.median(v), 2.0, 1.0)
    assert weighted_quantile(v, np.array([0.5]), w)[0] > np.median(v)
    with pytest.raises(BadInputError):
        weighted_quantile(v, levels, -np.ones(50))
    t = calibration_table(v, prompts="x", weights=w, mix={"a": {"share": 1.0}})
    assert t["mix"] == {"a": {"share": 1.0}} and np.all(np.diff(t["quantiles"]) >= 0)


def test_recalibrate_rewrites_only_the_calibration(tmp_path):
    """routekit-export recalibrate: thresholds on the traffic mix, weights byte-identical, resealed."""

    from routekit_export.recalibrate import recalibrate

    from routekit import artifact

    art = tmp_path / "lin"
    artifact.copy_artifact(artifact.resolve("linear"), art)
    data = tmp_path / "data"
    (data / "calibration").mkdir(parents=True)
    (data / "calibration" / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Explain topic {i} in depth."}) + "\n" for i in range(20)))
    before = {p.name: p.read_bytes() for p in art.iterdir() if p.name != "manifest.json"}
    table = recalibrate(art, data, default_strong_fraction=0.4)
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.name != "manifest.json"} == before
    r = routekit.load(art)
    assert r.calibration == table and table["default_strong_fraction"] == 0.4
    assert table["mix"]["arena-hard"]["n"] == 20 and "gsm8k-train" not in table["mix"]
    assert artifact.verify(art, load=True)


def _instructions():
    from routekit_export.data import read_jsonl
    from routekit_export.mixture import PASTE_INSTRUCTIONS

    return [r for _, r in read_jsonl(PASTE_INSTRUCTIONS, ("kind", "instruction"))]


def test_paste_rows_without_the_data_folder(tmp_path):
    """Without shared data only the length rows' texts are pasted bodies: code instructions are skipped."""
    from routekit_export.mixture import paste_rows

    rows = paste_rows(tmp_path, n=120)
    assert rows == paste_rows(tmp_path, n=120)  # deterministic
    code = [r["instruction"] for r in _instructions() if r["kind"] == "code"]
    assert 0 < len(rows) < 120 and len(rows) == len(set(rows))
    assert not any(c in p for p in rows for c in code)
    assert min(map(len, rows)) >= 350


def test_paste_rows_are_apart_from_every_evaluation_and_calibration_prompt(data_root):
    from routekit_export.build import traffic_mix
    from routekit_export.mixture import PASTE_ROWS, extra_rows, paste_rows

    rows = paste_rows(data_root)
    assert len(rows) == PASTE_ROWS
    instr = [r["instruction"] for r in _instructions()]
    assert all(sum(i in p for i in instr) >= 1 for p in rows)
    assert {r["kind"] for r in _instructions() if any(r["instruction"] in p for p in rows)} >= {"code", "text"}
    cal, _, _, mix = traffic_mix(data_root)
    blob = "\n".join(rows)
    assert not any(p in blob for p in cal[-mix["gsm8k-train"]["n"]:])  # the calibration GSM8K questions
    for name in ("length", "everyday"):
        assert not _lowered(rows) & _lowered(load_suite(name).prompts)
    labels = {(r.strong, r.weak, r.difficulty) for r in extra_rows(data_root, ("paste",), log=lambda *a: None)}
    assert labels == {(0.0, 0.0, 0.0)}


def test_eval_suite_tells_two_builds_of_one_name_apart(capsys, tmp_path):
    """Two artifacts with the same manifest name (an old and a new build): rows carry the asked-for path."""
    from routekit.artifact import copy_artifact

    other = copy_artifact(routekit.artifact.resolve("linear"), tmp_path / "linear-copy")
    assert cli.main(["eval", "--suite", "everyday", "--router", "linear", "--router", str(other), "--json"]) == 0
    names = [r["router"] for r in json.loads(capsys.readouterr().out)["routers"]]
    assert names[:2] == ["linear", str(other)] and len(set(names)) == len(names)

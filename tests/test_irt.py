"""The item-response fit (export/irt.py), its label reader, its artifact (kind ``irt``) and ``fit`` without a pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
from routekit_export import irt as T
from routekit_export.fit_data import LabelError, read_model_labels


def _synthetic(n=400, dim=16, models=3, seed=0):
    """Prompts with a prior score d, embeddings X and per-model 0/1 labels from a known item-response model."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=n)
    X = rng.normal(size=(n, dim)) / np.sqrt(dim)
    u = rng.normal(size=dim) * 3.0  # a difficulty direction the prior does not know
    b = np.linspace(1.5, -1.0, models)
    alpha = np.r_[0.5, -0.5, np.zeros(models - 2)]
    theta = b + np.outer(d, alpha) + np.outer(X @ u, np.ones(models))
    Y = (rng.random(theta.shape) < 1 / (1 + np.exp(-theta))).astype(float)
    return d, X, theta, Y


def _quality_obs(rows, Y, cols=None):
    cols = range(Y.shape[1]) if cols is None else cols
    k = len(cols)
    return T.Observations(np.repeat(rows, k), np.tile(np.arange(k), len(rows)), Y[np.ix_(rows, list(cols))].ravel())


def _rank_corr(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_zero_labels_rank_exactly_like_the_prior():
    d = np.random.default_rng(1).normal(size=50)
    X = np.zeros((50, 4))
    p = T.prior_params(["s", "w"], 4, "s", "w")
    t = p.theta(d, X)
    for absolute in (True, False):
        wr = T.pair_win_rate(t, absolute)
        assert np.array_equal(np.argsort(wr, kind="stable"), np.argsort(d, kind="stable"))
    assert T.pair_win_rate(t, False) == pytest.approx(1 / (1 + np.exp(-d)))  # battles: σ(d), the default's own map


def test_fit_learns_what_the_prior_does_not_know():
    d, X, theta, Y = _synthetic()
    train, test = np.arange(300), np.arange(300, 400)
    p = T.fit(d, X, _quality_obs(train, Y), ["a", "b", "c"], T.PAIR_CONFIG, alpha0=[0.5, -0.5, 0.0])
    pred = p.theta(d[test], X[test])
    for j in range(3):  # each model's held-out scores follow the true ones, well beyond the prior alone
        assert _rank_corr(pred[:, j], theta[test, j]) > 0.6 > abs(_rank_corr(d[test], theta[test, j])) + 0.2
    assert p.absolute.all() and p.b[0] > p.b[2]  # levels in the right order
    # log-loss on held-out labels beats each model's mean quality
    ll = T.log_loss(p, d, X, _quality_obs(test, Y))
    base = -np.mean([np.mean(Y[test, j] * np.log(Y[train, j].mean()) + (1 - Y[test, j]) * np.log(1 - Y[train, j].mean()))
                     for j in range(3)])
    assert ll < base - 0.05


def test_battles_fit_the_same_scores_bradley_terry_style():
    d, X, theta, _ = _synthetic(n=300)
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 3, 3000), rng.integers(0, 3, 3000)
    keep = a != b
    a, b = a[keep], b[keep]
    pr = rng.integers(0, 300, a.size)
    o = (rng.random(a.size) < 1 / (1 + np.exp(-(theta[pr, a] - theta[pr, b])))).astype(float)
    obs = T.Observations(b_prompt=pr, b_a=a, b_b=b, b_o=o)
    p = T.fit(d, X, obs, ["a", "b", "c"], T.PAIR_CONFIG, alpha0=[0.5, -0.5, 0.0])
    assert not p.absolute.any()  # battles give differences only: no absolute quality
    t = p.theta(d, X)
    assert _rank_corr(t[:, 0] - t[:, 2], theta[:, 0] - theta[:, 2]) > 0.5
    assert t[:, 0].mean() > t[:, 2].mean()


def test_add_model_leaves_the_others_alone():
    d, X, theta, Y = _synthetic(models=4)
    rows = np.arange(300)
    base = T.fit(d, X, _quality_obs(rows, Y, [0, 1, 2]), ["a", "b", "c"], T.IRTConfig(10.0, 3.0, tau_a=0.25),
                 alpha0=[0.5, -0.5, 0.0])
    few = rows[:60]
    grown = T.add_model(base, "d", d, X, T.Observations(few, np.full(few.size, 3), Y[few, 3]),
                        T.IRTConfig(10.0, 3.0, tau_a=0.25))
    assert grown.models == ["a", "b", "c", "d"] and grown.absolute.all()
    for name in ("b", "alpha", "a"):
        assert np.array_equal(getattr(grown, name)[:3], getattr(base, name))
    assert np.array_equal(grown.V[:3], base.V) and np.array_equal(grown.u, base.u)
    test = np.arange(300, 400)
    assert _rank_corr(grown.theta(d[test], X[test])[:, 3], theta[test, 3]) > 0.5  # the shared direction carries it
    with pytest.raises(ValueError, match="no label"):
        T.add_model(base, "e", d, X, T.Observations(few, np.zeros(few.size), Y[few, 0]))


def test_choose_config_cross_validates_the_grid():
    d, X, _, Y = _synthetic(n=200)
    cfg, table = T.choose_config(d, X, _quality_obs(np.arange(200), Y), ["a", "b", "c"], grid=T.GRID[:3], folds=3)
    assert cfg in T.GRID[:3] and len(table) == 3
    assert all(np.isfinite(r["cv_log_loss"]) for r in table)
    assert table[T.GRID[:3].index(cfg)]["cv_log_loss"] == min(r["cv_log_loss"] for r in table)
    assert T.IRTConfig.from_dict(T.IRTConfig(T.INF, 3.0).to_dict()) == T.IRTConfig(T.INF, 3.0)


def test_observations_subset_by_prompt_and_model():
    obs = T.Observations([0, 1, 2], [0, 1, 2], [1, 0, 1], [0, 2], [0, 1], [2, 2], [1, 0.5])
    sub = obs.subset(np.array([True, False, True]))
    assert sub.q_prompt.tolist() == [0, 2] and sub.b_prompt.tolist() == [0, 2]
    two = obs.models(np.array([True, True, False]))
    assert two.q_model.tolist() == [0, 1] and two.b_o.size == 0 and len(obs) == 5


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_model_labels_takes_any_models_per_row(tmp_path):
    f = _write(tmp_path / "l.jsonl", [
        {"prompt": "p1", "a": 1, "b": 0},
        {"prompt": "p2", "scores": {"a": 1, "c": None, "d": 0}},
        {"prompt": "p3", "c": "True"},
        {"prompt": "p1", "model_a": "c", "model_b": "a", "winner": "tie"},
        {"prompt": "p4", "judge": "x", "a": 8, "b": 3},  # a 1-10 score row: rescaled
    ])
    ml = read_model_labels(f)
    assert ml.models == ["a", "b", "d", "c"] and ml.prompts == ["p1", "p2", "p3", "p4"]
    assert ml.quality["y"].size == 7 and ml.battles["outcome"].tolist() == [0.5]
    assert ml.counts["quality_scale"] == [3.0, 8.0]
    y = dict(zip(zip(ml.quality["prompt"].tolist(), ml.quality["model"].tolist()), ml.quality["y"].tolist()))
    assert y[(3, 0)] == 1.0 and y[(3, 1)] == 0.0 and y[(2, 3)] == 1.0
    sub = read_model_labels(f, models=["c", "a"])
    assert sub.models == ["c", "a"] and sub.battles["a"].tolist() == [0] and sub.quality["y"].size == 4
    with pytest.raises(LabelError, match="'zz'"):
        read_model_labels(f, models=["a", "zz"])
    assert read_model_labels(f, models=["a", "zz"], require_all=False).models == ["a", "zz"]
    assert ml.summary()["quality_labels_per_model"] == {"a": 3, "b": 2, "d": 1, "c": 1}


# --------------------------------------------------------------------------- the artifact and the command

SKILLS = {"big": (2.5, 0.0), "mid": (1.0, 2.0), "small": (-0.5, 2.5)}  # (level, how much worse on maths)


def _prompts(n):
    maths = [f"Solve for x: {i + 3}x + {7 * i + 1} = {i * i + 50}. Show every step." for i in range(n // 2)]
    chat = [f"Write a friendly greeting for my colleague number {i} who likes tea." for i in range(n - n // 2)]
    return maths, chat


def _label_rows(models, n=60, seed=0):
    rng = np.random.default_rng(seed)
    maths, chat = _prompts(n)
    rows = []
    for p in maths + chat:
        scores = {}
        for m in models:
            level, hard = SKILLS[m]
            z = level - (hard if p in maths else 0.0)
            scores[m] = int(rng.random() < 1 / (1 + np.exp(-z)))
        rows.append({"prompt": p, "scores": scores})
    return rows


def _need_export():
    pytest.importorskip("torch", reason="needs the export extra: pip install 'routekit[export]'")


def test_fit_every_model_then_add_one(tmp_path, capsys):
    _need_export()
    from routekit_export import cli

    import routekit

    f = _write(tmp_path / "l.jsonl", _label_rows(["big", "small"], n=80))
    out = tmp_path / "mine"
    assert cli.main(["fit", "--labels", str(f), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "log-loss" in printed and "big" in printed
    r = routekit.load(out)
    assert r.kind == "irt" and r.models == ["big", "small"] and (r.strong_model, r.weak_model) == ("big", "small")
    probe = ["Solve for x: 11x + 5 = 90. Show every step.", "Write a friendly greeting for my neighbour."]
    q = r.model_quality(probe, ["big", "small"])
    assert q.shape == (2, 2) and q[0, 0] > q[0, 1]  # the big model is the better one on maths
    wr = r.win_rates(probe)
    assert wr[0] > wr[1]  # and the strong model is needed there, not for a greeting
    pick = r.select(probe[1], prices={"big": 10.0, "small": 0.1}, willingness_to_pay=1.0)
    assert pick.model == "small"
    # rank / select use each model's own predicted quality (not P(beats the weak model))
    assert r.rank(probe[0], ["big", "small"]) == pytest.approx(dict(zip(["big", "small"], q[0])))
    assert pick.quality == pytest.approx(dict(zip(["big", "small"], q[1])))
    before = r.model_logits(probe, ["big", "small"])
    # a third model from a few dozen labels: the others' scores do not move
    f2 = _write(tmp_path / "mid.jsonl", [{"prompt": x["prompt"], "mid": x["scores"]["mid"]}
                                         for x in _label_rows(["mid"], n=40, seed=1)])
    grown = tmp_path / "grown"
    assert cli.main(["fit", "--add-model", "mid", "--to", str(out), "--labels", str(f2), "--out", str(grown)]) == 0
    g = routekit.load(grown)
    assert g.models == ["big", "small", "mid"]
    assert np.array_equal(g.model_logits(probe, ["big", "small"]), before)
    assert np.array_equal(g.win_rates(probe), wr)
    m = json.loads((grown / "manifest.json").read_text())
    assert m["training"]["added_models"][0]["model"] == "mid" and m["calibration"] == json.loads(
        (out / "manifest.json").read_text())["calibration"]
    # errors are one line each
    assert cli.main(["fit", "--add-model", "mid", "--to", str(grown), "--labels", str(f2), "--out",
                     str(tmp_path / "x")]) == 2
    assert "already" in capsys.readouterr().err
    assert cli.main(["fit", "--labels", str(f), "--strong", "big", "--out", str(tmp_path / "y")]) == 2
    assert "both --strong and --weak" in capsys.readouterr().err


def test_zero_label_artifact_routes_like_the_default(tmp_path):
    """An irt artifact at its prior (what fit writes when the default wins CV) ranks prompts exactly as
    the shipped default does."""
    _need_export()
    from routekit_export.fit_build import EncoderSource
    from routekit_export.irt_build import Prior, standardise, write_artifact

    import routekit
    from routekit.eval.suite import load_suite

    prompts = load_suite("everyday").prompts[:40]
    enc = EncoderSource()
    prior = Prior()
    emb = enc.embed(prompts)
    _, X, d_norm, x_mean = standardise(prior.logits(emb, prompts), emb)
    params = T.prior_params(["s", "w"], X.shape[1], "s", "w")
    write_artifact(tmp_path / "z", params, T.PAIR_CONFIG, prior=prior, enc=enc, x_mean=x_mean, d_norm=d_norm,
                   strong="s", weak="w", training={}, metrics={}, calibration=(prompts, "suite"), name="z",
                   overwrite=False)
    mine = routekit.load(tmp_path / "z").win_rates(prompts)
    default = routekit.load("linear").win_rates(prompts)
    order = np.argsort(default, kind="stable")
    assert np.all(np.diff(mine[order]) >= -1e-12) and np.ptp(mine) > 0  # the same order, nothing flattened


def test_fit_a_pair_cross_validates_default_adapted_and_from_scratch(tmp_path, capsys):
    _need_export()
    from routekit_export import cli

    import routekit

    rows = [{"prompt": r["prompt"], "big": r["scores"]["big"], "small": r["scores"]["small"]}
            for r in _label_rows(["big", "small"], n=60, seed=3)]
    f = _write(tmp_path / "pair.jsonl", rows)
    out = tmp_path / "pair"
    assert cli.main(["fit", "--labels", str(f), "--strong", "big", "--weak", "small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "minus irt" in printed and "<- chosen" in printed
    m = json.loads((out / "manifest.json").read_text())
    cv = m["metrics"]["cross_validation"]
    assert {"default", "irt", "linear", "sw"} <= set(cv["candidates"])
    for k in ("default", "linear", "sw"):  # each compared with the adapted kind on the same folds
        lo, hi = cv["candidates"][k]["minus_adapted_ci95"]
        assert lo <= hi
    # irt is kept unless another candidate is better with the paired interval above 0
    better = [k for k in cv["candidates"] if k != "irt" and cv["candidates"][k]["minus_adapted_ci95"][0] > 0]
    assert (cv["chosen"] == "irt") == (not better)
    r = routekit.load(out)
    assert r.models[:2] == ["big", "small"] and r.kind == m["kind"]


@pytest.mark.slow
@pytest.mark.data
def test_n_models_select_beats_mixing_on_routerbench(data_root):
    """11 RouterBench models, 800 training prompts, 400 held out, no prior (d = 0: the shipped default
    saw these prompts): select on the fitted qualities beats random mixing of single models."""
    _need_export()
    import importlib

    from _bench import BENCH  # noqa: F401  (puts bench/ on sys.path)
    from routekit_export.fit_build import EncoderSource

    nmodel = importlib.import_module("nmodel")

    prompts, _, models, Y = nmodel.read_set("routerbench", data_root)
    rows = np.random.default_rng(0).permutation(len(prompts))[:1200]
    prompts, Y = [prompts[i] for i in rows], Y[rows]
    emb = EncoderSource().embed(prompts)
    X = np.asarray(emb, np.float64) - emb[:800].mean(0)
    d = np.zeros(len(prompts))
    train = np.arange(800)
    ok = np.isfinite(Y[train])
    obs = T.Observations(np.repeat(train, len(models))[ok.ravel()], np.tile(np.arange(len(models)), 800)[ok.ravel()],
                         Y[train][ok])
    cfg, _ = T.choose_config(d, X, obs, models, folds=3)
    Q = np.zeros_like(Y)
    test = np.arange(800, 1200)
    Q[test] = T.sigmoid(T.fit(d, X, obs, models, cfg).theta(d[test], X[test]))
    price = np.array([nmodel.RB_PRICES[m] for m in models])
    rep = nmodel.summarise({"irt": Q}, np.nan_to_num(Y), price, test)
    assert rep["aiq"]["irt"] > rep["aiq"]["single_model_mix"]
    assert rep["accuracy_at_best_single_cost"]["irt"] >= rep["best_single"]["accuracy"] - 0.01

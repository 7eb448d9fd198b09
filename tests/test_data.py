import json
from pathlib import Path

import pytest
from routekit_export import data as D


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ROW = {"prompt": "p", "model_a": "x", "model_b": "y", "winner": "model_a", "license": "Apache-2.0", "source": "s"}


def test_truncated_line_has_line_number(tmp_path):
    p = _write(tmp_path / "b.jsonl", [ROW, ROW, '{"prompt": "trunc'])
    with pytest.raises(D.DataError, match=r"b\.jsonl:3: invalid JSON"):
        D.add_battles_file(D.Battles(), p)


def test_missing_field_and_unknown_winner(tmp_path):
    p = _write(tmp_path / "b.jsonl", [ROW, {k: v for k, v in ROW.items() if k != "model_b"}])
    with pytest.raises(D.DataError, match=r":2: missing field\(s\) model_b"):
        D.add_battles_file(D.Battles(), p)
    p = _write(tmp_path / "c.jsonl", [{**ROW, "winner": "both"}])
    with pytest.raises(D.DataError, match=r":1: unknown winner 'both'"):
        D.add_battles_file(D.Battles(), p)


def test_noncommercial_rows_skipped_by_default(tmp_path):
    p = _write(tmp_path / "b.jsonl", [ROW, {**ROW, "license": "CC-BY-NC-4.0", "prompt": "q"}])
    b = D.Battles()
    D.add_battles_file(b, p)
    assert len(b) == 1
    D.add_battles_file(b, p, allow_noncommercial=True)
    assert len(b) == 3


def test_golden_and_multi_model(tmp_path):
    g = _write(tmp_path / "g.jsonl", [
        {"prompt": "q1", "strong_model": D.STRONG, "weak_model": "mistralai/mixtral-8x7b-chat",
         "strong_correct": True, "weak_correct": False},
        {"prompt": "q2", "strong_model": D.STRONG, "weak_model": "mistralai/mixtral-8x7b-chat",
         "strong_correct": True, "weak_correct": True},
    ])
    b = D.Battles()
    D.add_golden_file(b, g)
    assert b.outcome == [1.0, 0.5] and b.models == [D.STRONG, D.WEAK]
    m = _write(tmp_path / "m.jsonl", [{"prompt": "q", "source": "routerbench/x",
                                       "scores": {"a": 1.0, "b": 0.0, "c": None, "d": 1.0}}])
    b = D.Battles()
    D.add_multi_model_file(b, m)
    assert len(b) == 3  # pairs among a, b, d (c is missing)
    assert sorted(b.outcome) == [0.0, 0.5, 1.0]


def test_real_training_data_loads(data_root):
    b = D.load_training(data_root, limit=2000)
    assert len(b) >= 2000
    assert not any(D.is_noncommercial(s["license"]) for s in b.sources.values())


def test_typed_rows(tmp_path):
    b = _write(tmp_path / "battles.jsonl", [
        {**ROW, "model_a": "claude-v1", "score_a": 8, "score_b": 3},  # an alias: canonical name in the row
        {**ROW, "winner": "tie (bothbad)", "license": "CC-BY-NC-4.0"}])
    rows = list(D.battle_rows(b))
    assert [(r.model_a, r.outcome, r.score_a, r.score_b) for r in rows] == [("claude-1", 1.0, 8.0, 3.0)]
    assert [r.outcome for r in D.battle_rows(b, allow_noncommercial=True)] == [1.0, 0.5]
    g = _write(tmp_path / "golden.jsonl", [{"prompt": "q", "strong_model": "s", "weak_model": "w",
                                            "strong_correct": False, "weak_correct": True}])
    (row,) = D.golden_rows(g)
    assert (row.outcome, row.source, row.license) == (0.0, "golden", "unknown")
    m = _write(tmp_path / "m.jsonl", [{"prompt": "q", "source": "x", "scores": {"a": 1, "b": None}}])
    assert [r.scores for r in D.score_rows(m)] == [{"a": 1.0}]


@pytest.mark.parametrize("score", ["8/10", True, [8]])
def test_a_battle_score_that_is_not_a_number_is_a_data_error(tmp_path, score):
    p = _write(tmp_path / "b.jsonl", [{**ROW, "score_a": 8, "score_b": None}, {**ROW, "score_a": score, "score_b": 3}])
    with pytest.raises(D.DataError, match=r"b\.jsonl:2: score_a must be a number or null"):
        list(D.battle_rows(p))
    with pytest.raises(D.DataError, match=r"b\.jsonl:2: score_a"):  # MF/SW read the same rows
        D.add_battles_file(D.Battles(), p)


@pytest.mark.parametrize("bad, message", [
    ({"strong_correct": "yes"}, "golden.jsonl:1: strong_correct/weak_correct must be true or false"),
    ({"prompt": 3}, "golden.jsonl:1: prompt must be a string"),
])
def test_every_trainer_refuses_a_bad_golden_row_alike(tmp_path, bad, message):
    pytest.importorskip("tqdm", reason="needs the export extra: pip install 'routekit[export]'")
    from routekit_export import bert, causal_labels, linear

    train = tmp_path / "train"
    train.mkdir()
    _write(train / "battles.jsonl", [])
    _write(train / "multi_model_scores.jsonl", [])
    _write(train / "golden.jsonl", [{"prompt": "q", "strong_model": D.STRONG, "weak_model": D.WEAK,
                                     "strong_correct": True, "weak_correct": False, **bad}])
    loaders = {"mf/sw": lambda: D.load_training(tmp_path), "bert": lambda: bert.load_examples(tmp_path),
               "causal": lambda: causal_labels.load_examples(tmp_path),
               "linear": lambda: linear.load_prompt_table(tmp_path)}
    for name, load in loaders.items():
        with pytest.raises(D.DataError, match=message):
            load()
            pytest.fail(f"the {name} loader accepted a bad golden row {bad}")


def test_default_data_dir_env_then_checkout_then_cwd(tmp_path, monkeypatch):
    import routekit_export.data as data_mod

    monkeypatch.setenv("ROUTEKIT_DATA", str(tmp_path / "mine"))
    assert data_mod.default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("ROUTEKIT_DATA")
    # an installed module: nothing beside it -> the README's ../shared/data from the current folder
    monkeypatch.setattr(data_mod, "__file__", str(tmp_path / "site" / "routekit_export" / "data.py"))
    assert data_mod.default_data_dir() == Path("..") / "shared" / "data"
    (tmp_path / "shared" / "data").mkdir(parents=True)  # a checkout with the data beside it
    assert data_mod.default_data_dir() == tmp_path / "shared" / "data"

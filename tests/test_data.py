import json

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

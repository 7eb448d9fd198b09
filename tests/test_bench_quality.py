"""The measure-only quality scripts in bench/ (chat proxy, task kind) on small files of their schema."""

import json

import numpy as np
from _bench import chat_proxy, task_kind


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_task_kind_gap_is_stronger_minus_mean_of_the_weaker_models(tmp_path):
    rows = [
        {"prompt": "p1", "model_a": "gpt-3.5-turbo-0301", "model_b": "vicuna-13b", "score_a": 9, "score_b": 7, "category": "coding"},
        {"prompt": "p1", "model_a": "llama-13b", "model_b": "vicuna-13b", "score_a": 2, "score_b": 7, "category": "coding"},
        {"prompt": "p1", "model_a": "alpaca-13b", "model_b": "vicuna-13b", "score_a": 4, "score_b": 7, "category": "coding"},
        {"prompt": "p2", "model_a": "gpt-3.5-turbo-0301", "model_b": "vicuna-13b", "score_a": 8, "score_b": 8, "category": "writing"},
        {"prompt": "p2", "model_a": "alpaca-13b", "model_b": "vicuna-13b", "score_a": 7, "score_b": 8, "category": "writing"},
        # no gpt-3.5 review: left out
        {"prompt": "p3", "model_a": "llama-13b", "model_b": "vicuna-13b", "score_a": 5, "score_b": 6, "category": "math"},
    ]
    prompts, gap, cats = task_kind.load_gaps(_jsonl(tmp_path / "v.jsonl", rows))
    assert prompts == ["p1", "p2"]
    np.testing.assert_allclose(gap, [9 - 3, 8 - 7])
    assert cats.tolist() == ["coding", "writing"]


def test_task_kind_ranks_ties_by_their_mean_rank():
    np.testing.assert_allclose(task_kind._ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [3, 0, 3, 1, 3])
    np.testing.assert_allclose(task_kind._ranks(np.array([0.2, 0.1, 0.3])), [1, 0, 2])


def test_task_kind_without_data_is_a_clear_error(tmp_path, capsys):
    assert task_kind.main(["--data", str(tmp_path), "--routers", "random"]) == 2
    assert "vicuna80_gpt4_reviews.jsonl" in capsys.readouterr().err


def test_chat_proxy_reads_only_the_default_pairs_alpaca_battles(tmp_path):
    s, w = chat_proxy.STRONG, chat_proxy.WEAK
    rows = [
        {"prompt": "a", "model_a": s, "model_b": w, "winner": "model_a", "source": "alpaca_eval/x"},
        {"prompt": "a", "model_a": w, "model_b": s, "winner": "tie", "source": "alpaca_eval/y"},
        {"prompt": "b", "model_a": w, "model_b": s, "winner": "model_a", "source": "alpaca_eval/x"},
        {"prompt": "b", "model_a": s, "model_b": "other", "winner": "model_a", "source": "alpaca_eval/x"},
        {"prompt": "c", "model_a": s, "model_b": w, "winner": "model_a", "source": "arena-bench-v1/z"},
    ]
    _jsonl(tmp_path / "train" / "battles.jsonl", rows)
    ev, oracle = chat_proxy.load_proxy(tmp_path)
    assert ev.prompts == ["a", "b"]
    np.testing.assert_allclose(ev.strong, [0.75, 0.0])
    np.testing.assert_allclose(ev.weak, [0.25, 1.0])
    np.testing.assert_allclose(oracle, [0.5, 1.0])  # "a" has no other opponent: 0.5

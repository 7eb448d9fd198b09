import json

import pytest
from routekit_export.data import Battles, DataError
from routekit_export.hub import add_local_file, prompt_text

ROW = {"id": 1, "model_a": "gpt-4-1106-preview", "model_b": "mistralai/Mixtral-8x7B-Instruct-v0.1",
       "prompt": json.dumps(["What is 2+2?", "And 3+3?"]), "response_a": "4", "response_b": "four",
       "winner_model_a": 1, "winner_model_b": 0, "winner_tie": 0}


def test_prompt_text_variants():
    assert prompt_text('["a", "b"]') == "a\n\nb"
    assert prompt_text(["a", None, "c"]) == "a\n\nc"
    assert prompt_text("[not json") == "[not json"
    assert prompt_text("plain") == "plain"


def test_local_file_in_hub_schema(tmp_path):
    p = tmp_path / "arena.jsonl"
    rows = [ROW, {**ROW, "prompt": "single", "winner_model_a": 0, "winner_tie": 1},
            {**ROW, "winner_model_a": 0, "winner_model_b": 1}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    b = Battles()
    assert add_local_file(b, p) == 3
    assert b.outcome == [1.0, 0.5, 0.0]
    assert b.prompts[0] == "What is 2+2?\n\nAnd 3+3?"
    assert b.models == ["gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"]  # alias applied


def test_bad_winner_flags_and_columns(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({**ROW, "winner_tie": 1}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: exactly one"):
        add_local_file(Battles(), p)
    p.write_text(json.dumps({k: v for k, v in ROW.items() if k != "winner_tie"}) + "\n")
    with pytest.raises(DataError, match="missing column"):
        add_local_file(Battles(), p)


def test_parquet_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets", reason="optional: pip install datasets")
    p = tmp_path / "arena.parquet"
    datasets.Dataset.from_list([ROW, {**ROW, "winner_model_a": 0, "winner_model_b": 1}]).to_parquet(str(p))
    b = Battles()
    assert add_local_file(b, p) == 2


def test_extra_sources_join_training(tmp_path, data_root):
    from routekit_export import data as D

    p = tmp_path / "arena.jsonl"
    p.write_text(json.dumps({**ROW, "prompt": "a prompt only in the extra file"}) + "\n")
    b = D.load_training(data_root, limit=100, extra=[str(p)])
    assert "a prompt only in the extra file" in b.prompts
    assert "file:arena.jsonl" in b.sources

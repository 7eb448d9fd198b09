"""export/: one outcome map for battle rows (unknown winners are errors everywhere) and ExportError
(a RoutekitError) instead of SystemExit, printed once by ``routekit-export`` as one line."""

from __future__ import annotations

import json

import pytest

from routekit.errors import RoutekitError


def _train(tmp_path, winner):
    from routekit_export import data as D

    train = tmp_path / "train"
    train.mkdir()
    rows = [{"prompt": "hello", "model_a": D.STRONG, "model_b": D.WEAK, "winner": "model_a"},
            {"prompt": "bye", "model_a": D.WEAK, "model_b": D.STRONG, "winner": winner}]
    (train / "battles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (train / "golden.jsonl").write_text("")
    return tmp_path


@pytest.mark.parametrize("loader", ["data", "bert", "causal"])
def test_an_unknown_winner_is_an_error_for_every_trainer(tmp_path, loader):
    from routekit_export import data as D

    root = _train(tmp_path, "nobody")
    with pytest.raises(D.DataError, match=r"battles.jsonl:2: unknown winner 'nobody'"):
        if loader == "data":
            D.add_battles_file(D.Battles(), root / "train" / "battles.jsonl")
        elif loader == "bert":
            pytest.importorskip("torch")
            from routekit_export.bert import load_examples

            load_examples(root)
        else:
            from routekit_export.causal import load_examples

            load_examples(root)
    assert D.battle_outcome({"winner": "tie (bothbad)"}, "x") == 0.5
    assert issubclass(D.DataError, RoutekitError)


def test_export_errors_are_one_line_not_system_exit(tmp_path, capsys):
    from routekit_export.cli import main
    from routekit_export.errors import ExportError

    assert issubclass(ExportError, RoutekitError)
    (tmp_path / "enc").mkdir()
    rc = main(["static-encoder", "--encoder", str(tmp_path / "enc"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("routekit-export: error:") and err.count("\n") == 1, err
    assert "not an encoder folder" in err


def test_limit_caps_the_training_battles(data_root):
    from routekit_export import data as D

    b = D.load_training(data_root, limit=3000)
    assert len(b) == 3000  # battles + golden rows together, not 1.25 × the limit
    rows = [s["rows"] for s in b.sources.values()]
    assert len(rows) == 2 and max(rows) == 2400  # four fifths pair battles, the rest golden


def test_one_splitter_keeps_each_prompt_on_one_side():
    import numpy as np
    from routekit_export.data import split_by_prompt

    prompts = [f"p{i % 300}" for i in range(3000)]  # every prompt 10 times
    train, val = split_by_prompt(prompts, 0.2, seed=1)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(3000))
    assert not {prompts[i] for i in train} & {prompts[i] for i in val}
    assert 0.12 < len(val) / 3000 < 0.28
    # stable when rows are added, different for another seed, empty for fraction 0
    more, _ = split_by_prompt(prompts + ["new"], 0.2, seed=1)
    assert set(train.tolist()) <= set(more.tolist())
    assert set(split_by_prompt(prompts, 0.2, seed=2)[1].tolist()) != set(val.tolist())
    assert len(split_by_prompt(prompts, 0.0, seed=1)[1]) == 0

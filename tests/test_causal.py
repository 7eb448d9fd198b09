"""Causal-LLM classifier router (torch backend) on a tiny LlamaForCausalLM built here, CPU only.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on synthetic sentences, the model is
random-init from a config, then fine-tuned for a few steps.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import routekit
from routekit.errors import BadArtifactError, BadInputError, MissingExtraError
from routekit.routers.causal import PromptSpec, fill, neutralise_score_tokens

MATH = ["Solve x^2 - 5x + 6 = 0.", "Compute the integral of x^3 from 0 to 2.", "What is 17 * 23 + 4?",
        "Prove that sqrt(2) is irrational.", "Find the derivative of sin(x) * x^2.",
        "How many primes are below 100?", "Factor 391 into primes.", "Solve 3x + 7 = 22 for x.",
        "What is the sum of the first 50 odd numbers?", "Integrate e^(2x) dx.",
        "Is 221 a prime number?", "Compute 2^10 - 3^5."]
CHAT = ["hi", "Write a haiku about autumn.", "Translate 'good morning' into French.", "Tell me a joke.",
        "What is your favourite colour?", "Say hello to my friend Anna.", "Recommend a book about cats.",
        "Write a short poem about the sea.", "How are you today?", "Give me a name for my dog.",
        "Describe a sunny day.", "Write an email thanking my teacher."]
PROBE = ["hi", "Solve 2x + 1 = 9.", "Écris un poème. 海の詩。", "", "{user} {prompt} {} [[5]] <|eot_id|>",
         "Summarise the causes of World War I. " * 40]


# -- pure prompt handling (no torch) ----------------------------------------------------------------
def test_fill_is_single_pass_and_only_touches_placeholders():
    assert fill("{system}|{user}", system="{user}", user="u") == "{user}|u"
    assert fill("a {x} {} {{prompt}} {prompt}", prompt="P") == "a {x} {} {P} P"
    assert neutralise_score_tokens("rate [[5]] or [[12]] or [[0]]") == "rate [[5 ]] or [[12]] or [[0]]"
    spec = PromptSpec(system="  sys  ", user="Q: {prompt}\n", template="<s>{system}|{user}</s>")
    assert spec.render("a [[1]] {system}") == "<s>sys|Q: a [[1 ]] {system}</s>"
    with pytest.raises(BadArtifactError):
        PromptSpec(user="no placeholder")
    with pytest.raises(BadArtifactError):
        PromptSpec.from_dict({"format": "jinja"})
    with pytest.raises(BadArtifactError):
        PromptSpec.from_dict({"strip": "yes"})


def test_reference_format_string_to_template():
    from routekit_export.causal import format_to_template

    assert format_to_template("[Q]\n{question}\n\nA {{literal}}:\n") == "[Q]\n{prompt}\n\nA {literal}:\n"
    with pytest.raises(ValueError):
        format_to_template("{question} {other}")
    with pytest.raises(ValueError):
        format_to_template("{{prompt}} {question}")


def test_label_mapping_and_local_data(tmp_path):
    from routekit_export import causal as C
    from routekit_export.data import STRONG, WEAK

    assert [C.score_from_margin(s, w) for s, w in [(9, 3), (8, 6), (7, 6.5), (5, 5), (4, 6)]] == [1, 2, 3, 4, 5]
    assert [C.score_from_outcome(o) for o in (1.0, 0.5, 0.0)] == [2, 4, 5]
    assert [C.score_from_golden(*c) for c in [(True, False), (False, False), (True, True), (False, True)]] == \
        [1, 4, 5, 5]
    train = tmp_path / "train"
    train.mkdir()
    rows = [
        {"prompt": "p1", "model_a": STRONG, "model_b": WEAK, "winner": "model_a", "score_a": 9, "score_b": 2,
         "source": "ab", "license": "Apache-2.0"},
        {"prompt": "p2", "model_a": WEAK, "model_b": STRONG, "winner": "model_a", "score_a": 8, "score_b": 7,
         "source": "ab", "license": "Apache-2.0"},
        {"prompt": "p3", "model_a": STRONG, "model_b": "mistralai/Mixtral-8x7B-Instruct-v0.1", "winner": "tie",
         "source": "ae", "license": "CC-BY-NC-4.0"},
        {"prompt": "p4", "model_a": STRONG, "model_b": "claude-1", "winner": "model_a", "score_a": 9,
         "score_b": 1, "source": "ab", "license": "Apache-2.0"},
    ]
    (train / "battles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    golden = [{"prompt": "g1", "strong_model": STRONG, "weak_model": "mistralai/mixtral-8x7b-chat",
               "strong_correct": True, "weak_correct": False, "source": "rb/arc", "license": "MIT"},
              {"prompt": "g2", "strong_model": STRONG, "weak_model": WEAK, "strong_correct": False,
               "weak_correct": False, "source": "mmlu", "license": "Apache-2.0"}]
    (train / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in golden))
    ex = C.load_examples(tmp_path)
    assert list(zip(ex.prompts, ex.labels)) == [("p1", 1), ("p2", 5), ("g1", 1), ("g2", 4)]
    ex = C.load_examples(tmp_path, allow_noncommercial=True)
    assert ("p3", 4) in list(zip(ex.prompts, ex.labels))


@pytest.mark.data
def test_examples_from_shared_data(data_root):
    from routekit_export.causal import load_examples

    ex = load_examples(data_root)
    assert len(ex) > 4000 and set(ex.labels) == {1, 2, 3, 4, 5}
    assert not any("alpaca" in s for s in ex.sources)


# -- torch: tiny models -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_mod():
    torch = pytest.importorskip("torch", reason="needs the causal extra: pip install 'routekit[causal]'")
    pytest.importorskip("transformers", reason="needs the causal extra: pip install 'routekit[causal]'")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, torch_mod):
    from routekit_export.causal import make_tiny_llama, tiny_corpus

    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "base", corpus=tiny_corpus() + MATH + CHAT)


def _train(base, out, prompts, labels, *, steps=25, lr=1e-2, calibration=None, system=None, **cfg_kw):
    from routekit_export import causal as C

    model, tok = C.load_base(base)
    spec = C.default_prompt_spec(tok, **({"system": system} if system is not None else {}))
    cfg = C.CausalConfig(lr=lr, batch_size=8, max_steps=steps, val_fraction=0.0, max_length=512, **cfg_kw)
    model, metrics = C.train_classifier(model, tok, spec, prompts, labels, cfg, show_progress=False)
    C.write_causal_artifact(out, model, tok, spec, name=Path(out).name, max_length=512,
                            description="test", calibration=calibration)
    return metrics


@pytest.fixture(scope="module")
def always5(base_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("c5") / "always5"
    _train(base_dir, out, MATH + CHAT, [5] * 24, calibration=(MATH + CHAT, "test prompts"))
    return out


def test_trained_on_5_routes_weak_probs_sum_to_one_batch_equals_single(always5):
    router = routekit.load(always5)
    assert router.kind == "causal" and str(router.device) == "cpu"
    dist = router.score_distribution(PROBE)
    assert dist.shape == (len(PROBE), 5)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-9)
    assert (dist[:, 4] > 0.8).all(), dist  # learned [[5]] on prompts it never saw
    batch = router.win_rates(PROBE)
    np.testing.assert_allclose(batch, dist[:, :3].sum(axis=1), atol=1e-12)
    single = np.array([router.win_rate(p) for p in PROBE])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    np.testing.assert_allclose(router.win_rates(PROBE, batch_size=2), batch, atol=1e-5)
    assert all(d.route == "weak" for d in router.route_many(PROBE, threshold=0.5))
    # the stored calibration works like any other router's
    assert router.route("hi", strong_fraction=0.3).threshold == pytest.approx(router.threshold_for(0.3))
    # a user's "[[5]]" is text, not the score token (the system prompt itself names the tokens)
    count = lambda ids: sum(i in router._ids for i in ids)  # noqa: E731
    assert count(router.encoder.encode("please answer [[5]] [[1]]")) == count(router.encoder.encode("please"))


def test_trained_on_1_routes_strong(base_dir, tmp_path):
    _train(base_dir, tmp_path / "always1", MATH + CHAT, [1] * 24, steps=15)
    router = routekit.load(tmp_path / "always1")
    assert (router.win_rates(PROBE) > 0.8).all()
    assert all(d.route == "strong" for d in router.route_many(PROBE, threshold=0.5))


def test_learns_which_prompts_need_the_strong_model(base_dir, tmp_path):
    train_p, test_p = MATH[:9] + CHAT[:9], MATH[9:] + CHAT[9:]
    # a short system prompt: a 2-layer, 32-d model learns to look past a long one only slowly
    metrics = _train(base_dir, tmp_path / "cond", train_p, [1] * 9 + [5] * 9, steps=40, system="Rate it.")
    assert metrics["final"]["train"]["accuracy_strong_vs_weak"] == 1.0
    router = routekit.load(tmp_path / "cond")
    rates = router.win_rates(test_p)
    assert rates[:3].min() > rates[3:].max(), rates  # held-out math above held-out chat


def test_chat_template_prompt_matches_written_llama3_format(tmp_path, torch_mod):
    from routekit_export import causal as C

    from routekit.routers.causal import PromptEncoder

    base = C.make_tiny_llama(tmp_path / "chat", chat_template=C.LLAMA3_CHAT_TEMPLATE, layers=1)
    model, tok = C.load_base(base)
    spec = C.default_prompt_spec(tok)
    assert spec.format == "chat_template" and not spec.add_special_tokens
    plain = PromptSpec(format="template", system=spec.system, user=spec.user, template=C.LLAMA3_TEMPLATE,
                       generation_prefix=C.LLAMA3_ASSISTANT, add_special_tokens=True)
    for p in PROBE[:4]:
        assert PromptEncoder(tok, spec).encode(p) == PromptEncoder(tok, plain).encode(p)
    model, _ = C.train_classifier(model, tok, spec, MATH, [3] * len(MATH),
                                  C.CausalConfig(max_steps=2, val_fraction=0.0), show_progress=False)
    C.write_causal_artifact(tmp_path / "art", model, tok, spec, name="chat", max_length=512, description="t")
    router = routekit.load(tmp_path / "art")
    assert router.prompt.format == "chat_template"
    assert router.encoder.encode("hi")[0] == tok.bos_token_id


def test_long_prompts_are_cut_to_fit_keeping_the_instructions(always5):
    router = routekit.load(always5)
    enc = router.encoder
    long = "word " * 5000
    ids = enc.encode(long)
    assert len(ids) <= enc.max_length
    tail = enc.encode("x")[-6:]
    assert ids[-6:] == tail  # the end of the template (and the prefix) survives
    assert 0.0 <= router.win_rate(long) <= 1.0


def test_refuses_unlisted_files_pickles_and_tampering(always5, tmp_path):
    bad = tmp_path / "extra"
    shutil.copytree(always5, bad)
    (bad / "model" / "pytorch_model.bin").write_bytes(b"not listed")
    with pytest.raises(BadArtifactError, match="not in the manifest"):
        routekit.load(bad)
    tampered = tmp_path / "tampered"
    shutil.copytree(always5, tampered)
    w = tampered / "model" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(BadArtifactError, match="sha256"):
        routekit.load(tampered)
    # a listed pickle file is refused even with a matching hash
    from routekit import artifact

    pick = tmp_path / "pickle"
    shutil.copytree(always5, pick)
    (pick / "model" / "extra.pt").write_bytes(b"x")
    m = json.loads((pick / "manifest.json").read_text())
    m["files"]["model/extra.pt"] = {"sha256": artifact.sha256_file(pick / "model" / "extra.pt"), "bytes": 1}
    (pick / "manifest.json").write_text(json.dumps(m))
    artifact.seal(pick)  # the manifest's own hash would refuse the edit first
    with pytest.raises(BadArtifactError, match="pickle-based"):
        routekit.load(pick)


def test_other_pair_is_refused_and_missing_extra_has_hint(always5, monkeypatch):
    with pytest.raises(BadInputError):
        routekit.load(always5, strong="mixtral-8x7b-instruct-v0.1", weak="gpt-4-1106-preview")
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "torch":
            raise ImportError("no torch here")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingExtraError, match=r"routekit\[causal\]"):
        routekit.load(always5)


# -- RouteLLM checkpoint conversion -----------------------------------------------------------------
SYSTEM_TXT = "You rate questions.\nGive [[1]] to [[5]]: 5 means a small model answers it well.\n"
CLASSIFIER_TXT = "<<Q>>\n{question}\n\nYour rating {{1-5}}:\n"


def _reference_p_strong(ckpt: Path, tok_dir: Path, prompts, threshold=4):
    """The reference's computation written out directly: Llama-3 turns, stripped contents, tokenizer
    BOS, the assistant header the model writes first, softmax over the 5 added ids, 1 - P(>= 4)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    n_base = len(tok)
    tok.add_tokens([f"[[{k}]]" for k in range(1, 6)], special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    out = []
    for p in prompts:
        text = ("<|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM_TXT.strip() + "<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n" + CLASSIFIER_TXT.format(question=p).strip()
                + "<|eot_id|>" + "<|start_header_id|>assistant<|end_header_id|>\n\n")
        ids = torch.tensor([tok.encode(text)])
        with torch.no_grad():
            logits = model(ids).logits[0, -1].double()
        sm = torch.softmax(logits[n_base:n_base + 5], -1).numpy()
        out.append(1.0 - sm[threshold - 1:].sum())
    return np.array(out)


@pytest.mark.parametrize("safetensors", [True, False])
def test_convert_routellm_causal_matches_reference_formula(tmp_path, torch_mod, safetensors):
    from routekit_export import causal as C
    from routekit_export.convert import convert_causal

    ckpt = C.make_tiny_llama(tmp_path / "ckpt", extra_rows=5, save_tokenizer=False, layers=1,
                             safe_serialization=safetensors, seed=3)
    tok_dir = tmp_path / "base-tokenizer"
    C.make_tiny_tokenizer().save_pretrained(tok_dir)
    (ckpt / "system_ft_v5.txt").write_text(SYSTEM_TXT)
    (ckpt / "classifier_ft_v5.txt").write_text(CLASSIFIER_TXT)
    out = convert_causal(ckpt, tmp_path / "art", tokenizer_dir=tok_dir, calibration=(CHAT, "chat prompts"))
    router = routekit.load(out)
    assert router.strong_scores == (1, 2, 3)
    prompts = ["hi", "Solve x^2 - 5x + 6 = 0.", "  padded  ", "Écris un poème."]
    ref = _reference_p_strong(ckpt, tok_dir, prompts)
    got = router.win_rates(prompts)
    assert np.abs(got - ref).max() <= 1e-4, (got, ref)
    assert got.std() > 0  # random weights: prompts really differ
    # batch == single on a model whose outputs vary (left padding + position ids)
    dist = router.score_distribution(prompts + PROBE)
    single = np.stack([router.score_distribution([p])[0] for p in prompts + PROBE])
    np.testing.assert_allclose(dist, single, atol=1e-6)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-9)
    # one router shared by threads gives the same answers
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: router.win_rates(prompts[i % 4:] + prompts[:i % 4]), range(8)))
    for i, r in enumerate(results):
        np.testing.assert_allclose(r, np.roll(got, -(i % 4)), atol=1e-6)
    assert router.manifest["source"]["format"] == "routellm-causal"
    assert not any(f.endswith(".bin") for f in router.manifest.files)


def test_convert_cli_and_missing_prompt_files(tmp_path, torch_mod):
    from routekit_export import causal as C
    from routekit_export.cli import main

    ckpt = C.make_tiny_llama(tmp_path / "ckpt", extra_rows=5, layers=1)
    assert main(["convert-routellm", "--kind", "causal", "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "a")]) == 2  # no prompt files
    (tmp_path / "s.txt").write_text(SYSTEM_TXT)
    (tmp_path / "c.txt").write_text(CLASSIFIER_TXT)
    assert main(["convert-routellm", "--kind", "causal", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a"),
                 "--set", f"system_prompt={tmp_path / 's.txt'}", "--set", f"classifier_prompt={tmp_path / 'c.txt'}",
                 "--set", "score_threshold=3"]) == 0
    router = routekit.load(tmp_path / "a")
    assert router.strong_scores == (1, 2)


def test_train_causal_cli_tiny(tmp_path, torch_mod):
    from routekit_export.cli import main
    from routekit_export.data import STRONG, WEAK

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "calibration").mkdir()
    golden = [{"prompt": p, "strong_model": STRONG, "weak_model": WEAK, "strong_correct": True,
               "weak_correct": p in CHAT, "source": "t", "license": "MIT"} for p in MATH + CHAT]
    (data / "train" / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in golden))
    (data / "train" / "battles.jsonl").write_text("")
    (data / "calibration" / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROBE))
    out = tmp_path / "causal"
    assert main(["train-causal", "--tiny", "--data", str(data), "--out", str(out), "--max-steps", "3",
                 "--val-fraction", "0.2"]) == 0
    router = routekit.load(out)
    m = router.manifest
    assert m["training"]["labels"] == {"1": 12, "2": 0, "3": 0, "4": 0, "5": 12}
    assert m["calibration"]["n"] == len(PROBE) and m["metrics"]["validation"]["examples"] > 0
    assert main(["train-causal", "--tiny", "--data", str(data), "--out", str(out)]) == 2  # exists, no --force


def test_lora_fine_tune_merges_into_plain_model(base_dir, tmp_path):
    pytest.importorskip("peft", reason="LoRA needs: pip install peft")
    metrics = _train(base_dir, tmp_path / "lora", MATH + CHAT, [5] * 24, steps=20, lr=1e-2, lora_r=4)
    router = routekit.load(tmp_path / "lora")
    from safetensors import safe_open

    with safe_open(str(router.manifest.path("model/model.safetensors")), "np") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "lora" in k.lower()]  # adapters merged into plain weights
    assert (router.win_rates(PROBE) < 0.5).all(), metrics["final"]


def test_throughput_helper_runs_on_cpu(always5):
    from routekit_export.causal import throughput

    router = routekit.load(always5)
    res = throughput(router, (MATH + CHAT)[:8], batch_sizes=(1, 4))
    assert set(res) == {"batch_1", "batch_4"} and all(v["requests_per_s"] > 0 for v in res.values())


@pytest.mark.gpu
def test_gpu_bf16_matches_fp32_and_throughput(always5, tmp_path_factory):
    """On CUDA: bf16 scores close to fp32; prints req/s for the tiny model and a ~1.1B random Llama."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from routekit_export import causal as C

    fp32 = routekit.load(always5, device="cpu")
    gpu = routekit.load(always5)
    assert gpu.device.type == "cuda" and gpu.dtype in (torch.bfloat16, torch.float16)
    np.testing.assert_allclose(gpu.score_distribution(PROBE), fp32.score_distribution(PROBE), atol=0.05)
    prompts = (MATH + CHAT) * 8
    print("tiny", json.dumps(C.throughput(gpu, prompts)))
    big = tmp_path_factory.mktemp("big")
    C.make_tiny_llama(big / "base", hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4)
    model, tok = C.load_base(big / "base", device="cpu", dtype="bfloat16")
    C.write_causal_artifact(big / "art", model, tok, C.default_prompt_spec(tok), name="llama-1b-random",
                            max_length=1024, description="random-init 1.1B Llama (throughput only)")
    del model
    router = routekit.load(big / "art")
    print("llama-1.1b-random", json.dumps(C.throughput(router, prompts)))


# -- ONNX export: the causal classifier on onnxruntime, no torch at run time ------------------------
@pytest.fixture(scope="module")
def random_chat_artifact(tmp_path_factory, torch_mod):
    """An untrained tiny Llama with a Llama-3 chat template: random weights, so prompts score apart."""
    from routekit.routers.causal import score_token_ids
    from routekit_export import causal as C

    tmp = tmp_path_factory.mktemp("onnx")
    base = C.make_tiny_llama(tmp / "base", corpus=C.tiny_corpus() + MATH + CHAT, chat_template=C.LLAMA3_CHAT_TEMPLATE,
                             seed=5)
    model, tok = C.load_base(base)
    ids = score_token_ids(tok)
    with torch_mod.no_grad():  # resized rows start near their mean: give the five scores distinct random rows
        model.get_output_embeddings().weight[ids] = torch_mod.randn(5, model.config.hidden_size,
                                                                    generator=torch_mod.Generator().manual_seed(0))
    C.write_causal_artifact(tmp / "art", model, tok, C.default_prompt_spec(tok, system="Rate it."), name="rand",
                            max_length=64, description="random tiny Llama", calibration=(MATH + CHAT, "test"))
    return tmp / "art"


@pytest.mark.parametrize("keep_torch", [False, True])
def test_onnx_export_matches_torch(random_chat_artifact, tmp_path, keep_torch):
    from routekit_export.causal_onnx import PARITY_TOL, export_causal_onnx

    report = export_causal_onnx(random_chat_artifact, tmp_path / "onnx", keep_torch=keep_torch)
    assert report["max_abs_dp_batch"] <= PARITY_TOL and report["max_abs_dp_single"] <= PARITY_TOL
    ref = routekit.load(random_chat_artifact, device="cpu")
    onnx = routekit.load(tmp_path / "onnx", backend="onnx")
    assert onnx.backend == "onnx" and ref.backend == "torch"
    assert onnx.manifest["metrics"]["onnx_parity"] == report
    prompts = PROBE + MATH + CHAT
    # the plain template gives the chat template's token ids, long prompts cut the same way
    assert [onnx.encoder.encode(p) for p in prompts] == [ref.encoder.encode(p) for p in prompts]
    want, got = ref.score_distribution(prompts), onnx.score_distribution(prompts)
    assert np.abs(got - want).max() <= 1e-3, np.abs(got - want).max()  # fp32 parity target
    assert want[:, :3].sum(1).std() > 1e-3  # random weights: the prompts really score apart
    single = np.stack([onnx.score_distribution([p])[0] for p in prompts])
    np.testing.assert_allclose(single, got, atol=1e-5)  # left padding: batch == single
    np.testing.assert_allclose(onnx.win_rates(prompts), got[:, :3].sum(1), atol=1e-12)
    assert onnx.threshold_for(0.3) == ref.threshold_for(0.3)  # the calibration travels with it
    has_model = any(f.startswith("model/") for f in onnx.manifest.files)
    assert has_model == keep_torch
    if keep_torch:  # both backends in one artifact: CPU picks onnx, torch on request
        assert routekit.load(tmp_path / "onnx").backend == "onnx"
        both = routekit.load(tmp_path / "onnx", backend="torch")
        np.testing.assert_allclose(both.score_distribution(prompts), want, atol=1e-12)
    else:
        with pytest.raises(BadInputError, match="only its ONNX graph"):
            routekit.load(tmp_path / "onnx", backend="torch")
    with pytest.raises(BadInputError, match="no ONNX graph"):
        routekit.load(random_chat_artifact, backend="onnx")
    with pytest.raises(BadInputError, match="backend must be"):
        routekit.load(tmp_path / "onnx", backend="tensorrt")


def test_onnx_artifact_scores_without_torch(random_chat_artifact, tmp_path):
    """The runtime path imports neither torch nor transformers (checked in a fresh interpreter)."""
    import subprocess
    import sys

    from routekit_export.causal_onnx import export_causal_onnx

    export_causal_onnx(random_chat_artifact, tmp_path / "onnx")
    want = routekit.load(random_chat_artifact, device="cpu").win_rates(PROBE)
    code = ("import json, sys, routekit\n"
            f"r = routekit.load({str(tmp_path / 'onnx')!r})\n"
            f"w = r.win_rates({PROBE!r})\n"
            "print(json.dumps({'w': [float(x) for x in w], 'backend': r.backend,\n"
            "                  'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["backend"] == "onnx" and res["heavy"] == []
    np.testing.assert_allclose(res["w"], want, atol=1e-3)


def test_onnx_export_refuses_a_template_it_cannot_reproduce(random_chat_artifact, tmp_path, monkeypatch):
    from routekit_export import causal_onnx as CO

    real = CO.template_spec

    def drifted(spec, tok):  # a template that loses one newline: token ids change, export must refuse
        t = real(spec, tok)
        return PromptSpec(**{**t.to_dict(), "template": t.template.replace("\n\n", "\n", 1)})

    monkeypatch.setattr(CO, "template_spec", drifted)
    with pytest.raises(ValueError, match="does not give the chat template's token ids"):
        CO.export_causal_onnx(random_chat_artifact, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_large_graphs_keep_their_weights_in_one_listed_file(random_chat_artifact, tmp_path):
    """Above the size threshold (2 GB protobuf cap) the weights go to onnx/model.onnx.data, hash-listed."""
    from routekit_export.causal_onnx import export_causal_onnx

    report = export_causal_onnx(random_chat_artifact, tmp_path / "ext", external_data_above=0)
    router = routekit.load(tmp_path / "ext")
    files = router.manifest.files
    assert {"onnx/model.onnx", "onnx/model.onnx.data"} <= set(files)
    assert files["onnx/model.onnx.data"]["bytes"] > files["onnx/model.onnx"]["bytes"]
    assert [f for f in files if f.startswith("onnx/")] == sorted(["onnx/model.onnx", "onnx/model.onnx.data",
                                                                  "onnx/tokenizer.json"])
    ref = routekit.load(random_chat_artifact, device="cpu").score_distribution(PROBE)
    assert np.abs(router.score_distribution(PROBE) - ref).max() <= 1e-3 and report["max_abs_dp_batch"] <= 1e-3


def test_causal_onnx_cli(random_chat_artifact, tmp_path):
    from routekit_export.cli import main

    assert main(["causal-onnx", "--artifact", str(random_chat_artifact), "--out", str(tmp_path / "o")]) == 0
    assert routekit.load(tmp_path / "o").backend == "onnx"
    assert main(["causal-onnx", "--artifact", str(random_chat_artifact), "--out", str(tmp_path / "o")]) == 2

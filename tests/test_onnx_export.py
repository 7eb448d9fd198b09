"""routekit_export.onnx_export: optimum's exporter for Hugging Face models (no hub), the pooled encoder
graph, and optimum's ORTQuantizer configured to write what onnxruntime's quantize_dynamic writes."""

from __future__ import annotations

import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the export extra: pip install 'routekit[export]'")
pytest.importorskip("optimum.exporters.onnx", reason="needs the export extra (optimum-onnx)")
onnx = pytest.importorskip("onnx", reason="needs the export extra (onnx)")
ort = pytest.importorskip("onnxruntime")

from routekit_export.onnx_export import export_hf, mean_pool_normalize, quantize_int8  # noqa: E402


def _tiny_config(**kw):
    from transformers import BertConfig

    return BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=64, attn_implementation="eager", **kw)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 120, (3, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0  # one padded row
    mask[2, 2:] = 0
    return ids, mask


def _run(path, ids, mask):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})[0]


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every name lookup and connection attempt."""
    attempts = []

    def refuse(what):
        def f(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"test: no network ({what})")
        return f

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    return attempts


def test_classifier_export_matches_torch_and_reaches_no_hub(tmp_path, no_network):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(_tiny_config(num_labels=3)).eval()
    model.config._name_or_path = "some-org/some-model"  # what a hub-loaded model's config says
    out = export_hf(model, tmp_path / "classifier.onnx", task="text-classification")
    assert no_network == []  # optimum would look the tokenizer of that name up on the hub
    assert model.config._name_or_path == "some-org/some-model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.onnx"]  # no scratch files left
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask"]  # as the shipped graphs
    ids, mask = _batch()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    got = _run(out, ids, mask)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # dynamic axes: another batch size and sequence length run through the same graph
    ids2, mask2 = ids[:1, :4], mask[:1, :4]
    with torch.no_grad():
        ref2 = model(input_ids=torch.tensor(ids2), attention_mask=torch.tensor(mask2)).logits.numpy()
    np.testing.assert_allclose(_run(out, ids2, mask2), ref2, atol=1e-5)


def test_pooled_encoder_graph_matches_torch_pooling(tmp_path):
    from transformers import BertModel

    torch.manual_seed(1)
    model = BertModel(_tiny_config(), add_pooling_layer=False).eval()
    hidden = export_hf(model, tmp_path / "hidden.onnx", task="feature-extraction")
    pooled = mean_pool_normalize(hidden, tmp_path / "pooled.onnx")
    m = onnx.load(str(pooled))
    onnx.checker.check_model(m, full_check=True)
    assert [o.name for o in m.graph.output] == ["embedding"]
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask"]
    ids, mask = _batch(2)
    with torch.no_grad():
        h = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
        w = torch.tensor(mask).unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((h * w).sum(1) / w.sum(1).clamp(min=1e-9), dim=1).numpy()
    got = _run(pooled, ids, mask)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # padding does not change a row's embedding
    np.testing.assert_allclose(_run(pooled, ids[2:, :2], mask[2:, :2])[0], got[2], atol=1e-5)


def test_ortquantizer_writes_what_quantize_dynamic_writes(tmp_path, no_network):
    """The int8 graphs routekit ships were made with onnxruntime's quantize_dynamic (QInt8 weights,
    per channel); the ORTQuantizer configuration gives the same graph, so int8 results are unchanged."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertForSequenceClassification

    torch.manual_seed(2)
    model = BertForSequenceClassification(_tiny_config(num_labels=3)).eval()
    fp32 = export_hf(model, tmp_path / "classifier.onnx", task="text-classification")
    ours = quantize_int8(fp32, tmp_path / "ours.onnx")
    assert no_network == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.onnx", "ours.onnx"]  # nothing else left
    quantize_dynamic(str(fp32), str(tmp_path / "ort.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    a, b = onnx.load(str(ours)), onnx.load(str(tmp_path / "ort.onnx"))
    assert a.graph == b.graph and list(a.opset_import) == list(b.opset_import)
    ops = [n.op_type for n in a.graph.node]
    # weights only: Q, K, V, output and 2 feed-forward products per layer, the pooler, the classifier
    assert ops.count("MatMulInteger") == 2 * 6 + 2
    assert ops.count("MatMul") == 2 * 2  # scores and weighted values stay fp32 (activation × activation)
    ids, mask = _batch(3)
    rows = np.concatenate([_run(ours, ids[i:i + 1], mask[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(rows, _run(fp32, ids, mask), atol=0.05)


def test_a_graph_with_external_weights_is_refused(tmp_path, monkeypatch):
    """Over 2 GB optimum writes the weights beside the graph (forced here for a tiny model):
    an artifact holds one-file graphs, so the export stops with a clear error and leaves nothing."""
    from routekit_export.errors import ExportError
    from transformers import BertModel

    monkeypatch.setenv("FORCE_ONNX_EXTERNAL_DATA", "1")
    with pytest.raises(ExportError, match="over 2 GB"):
        export_hf(BertModel(_tiny_config(), add_pooling_layer=False), tmp_path / "m.onnx", task="feature-extraction")
    assert list(tmp_path.iterdir()) == []


def test_an_architecture_optimum_cannot_export_is_a_clear_error(tmp_path):
    from routekit_export.errors import ExportError
    from transformers import FNetConfig, FNetForSequenceClassification

    model = FNetForSequenceClassification(FNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     intermediate_size=16, num_labels=3))
    with pytest.raises(ExportError, match="cannot export FNetForSequenceClassification to ONNX for text-classification: "
                                          "fnet is not supported"):
        export_hf(model, tmp_path / "m.onnx", task="text-classification")
    assert list(tmp_path.iterdir()) == []


def test_export_config_works_without_a_prior_export():
    """_one_segment_config registers optimum's ONNX configs itself (a fresh process, nothing imported)."""
    import subprocess
    import sys

    code = ("from transformers import BertConfig, BertModel\n"
            "from routekit_export.onnx_export import _one_segment_config\n"
            "m = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,"
            " intermediate_size=16))\n"
            "print(sorted(_one_segment_config(m, 'feature-extraction').inputs))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "['attention_mask', 'input_ids']"

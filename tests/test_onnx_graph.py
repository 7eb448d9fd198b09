"""routekit.encoders.onnx_graph writes ONNX protobuf bytes by hand (no ``onnx`` at run time); ``onnx.checker``
checks that what it writes is a valid model, for every graph built with it: the int8 inner product and
the whole SW head (both weightings, one count block and several)."""

from __future__ import annotations

import numpy as np
import pytest

from routekit.encoders import onnx_graph
from routekit.routers.sw.model import SWModel

onnx = pytest.importorskip("onnx", reason="needs the export extra (onnx)")


@pytest.fixture
def written(monkeypatch):
    """Every model OnnxGraph.session compiles, as bytes."""
    models = []
    real = onnx_graph.OnnxGraph.session

    def capture(self, inputs, outputs, threads):
        models.append(self.model(inputs, outputs))
        return real(self, inputs, outputs, threads)

    monkeypatch.setattr(onnx_graph.OnnxGraph, "session", capture)
    return models


def _check(data: bytes):
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)  # schema, types, and shape inference
    return model


def test_int8_inner_product_graph_is_valid_onnx(written):
    rng = np.random.default_rng(0)
    M = rng.standard_normal((50, 12)).astype(np.float32)
    ip = onnx_graph.Int8InnerProduct(M)
    model = _check(written[0])
    assert [i.name for i in model.graph.input] == ["q"] and [o.name for o in model.graph.output] == ["sims"]
    assert "MatMulInteger" in {n.op_type for n in model.graph.node}
    q = rng.standard_normal((3, 12)).astype(np.float32)
    np.testing.assert_allclose(ip(q), q @ M.T, atol=0.1)


@pytest.mark.parametrize("weighting", ["paper", "reference"])
def test_sw_head_graph_is_valid_onnx(written, weighting):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((80, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n = 600
    a, b = rng.integers(0, 4, n), rng.integers(0, 4, n)
    m = SWModel(emb, rng.integers(0, 80, n), a, b, rng.choice([0.0, 0.5, 1.0], n), 4, weighting=weighting)
    assert m._head is not None
    model = _check(written[-1])
    assert [o.name for o in model.graph.output] == ["W", "theta", "step", "sims"]
    # the contrib op the Newton steps use is declared in its own opset
    assert {o.domain for o in model.opset_import} == {"", "com.microsoft"}


def test_sw_head_graph_with_count_blocks_is_valid_onnx(written):
    """Prompts with disjoint battle patterns give several count blocks: Slice + Concat in the head."""
    rng = np.random.default_rng(3)
    n = 200
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    prompt = np.repeat(np.arange(n), 3)
    a = np.where(prompt < n // 2, 0, 2)  # the first half battles tiers 0 v 1, the second half 2 v 3
    m = SWModel(emb, prompt, a, a + 1, rng.choice([0.0, 0.5, 1.0], prompt.size), 4, weighting="paper")
    assert m._head is not None and len(m.blocks) == 2
    ops = {n.op_type for n in _check(written[-1]).graph.node}
    assert {"Slice", "Concat", "MatMulInteger", "Inverse"} <= ops


def test_a_name_defined_twice_is_refused():
    g = onnx_graph.OnnxGraph("twice")
    g.const("c", np.ones(2, np.float32))
    with pytest.raises(ValueError, match="twice: .c. is defined twice"):
        g.const("c", np.ones(2, np.float32))

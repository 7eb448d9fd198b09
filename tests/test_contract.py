"""The public router contract: a kind implements ``score`` (or ``score_embeddings`` on an encoder);
RouterSet, select and the base class use only public methods."""

from __future__ import annotations

import numpy as np
import pytest

import routekit
from routekit.router import EncoderRouter, Router, clip_win_rates


class _Half(Router):
    kind = "half"

    def score(self, prompts):
        return [0.5 + 0.01 * len(p) for p in prompts]


class _CountingEncoder:
    calls = 0

    def __call__(self, prompts, batch_size=64):
        type(self).calls += 1
        return np.array([[len(p), 1.0] for p in prompts], np.float32)


class _Head(EncoderRouter):
    kind = "head"

    def __init__(self):
        super().__init__()
        self.encoder = _CountingEncoder()

    def score_embeddings(self, embeddings, prompts):
        return 1 / (1 + np.exp(-(embeddings[:, 0] - 3)))


def test_a_kind_without_score_cannot_be_built():
    class NoScore(Router):
        kind = "none"

    with pytest.raises(TypeError, match="score"):
        NoScore()
    with pytest.raises(TypeError, match="score_embeddings"):
        type("NoHead", (EncoderRouter,), {"kind": "nohead"})()


def test_base_class_checks_clips_and_decides():
    r = _Half()
    rates = r.win_rates(["a", "b" * 80])
    assert rates.dtype == np.float64 and rates.tolist() == [0.51, 1.0]  # clipped to [0, 1]
    assert r.decide(0.7, 0.6).route == "strong" and r.decide(0.5, 0.6).route == "weak"
    assert r.decide(0.9, 0.6, forced=False).route == "weak"
    assert r.resolve_threshold(threshold=0.3) == (0.3, None)
    assert r.resolve_threshold(strong_fraction=1.0) == (0.0, True)
    with pytest.raises(routekit.BadInputError):
        r.resolve_threshold(threshold=0.3, strong_fraction=0.2)
    with pytest.raises(routekit.BadInputError, match="no per-model scores"):
        r.model_logits(["x"], ["strong", "weak"])
    assert clip_win_rates([np.nan, -1, 2]).tolist() == [0.5, 0.0, 1.0]


def test_router_set_runs_a_shared_encoder_once_per_batch(monkeypatch):
    a, b = _Head(), _Head()
    monkeypatch.setattr("routekit.router_set.RouterSet._encoder_key",
                        staticmethod(lambda r: ("same",) if isinstance(r, EncoderRouter) else None))
    _CountingEncoder.calls = 0
    rs = routekit.RouterSet([a, b, _Half()])
    out = rs.win_rates(["hi", "hello there"])
    assert _CountingEncoder.calls == 1
    np.testing.assert_allclose(out[0], a.win_rates(["hi", "hello there"]))
    np.testing.assert_allclose(out[2], _Half().win_rates(["hi", "hello there"]))
    assert [d.route for d in rs.route("hello there", threshold=0.5)] == ["strong", "strong", "strong"]

"""Similarity-weighted (SW) ranking router (RouteLLM paper, §4.1), exact and in milliseconds.

For a prompt ``q`` every training battle ``(prompt p, tier a, tier b, outcome)`` gets a weight from
the similarity ``s_p = cos(q, p)`` of ``q`` to the battle's prompt, and a Bradley–Terry model over
the model *tiers* is fitted to the weighted battles (ties count half a win each way)::

    paper:      ω_p = γ^(1 + s_p)                (RouteLLM paper)
    reference:  ω_p = γ^(1 + s_p / max_p' s_p')    (RouteLLM's code uses γ = 10: 10·10^(s/max s))

    P(strong wins | q) = σ(θ_strong_tier − θ_weak_tier)   (natural-log logits; the reference's
                                                        Elo 1/(1+10^(Δ/400)) is the same number)

The weighted log-likelihood depends on the battles only through the weighted win counts of every
ordered tier pair, ``W_ij = Σ_p ω_p C_p,ij``.  So the per-query refit that RouteLLM does with a
logistic regression over all battle rows is one similarity pass, one weighted sum of precomputed
per-prompt count matrices and a few Newton steps over ≤ 10 parameters: the same maximum-likelihood
estimate, not an approximation (``mode="exact"``).  A tiny relative ridge keeps θ finite when one
tier never loses (:mod:`.bradley_terry`).  Battles between models of the same tier carry no
information about tier differences and are left out.  (RouteLLM's design matrix writes ``−log 10``
for such rows, a quirk not reproduced here.)

``mode="fast"`` uses a FAISS index for the ``k`` most similar training prompts and accounts for the
rest without their individual similarities: for every tier pair it knows the exact remaining count
and, from precomputed sums ``M = Cᵀ E``, the exact *mean* similarity of the remaining battles; their
weight is that of the mean similarity with a second-order (Gaussian) correction from the exact
residual variance ``(qᵀ EᵀE q − Σ_topk s²)/n_rest − μ²``, capped at the weight of the k-th
similarity (no remaining prompt is more similar than that).  Its error is measured against exact.

Layout: :mod:`.bradley_terry` (the fit), :mod:`.graph` (exact mode's int8 onnxruntime graph),
:mod:`.model` (:class:`SWModel`, exact and fast), this module (the router).  How precise the int8
similarities are and what each path costs: docs/sw.md.

Pairs: any two models in the artifact's model table can be scored; they map to their tiers.  If both
models are in the *same* tier the SW model cannot tell them apart — every prompt then gets 0.5 and a
warning is issued at load time (use another router or another pair).

Artifact: ``sw.npz`` (no pickle) with ``embeddings`` (n_prompts × d, float32 or float16,
L2-normalised), ``battle_prompt`` (int32), ``tier_a``, ``tier_b`` (uint8), ``outcome`` (float32
1/0/0.5, or uint8 codes 2/0/1); ``sw.faiss``, the FAISS index fast mode searches (flat fp16, or
HNSW above 50k prompts; without one a flat index is built at load) — it only picks the
neighbours, whose similarities come from the embeddings; ``router.model_tiers`` maps model -> tier.
"""

from __future__ import annotations

import warnings

import numpy as np

from routekit._validate import short
from routekit.artifact.strict_json import MAX_MODELS
from routekit.encoders import encoder_from_manifest
from routekit.errors import BadArtifactError, BadInputError
from routekit.router import EncoderRouter
from routekit.routers.sw.bradley_terry import DEFAULT_RIDGE, bt_fit, pair_counts  # noqa: F401  (re-exported)
from routekit.routers.sw.model import DEFAULT_GAMMA, SWModel, check_options

__all__ = ["SWRouter", "SWModel", "bt_fit", "pair_counts", "check_options"]


# --------------------------------------------------------------------------- router


class SWRouter(EncoderRouter):
    """SW ranking router.  Options (``routekit.load(path, ...)``):

    * ``mode``: ``"exact"`` (all training prompts; the default unless the manifest's ``router.mode``
      says ``"fast"``) or ``"fast"`` (FAISS top-``k`` plus the moment-matched remainder, see the
      module docstring; docs/sw.md says when it is accurate);
    * ``precision``: exact mode's similarity pass, ``"int8"`` (default; onnxruntime integer GEMM over
      int8 prompt embeddings) or ``"float32"`` (faiss / BLAS over the stored embeddings);
    * ``k``: prompts searched in fast mode (default: the artifact's ``router.k`` or 256);
    * ``weighting`` (``"paper"``/``"reference"``), ``gamma``, ``ridge``: override the artifact's
      choice (the calibration table then no longer matches: pass ``threshold=``).
    """

    has_model_scores = True

    kind = "sw"
    needs_router_section = True
    needs_encoder = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.listed_file(r.get("data", "sw.npz"), "router.data")
        tiers = c.integer(r.get("tiers"), "router.tiers", lo=1, hi=1000, optional=True)
        mt = c.obj(r.get("model_tiers"), "router.model_tiers")
        if not mt:
            c.fail("router.model_tiers", "must give each model a tier")
        if len(mt) > MAX_MODELS:
            c.fail("router.model_tiers", f"has {len(mt):,} entries")
        for m, t in mt.items():
            c.integer(t, f"router.model_tiers[{m!r}]", lo=0, hi=(tiers - 1) if tiers else 999)
        for m in models or []:
            if m not in mt:
                c.fail("router.model_tiers", f"has no tier for model {m!r}")
        w = r.get("weighting")
        if w is not None and w not in ("paper", "reference"):
            c.fail("router.weighting", f"must be 'paper' or 'reference', got {short(w)}")
        c.number(r.get("gamma"), "router.gamma", lo=0.0, hi=1e300, lo_open=True, optional=True)
        c.number(r.get("ridge"), "router.ridge", lo=0.0, hi=1e6, optional=True)
        c.integer(r.get("k"), "router.k", lo=1, hi=1 << 31, optional=True)
        if r.get("mode") not in (None, "exact", "fast"):
            c.fail("router.mode", f"must be 'exact' or 'fast', got {short(r.get('mode'))}")
        index = c.obj(r.get("index"), "router.index", optional=True)
        if index:
            c.listed_file(index.get("file"), "router.index.file")
            c.integer(index.get("efSearch"), "router.index.efSearch", lo=1, hi=1 << 20, optional=True)


    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None,
                 mode: str | None = None, k: int | None = None, weighting: str | None = None,
                 gamma: float | None = None, ridge: float | None = None, remainder: str = "moments",
                 precision: str = "int8"):
        super().__init__(manifest, strong=strong, weak=weak)
        spec = manifest["router"]
        data = manifest.array(spec.get("data", "sw.npz"))
        if not isinstance(data, dict):
            raise BadArtifactError(f"{manifest.folder}: router.data must be an .npz archive")
        try:
            emb, bp, ta, tb, oc = (data[k_] for k_ in ("embeddings", "battle_prompt", "tier_a", "tier_b", "outcome"))
            self.model_tiers: dict[str, int] = {str(m): int(t) for m, t in spec["model_tiers"].items()}
            n_tiers = int(spec.get("tiers", max(self.model_tiers.values()) + 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadArtifactError(f"{manifest.folder}: SW artifact lacks {exc}") from exc
        missing = [m for m in self.models if m not in self.model_tiers]
        if missing:
            raise BadArtifactError(f"{manifest.folder}: models without a tier: {', '.join(missing[:5])}")
        dim = (manifest.get("encoder") or {}).get("dim")
        if emb.ndim != 2:
            raise BadArtifactError(f"{manifest.folder}: embeddings have shape {emb.shape}, expected (prompts × dim)")
        if dim and emb.shape[1] != int(dim):
            raise BadArtifactError(f"{manifest.folder}: embeddings are {emb.shape[1]}-d, encoder gives {dim}")
        # the caller's options are input errors, not artifact errors: check them before SWModel
        mode = mode or spec.get("mode", "exact")  # the artifact's default mode
        check_options(weighting=weighting, gamma=gamma, mode=mode, remainder=remainder, precision=precision, k=k)
        self.mode = mode
        index = None
        if mode == "fast" and spec.get("index"):
            import faiss

            path = manifest.path(spec["index"]["file"])
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:  # faiss's error for a damaged file
                raise BadArtifactError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from None
            if "efSearch" in spec["index"] and hasattr(index, "hnsw"):
                index.hnsw.efSearch = int(spec["index"]["efSearch"])
        try:
            self.sw = SWModel(emb, bp, ta, tb, oc, n_tiers,
                              weighting=weighting or spec.get("weighting", "paper"),
                              gamma=gamma if gamma is not None else spec.get("gamma", DEFAULT_GAMMA),
                              ridge=ridge if ridge is not None else spec.get("ridge", DEFAULT_RIDGE),
                              mode=mode, k=k or spec.get("k"), index=index, remainder=remainder,
                              precision=precision, threads=threads)
        except BadInputError as exc:
            raise BadArtifactError(f"{manifest.folder}: invalid SW data ({exc})") from exc
        self._overridden = any(v is not None for v in (weighting, gamma, ridge))
        self.strong_tier = self.model_tiers[self.strong_model]
        self.weak_tier = self.model_tiers[self.weak_model]
        if self.strong_tier == self.weak_tier:
            warnings.warn(f"SW router {self.name!r}: {self.strong_model} and {self.weak_model} are both in tier "
                          f"{self.strong_tier}; SW ranks tiers, so every prompt gets win rate 0.5 for this pair",
                          stacklevel=3)
        self.encoder = encoder_from_manifest(manifest, providers=providers, threads=threads)

    @property
    def calibration(self):
        return None if self._overridden else super().calibration

    @property
    def prob_map(self):
        return None if self._overridden else super().prob_map

    def tier_of(self, model: str) -> int:
        """Tier of a model (0 = lowest rated)."""
        return self.model_tiers[self.canonical(model)]

    def tier_ratings(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-prompt BT strengths of every tier (natural-log logits) from prompt embeddings."""
        return self.sw.tier_ratings(embeddings)

    def model_logits(self, prompts, models) -> np.ndarray:
        """BT strength ``(n, m)`` of each model's tier per prompt (N-model ranking, routekit.select)."""
        tiers = [self.tier_of(m) for m in models]
        return self.tier_ratings(self.encoder(list(prompts)))[:, tiers]

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Win rates from precomputed prompt embeddings (n × d)."""
        return self.sw.scores(embeddings, self.strong_tier, self.weak_tier)

    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.scores(embeddings)

    def explain(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None,
                top: int = 8):
        """The ``top`` training prompts that weigh most in this prompt's Bradley–Terry fit (by index:
        the artifact stores embeddings, not text), their similarity, share of the weight and the
        battles between the pair's tiers on them; the tiers' fitted strengths; the threshold in
        force: a :class:`routekit.control.explain.Explanation`."""
        from routekit._validate import as_prompt
        from routekit.control.explain import Neighbour, build, check_top

        top = check_top(top)
        q = np.asarray(self.encoder([as_prompt(prompt)]), np.float32)
        raw = float(self.scores(q)[0])
        m = self.sw
        sims = (m.E @ q[0]).astype(np.float64)
        w = np.exp(m._log_weights(sims, sims.max(initial=0.0)))
        w /= w.sum() or 1.0
        if "_explain_counts" not in self.__dict__:  # per prompt: strong-tier wins, weak-tier wins, all battles
            T, s_, w_ = m.T, self.strong_tier, self.weak_tier
            self.__dict__["_explain_counts"] = (_prompt_counts(m, s_ * T + w_), _prompt_counts(m, w_ * T + s_),
                                                _prompt_counts(m, None))
        sw_wins, ww_wins, total = self.__dict__["_explain_counts"]
        best = np.argsort(-w)[:top]
        near = [Neighbour(int(i), float(sims[i]), float(w[i]), float(sw_wins[i]), float(ww_wins[i]),
                          float(total[i])) for i in best]
        theta = m.tier_ratings(q)[0]
        return build(self, raw, threshold=threshold, strong_fraction=strong_fraction,
                     logit=float(theta[self.strong_tier] - theta[self.weak_tier]), neighbours=near,
                     detail={"strong tier": self.strong_tier, "weak tier": self.weak_tier,
                             "tier strengths": {str(t): round(float(x), 4) for t, x in enumerate(theta)},
                             f"weight of the top {len(best)}": float(w[best].sum()),
                             "prompts with pair battles": int((sw_wins + ww_wins > 0).sum()),
                             "weight on prompts with pair battles": float(w[(sw_wins + ww_wins) > 0].sum())})

    def score(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros(0)
        return self.scores(self.encoder(prompts))


def _prompt_counts(m: SWModel, pair: int | None) -> np.ndarray:
    """Per training prompt: wins of the ordered tier pair ``pair`` (i*T+j: i over j), or with None every
    cross-tier battle (its outcomes sum to 1)."""
    out = np.zeros(m.n_prompts)
    if pair is not None:
        j = int(np.searchsorted(m.pairs, pair))
        if j >= m.pairs.size or m.pairs[j] != pair:
            return out
    if m.dense:
        return m.C.sum(axis=1) if pair is None else np.asarray(m.C[:, j], np.float64).copy()
    if pair is None:
        return np.bincount(m.ent_prompt, weights=m.ent_count, minlength=m.n_prompts)
    end = m.starts[j + 1] if j + 1 < m.pairs.size else m.ent_prompt.size
    np.add.at(out, m.ent_prompt[m.starts[j]:end], m.ent_count[m.starts[j]:end])
    return out

"""Matrix-factorisation router (RouteLLM paper, §4).

    δ(M, q) = w₂ᵀ (v_M ⊙ (W₁ v_q + b))          P(strong wins) = σ(δ(strong, q) − δ(weak, q))

For a fixed pair this is a dot product of the prompt embedding with one vector plus a constant,
so the encoder is the whole cost.  Weights live in ``mf.npz`` (no pickle): ``model_emb``
(n_models × h), ``proj_w`` (h × d), ``proj_b`` (h), ``head`` (h).
"""

from __future__ import annotations

import numpy as np

from routekit.artifact.strict_json import MAX_DIM
from routekit.encoders import encoder_from_manifest
from routekit.errors import BadArtifactError, BadInputError
from routekit.router import EncoderRouter


class MFRouter(EncoderRouter):
    kind = "mf"

    needs_router_section = True
    needs_encoder = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.listed_file(r.get("weights", "mf.npz"), "router.weights")
        c.integer(r.get("hidden"), "router.hidden", lo=1, hi=MAX_DIM, optional=True)
    has_model_scores = True

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None):
        super().__init__(manifest, strong=strong, weak=weak)
        spec = manifest["router"]
        w = manifest.array(spec.get("weights", "mf.npz"))
        if not isinstance(w, dict):
            raise BadArtifactError(f"{manifest.folder}: router.weights must be an .npz archive")
        try:
            model_emb, proj_w, proj_b, head = (np.asarray(w[k], dtype=np.float64)
                                               for k in ("model_emb", "proj_w", "proj_b", "head"))
        except (KeyError, TypeError) as exc:
            raise BadArtifactError(f"{manifest.folder}: mf weights lack array {exc}") from exc
        where = manifest.path(spec.get("weights", "mf.npz"))
        if model_emb.ndim != 2 or model_emb.shape[0] != len(self.models):
            raise BadArtifactError(f"{where}: model_emb has shape {model_emb.shape}, expected "
                                   f"({len(self.models)} models in the manifest, hidden)")
        h = model_emb.shape[1]
        dim = manifest["encoder"].get("dim")
        for name, a, want in (("proj_w", proj_w, (h, dim if dim is not None else proj_w.shape[-1])),
                              ("proj_b", proj_b, (h,)), ("head", head, (h,))):
            if a.shape != want:
                raise BadArtifactError(f"{where}: {name} has shape {a.shape}, expected {want}")
        self._weights = (model_emb, proj_w, proj_b, head)
        self.encoder = encoder_from_manifest(manifest, providers=providers, threads=threads)
        self._u, self._c = self.pair_vector(self.strong_model, self.weak_model)

    def pair_vector(self, strong: str, weak: str) -> tuple[np.ndarray, float]:
        """(u, c) such that logit P(strong beats weak | q) = u·v_q + c."""
        model_emb, proj_w, proj_b, head = self._weights
        idx = {m: i for i, m in enumerate(self.models)}
        a = (model_emb[idx[strong]] - model_emb[idx[weak]]) * head  # (h,)
        return a @ proj_w, float(a @ proj_b)

    def model_logits(self, prompts, models) -> np.ndarray:
        """δ(model, prompt) ``(n, m)`` for models of the table (N-model ranking, routekit.select)."""
        model_emb, proj_w, proj_b, head = self._weights
        idx = {m: i for i, m in enumerate(self.models)}
        a = model_emb[[idx[self.canonical(m)] for m in models]] * head  # (m, h)
        return self.encoder(list(prompts)).astype(np.float64) @ (a @ proj_w).T + a @ proj_b

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Win rates from precomputed prompt embeddings (n × d).

        A row-wise float64 product, not BLAS matrix-vector (float32 GEMV kernels change the result
        by ~6e-8 with the batch size): a prompt's win rate never depends on its batch-mates."""
        emb = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
        if emb.shape[1] != self._u.shape[0]:
            raise BadInputError(f"embeddings are {emb.shape[1]}-d, the MF head takes {self._u.shape[0]}")
        logits = (emb * self._u).sum(axis=1) + self._c
        return 1.0 / (1.0 + np.exp(-logits))

    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.scores(embeddings)

    def explain(self, prompt: str, *, threshold: float | None = None, strong_fraction: float | None = None,
                top: int = 5):
        """The model-pair projection behind the win rate (``logit = u·v_q + c``: the prompt's projection
        on the strong-minus-weak direction ``u`` and the pair constant), the cosine of the prompt to
        ``u``, both models' scores and the ``top`` models of the table on this prompt, plus the
        threshold in force: a :class:`routekit.control.explain.Explanation`."""
        from routekit._validate import as_prompt
        from routekit.control.explain import Contribution, build, check_top

        top = check_top(top)
        v = np.asarray(self.encoder([as_prompt(prompt)]), np.float64).reshape(-1)
        proj = float(v @ self._u)
        model_emb, proj_w, proj_b, head = self._weights
        delta = (model_emb * head) @ (proj_w @ v) + (model_emb * head) @ proj_b  # δ(model, prompt), every model
        idx = {m: i for i, m in enumerate(self.models)}
        best = np.argsort(-delta)[:top]
        norm = float(np.linalg.norm(self._u) * np.linalg.norm(v)) or 1.0
        parts = (Contribution("prompt projection u·v", "pair", proj),
                 Contribution("pair constant c", "pair", self._c))
        return build(self, 1.0 / (1.0 + np.exp(-(proj + self._c))), threshold=threshold, strong_fraction=strong_fraction,
                     logit=proj + self._c, contributions=parts,
                     detail={"cosine(prompt, u)": proj / norm, "|u|": float(np.linalg.norm(self._u)),
                             "score of strong": float(delta[idx[self.strong_model]]),
                             "score of weak": float(delta[idx[self.weak_model]]),
                             "top models": {self.models[i]: round(float(delta[i]), 4) for i in best}})


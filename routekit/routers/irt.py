"""Item-response router (kind ``irt``): each of your models' quality per prompt, on top of the default's prior.

Written by ``routekit-export fit`` (the model and the fit: ``export/irt.py``).  For model ``m`` of the
artifact's table and prompt ``q``::

    θ_m(q) = c_m + α_m·(d(q) − d_mean) / d_std + w_mᵀ v_q

``d(q)`` is the logit of the prior's P(strong wins): the default linear router, whose weights the
artifact carries (``prior.npz``, its router section under ``router.prior``) and which runs here as a
:class:`~routekit.routers.linear.LinearRouter` on the same embedding; ``v_q`` is the encoder's
embedding; ``w_m = a_m·u + v_m`` and ``c_m`` fold the fitted shared direction, residual and embedding
mean in at load.  ``σ(θ_m)`` is the predicted quality of a model fitted on quality labels; the pair's
win rate is ``(1 + σ(θ_s) − σ(θ_w)) / 2`` (for independent right/wrong outcomes: P(only the strong
one is right) + ½ P(tie)), or ``σ(θ_s − θ_w)`` when one of the two was fitted on battles only.  Any
two models of the table can be the pair; :meth:`model_logits` and :meth:`model_quality` serve
``rank`` / ``select`` (and the server's ``router-<name>-auto``).  numpy on top of the encoder.
"""

from __future__ import annotations

import numpy as np

from routekit.artifact.manifest import Manifest
from routekit.errors import BadArtifactError
from routekit.numeric import logit, sigmoid
from routekit.router import EncoderRouter
from routekit.routers.linear import LinearRouter

ARRAYS = ("b", "alpha", "a", "u", "V", "absolute", "x_mean", "d_norm")


class IRTRouter(EncoderRouter):
    kind = "irt"
    has_model_scores = True
    needs_router_section = True
    needs_encoder = True

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.listed_file(r.get("weights", "irt.npz"), "router.weights")
        prior = c.obj(r.get("prior"), "router.prior")
        pair = c.obj(prior.get("pair"), "router.prior.pair")
        for side in ("strong", "weak"):
            if not isinstance(pair.get(side), str) or not pair[side]:
                c.fail(f"router.prior.pair.{side}", "must be a model name")
        LinearRouter.check_section(c, c.obj(prior.get("router"), "router.prior.router"), data, None)

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None):
        super().__init__(manifest, strong=strong, weak=weak)
        spec = manifest["router"]
        rel = spec.get("weights", "irt.npz")
        where = manifest.path(rel)
        w = manifest.array(rel)
        if not isinstance(w, dict):
            raise BadArtifactError(f"{where}: router.weights must be an .npz archive")
        try:
            b, alpha, a, u, V, absolute, x_mean, d_norm = (np.asarray(w[k], np.float64) for k in ARRAYS)
        except KeyError as exc:
            raise BadArtifactError(f"{where}: irt weights lack array {exc}") from exc
        M, dim = len(self.models), u.shape[0] if u.ndim == 1 else -1
        if (any(x.shape != (M,) for x in (b, alpha, a, absolute)) or dim != int(manifest["encoder"].get("dim", dim))
                or V.shape != (M, dim) or x_mean.shape != (dim,) or d_norm.shape != (2,) or not d_norm[1] > 0):
            raise BadArtifactError(f"{where}: irt weights do not fit {M} models and the encoder (b {b.shape}, "
                                   f"alpha {alpha.shape}, a {a.shape}, absolute {absolute.shape}, u {u.shape}, "
                                   f"V {V.shape}, x_mean {x_mean.shape}, d_norm {d_norm.tolist()})")
        self.W = np.outer(a, u) + V  # (M, dim)
        self.alpha = alpha / d_norm[1]
        self.c = b - self.W @ x_mean - self.alpha * d_norm[0]
        self.absolute = absolute > 0.5
        self._col = {m: i for i, m in enumerate(self.models)}
        self.prior = LinearRouter(self._prior_manifest(manifest), providers=providers, threads=threads)
        self.encoder = self.prior.encoder
        self._pair = [self._col[self.strong_model], self._col[self.weak_model]]

    @staticmethod
    def _prior_manifest(manifest) -> Manifest:
        """The prior's own view of this folder: a linear artifact whose weights are ``prior.npz``."""
        prior = manifest["router"]["prior"]
        data = {**manifest.data, "kind": "linear", "name": f"{manifest.name} (prior)", "router": prior["router"],
                "pair": prior["pair"], "models": [prior["pair"]["strong"], prior["pair"]["weak"]], "aliases": {}}
        data.pop("calibration", None)
        return Manifest(data, manifest.folder, manifest.verified)

    # -- per-model scores -----------------------------------------------------------------------
    def prior_logits(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        """d(q): logit of the prior's P(strong wins)."""
        return logit(self.prior.score_embeddings(embeddings, prompts))

    def theta(self, embeddings: np.ndarray, prompts: list[str], cols: list[int]) -> np.ndarray:
        """θ ``(n, len(cols))``: row-wise products, so a prompt's scores never depend on its batch-mates."""
        emb = np.asarray(embeddings, np.float64).reshape(len(prompts), -1)
        d = self.prior_logits(emb, prompts)
        return self.c[cols] + np.outer(d, self.alpha[cols]) + (emb[:, None, :] * self.W[cols][None]).sum(axis=2)

    def _cols(self, models) -> list[int]:
        return [self._col[self.canonical(m)] for m in models]

    def _theta(self, prompts, models) -> np.ndarray:
        prompts, cols = list(prompts), self._cols(models)
        if not prompts:
            return np.zeros((0, len(cols)))
        return self.theta(self.encoder(prompts), prompts, cols)

    def model_logits(self, prompts, models) -> np.ndarray:
        """θ(model, prompt) ``(n, m)``, with P(a beats b) = σ(θ_a − θ_b) (``routekit.select``)."""
        return self._theta(prompts, models)

    def model_quality(self, prompts, models) -> np.ndarray | None:
        """Predicted quality σ(θ) ``(n, m)`` of models fitted on quality labels (``None`` if one of
        ``models`` was fitted on battles only: its θ has no absolute level)."""
        if not self.absolute[self._cols(models)].all():
            return None
        return sigmoid(self._theta(prompts, models))

    # -- the pair -------------------------------------------------------------------------------
    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        t = self.theta(embeddings, prompts, self._pair)
        if self.absolute[self._pair].all():
            return 0.5 * (1.0 + sigmoid(t[:, 0]) - sigmoid(t[:, 1]))
        return sigmoid(t[:, 0] - t[:, 1])

    def score(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros(0)
        return self.score_embeddings(self.encoder(prompts), prompts)

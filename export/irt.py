"""Item-response fit of *your* models on top of what routekit already knows (artifact kind ``irt``).

Per model ``m`` and prompt ``q`` one score on a logit scale::

    θ_m(q) = b_m + α_m·d(q) + a_m·(u·x(q)) + v_m·x(q)

* ``d(q)``: the **prior** -- the shipped default router's logit of P(strong wins), standardised over
  the labelled prompts.  It is the only thing the fit knows about a prompt before any label.
* ``x(q)``: the prompt's embedding (the default's encoder), centred on the labelled prompts.
* ``u``: a *shared* direction in embedding space (a learned difficulty), every model reading it with
  its own discrimination ``a_m``; ``v_m``: a per-model residual.  Both are ridge-penalised
  (``lam_u``, ``lam_v``) on a *summed* log-loss, so the labels move them only as far as they
  support: the penalty's weight falls as 1 / (label count).
* ``b_m``, ``α_m``, ``a_m``: Gaussian priors (``tau_b``, ``tau_alpha``, ``tau_a``) around
  ``b = 0``, ``a = 1`` and ``α = +½`` for the strong model of the pair, ``−½`` for the weak one,
  ``0`` for the others.

Labels: a quality ``y ∈ [0, 1]`` of model ``m`` on ``q`` is Bernoulli(σ(θ_m(q))); a battle of ``a``
against ``b`` (winner / loser / tie = 1 / 0 / ½) is Bradley-Terry, σ(θ_a(q) − θ_b(q)), on the same
scores.  Predicted quality of ``m`` = σ(θ_m(q)) (models with quality labels) and, for a strong/weak
pair, P(strong wins) = (1 + σ(θ_s) − σ(θ_w)) / 2 -- for independent 0/1 outcomes, P(strong right
and weak wrong) + ½ P(tie) -- or σ(θ_s − θ_w) when one of the two has battle labels only.

**With no labels the pair's scores rank prompts exactly as the default does** (θ_s − θ_w = d and
σ(d/2)-σ(-d/2) are increasing in d).  The fit is convex apart from ``a_m·u`` (L-BFGS from
``u = 0``), numpy only; :func:`add_model` fits one more model with ``u`` fixed and every other model
untouched.

Hyper-parameters: :data:`PAIR_CONFIG` for a strong/weak pair (chosen while building this on the
public pairs of ``bench/own_models.py`` -- all of them were looked at -- where cross-validating the
penalties on a few hundred pair labels did worse than a fixed prior: the out-of-fold signal of a
gain ranking is that noisy);
with :data:`GRID_MIN_MODELS` or more models the fit picks one of :data:`GRID` by cross-validated
log-loss on the labels (:func:`choose_config`).  Artifacts: ``export/irt_build.py``; runtime:
``routekit/routers/irt.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from routekit.numeric import sigmoid  # also T.sigmoid for irt_build and the tests

#: From this many models on, the fit cross-validates the penalties; a pair uses PAIR_CONFIG.
GRID_MIN_MODELS = 3


@dataclass(frozen=True)
class IRTConfig:
    lam_u: float = 3.0  # ridge on the shared direction u (inf: no shared direction)
    lam_v: float = 3.0  # ridge on each model's residual v_m (inf: none)
    tau_a: float = 1.0  # prior sd of the discriminations a_m around 1
    tau_alpha: float = 1.0  # prior sd of α_m around α0 (±½ for the pair, 0 else)
    tau_b: float = 3.0  # prior sd of the intercepts b_m around 0

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> IRTConfig:
        return cls(**{k: (math.inf if v is None else float(v)) for k, v in d.items() if k in cls.__dataclass_fields__})


#: A strong/weak pair: α held near the default's direction (tau_alpha 0.25 around ±½ on the
#: standardised prior), a shared direction and residuals ridge-penalised on the summed log-loss.
PAIR_CONFIG = IRTConfig(10.0, 3.0, tau_a=1.0, tau_alpha=0.25)
INF = math.inf
GRID = (PAIR_CONFIG, IRTConfig(3.0, 3.0, tau_a=0.25), IRTConfig(10.0, 3.0, tau_a=0.25),
        IRTConfig(10.0, 10.0, tau_a=0.25), IRTConfig(30.0, 10.0, tau_a=0.25), IRTConfig(INF, 3.0),
        IRTConfig(INF, 10.0))


@dataclass
class Observations:
    """Labels as index arrays: qualities (prompt, model, y) and battles (prompt, a, b, outcome of a)."""

    q_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    q_model: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    q_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    b_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    b_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    b_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    b_o: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        for k in ("q_prompt", "q_model", "b_prompt", "b_a", "b_b"):
            setattr(self, k, np.asarray(getattr(self, k), np.int64).reshape(-1))
        self.q_y = np.asarray(self.q_y, np.float64).reshape(-1)
        self.b_o = np.asarray(self.b_o, np.float64).reshape(-1)

    def subset(self, prompts_mask: np.ndarray) -> Observations:
        """Only the labels of prompts where ``prompts_mask`` is True."""
        q, b = prompts_mask[self.q_prompt], prompts_mask[self.b_prompt]
        return Observations(self.q_prompt[q], self.q_model[q], self.q_y[q], self.b_prompt[b], self.b_a[b],
                            self.b_b[b], self.b_o[b])

    def models(self, wanted) -> Observations:
        """Only labels among the models in ``wanted`` (a bool mask over model ids)."""
        q = wanted[self.q_model]
        b = wanted[self.b_a] & wanted[self.b_b]
        return Observations(self.q_prompt[q], self.q_model[q], self.q_y[q], self.b_prompt[b], self.b_a[b],
                            self.b_b[b], self.b_o[b])

    @property
    def prompts(self) -> np.ndarray:
        return np.unique(np.concatenate([self.q_prompt, self.b_prompt]))

    def __len__(self) -> int:
        return int(self.q_y.size + self.b_o.size)


@dataclass
class IRTParams:
    models: list
    b: np.ndarray
    alpha: np.ndarray
    a: np.ndarray  # (M,) discriminations of the shared direction (ones when there is none)
    u: np.ndarray  # (D,) shared direction (zeros when there is none)
    V: np.ndarray  # (M, D) per-model residuals
    absolute: np.ndarray  # (M,) bool: the model has quality labels (σ(θ) is its predicted quality)

    def theta(self, d: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(n, M) scores for standardised priors ``d`` (n,) and centred embeddings ``X`` (n, D)."""
        W = self.weights()
        return self.b + np.outer(d, self.alpha) + np.einsum("nd,md->nm", X, W)

    def weights(self) -> np.ndarray:
        """Per-model embedding weights a_m·u + v_m (M, D)."""
        return np.outer(self.a, self.u) + self.V


def _log1pexp(x):
    return np.logaddexp(0.0, x)


def lbfgs(f, x0: np.ndarray, *, m: int = 10, iters: int = 500, tol: float = 1e-5) -> np.ndarray:
    """Minimise a smooth function ``f(x) -> (value, gradient)`` (L-BFGS, backtracking line search)."""
    x = np.array(x0, np.float64)
    fx, g = f(x)
    g0 = float(np.abs(g).max()) + 1e-12
    S: list = []
    Y: list = []
    for _ in range(iters):
        q = g.copy()
        hist = []
        for s, y in reversed(list(zip(S, Y))):
            rho = 1.0 / float(y @ s)
            al = rho * float(s @ q)
            q -= al * y
            hist.append((rho, al, s, y))
        if S:
            q *= float(S[-1] @ Y[-1]) / float(Y[-1] @ Y[-1])
        for rho, al, s, y in reversed(hist):
            q += (al - rho * float(y @ q)) * s
        p = -q
        gp = float(g @ p)
        if gp >= 0:  # not a descent direction: restart from the gradient
            p, gp, S, Y = -g, -float(g @ g), [], []
        t = 1.0
        while True:
            xn = x + t * p
            fn, gn = f(xn)
            if fn <= fx + 1e-4 * t * gp or t < 1e-12:
                break
            t *= 0.5
        s, y = xn - x, gn - g
        if float(y @ s) > 1e-12:
            S.append(s)
            Y.append(y)
            if len(S) > m:
                S.pop(0)
                Y.pop(0)
        fprev = fx
        x, fx, g = xn, fn, gn
        if float(np.abs(g).max()) <= tol * g0 or abs(fprev - fx) <= 1e-12 * max(1.0, abs(fx)):
            break
    return x


def prior_alpha(models: list, strong: str | None, weak: str | None) -> np.ndarray:
    """α0: +½ for the pair's strong model, −½ for its weak one, 0 for every other model."""
    out = np.zeros(len(models))
    if strong in models:
        out[models.index(strong)] = 0.5
    if weak in models:
        out[models.index(weak)] = -0.5
    return out


def fit(d: np.ndarray, X: np.ndarray, obs: Observations, models: list, cfg: IRTConfig = PAIR_CONFIG, *,
        alpha0: np.ndarray | None = None, iters: int = 500) -> IRTParams:
    """Maximum a-posteriori parameters for the labels ``obs`` (prompt indices into ``d`` / ``X``)."""
    M, D = len(models), X.shape[1]
    alpha0 = np.zeros(M) if alpha0 is None else np.asarray(alpha0, np.float64)
    use_u, use_v = math.isfinite(cfg.lam_u), math.isfinite(cfg.lam_v)
    rows = obs.prompts
    remap = np.full(len(d), -1)
    remap[rows] = np.arange(rows.size)
    qp, bp = remap[obs.q_prompt], remap[obs.b_prompt]
    Xr, dr = np.asarray(X, np.float64)[rows], np.asarray(d, np.float64)[rows]
    sizes = [M, M, M if use_u else 0, D if use_u else 0, M * D if use_v else 0]
    cut = np.cumsum([0] + sizes)

    def unpack(v):
        b, al = v[cut[0]:cut[1]], v[cut[1]:cut[2]]
        a = v[cut[2]:cut[3]] if use_u else np.ones(M)
        u = v[cut[3]:cut[4]] if use_u else np.zeros(D)
        V = v[cut[4]:cut[5]].reshape(M, D) if use_v else np.zeros((M, D))
        return b, al, a, u, V

    def f(v):
        b, al, a, u, V = unpack(v)
        h = Xr @ u
        T = b + np.outer(dr, al) + np.outer(h, a) + (Xr @ V.T if use_v else 0.0)
        G = np.zeros_like(T)
        loss = 0.0
        if qp.size:
            th = T[qp, obs.q_model]
            loss += float(np.sum(_log1pexp(th) - obs.q_y * th))
            np.add.at(G, (qp, obs.q_model), sigmoid(th) - obs.q_y)
        if bp.size:
            z = T[bp, obs.b_a] - T[bp, obs.b_b]
            loss += float(np.sum(_log1pexp(z) - obs.b_o * z))
            r = sigmoid(z) - obs.b_o
            np.add.at(G, (bp, obs.b_a), r)
            np.add.at(G, (bp, obs.b_b), -r)
        loss += 0.5 * float(np.sum(b ** 2)) / cfg.tau_b ** 2 + 0.5 * float(np.sum((al - alpha0) ** 2)) / cfg.tau_alpha ** 2
        parts = [G.sum(0) + b / cfg.tau_b ** 2, G.T @ dr + (al - alpha0) / cfg.tau_alpha ** 2]
        if use_u:
            loss += 0.5 * float(np.sum((a - 1.0) ** 2)) / cfg.tau_a ** 2 + 0.5 * cfg.lam_u * float(u @ u)
            parts += [G.T @ h + (a - 1.0) / cfg.tau_a ** 2, Xr.T @ (G @ a) + cfg.lam_u * u]
        if use_v:
            loss += 0.5 * cfg.lam_v * float(np.sum(V * V))
            parts.append((G.T @ Xr + cfg.lam_v * V).ravel())
        return loss, np.concatenate(parts)

    v0 = np.concatenate([np.zeros(M), alpha0] + ([np.ones(M), np.zeros(D)] if use_u else [])
                        + ([np.zeros(M * D)] if use_v else []))
    b, al, a, u, V = unpack(lbfgs(f, v0, iters=iters) if len(obs) else v0)
    absolute = np.zeros(M, bool)
    absolute[np.unique(obs.q_model)] = True
    return IRTParams(list(models), b.copy(), al.copy(), a.copy(), u.copy(), V.copy(), absolute)


def prior_params(models: list, dim: int, strong: str, weak: str) -> IRTParams:
    """The zero-label model: the pair's difference is the default's score, nothing else is known."""
    M = len(models)
    return IRTParams(list(models), np.zeros(M), prior_alpha(models, strong, weak), np.ones(M), np.zeros(dim),
                     np.zeros((M, dim)), np.zeros(M, bool))


def add_model(params: IRTParams, name: str, d: np.ndarray, X: np.ndarray, obs: Observations,
              cfg: IRTConfig = PAIR_CONFIG, *, iters: int = 500) -> IRTParams:
    """``params`` with one more model fitted on ``obs`` (model ids: the existing models' indices, the
    new one = ``len(params.models)``); the shared direction and every existing model stay as they are."""
    M, D = len(params.models), X.shape[1]
    new = M
    mine_q = obs.q_model == new
    mine_b = (obs.b_a == new) ^ (obs.b_b == new)
    if not mine_q.any() and not mine_b.any():
        raise ValueError(f"no label of {name!r}")
    Xd, dd = np.asarray(X, np.float64), np.asarray(d, np.float64)
    th_old = params.theta(dd, Xd)  # (n, M)
    h = Xd @ params.u
    use_v = math.isfinite(cfg.lam_v)
    qp, qy = obs.q_prompt[mine_q], obs.q_y[mine_q]
    bp, ba, bb, bo = (x[mine_b] for x in (obs.b_prompt, obs.b_a, obs.b_b, obs.b_o))
    sign = np.where(ba == new, 1.0, -1.0)  # z = sign·θ_new − sign·θ_other
    other = np.where(ba == new, bb, ba)
    off = -sign * th_old[bp, other]
    has_u = bool(np.any(params.u != 0))
    b0 = float(np.mean(params.b)) if M else 0.0

    def feats(rows):
        cols = [np.ones(rows.size), dd[rows]] + ([h[rows]] if has_u else [])
        return np.column_stack(cols), Xd[rows]

    Fq, Xq = feats(qp)
    Fb, Xb = feats(bp)
    k = Fq.shape[1]
    mean = np.array([b0, 0.0] + ([1.0] if has_u else []))
    prec = np.array([1.0 / cfg.tau_b ** 2, 1.0 / cfg.tau_alpha ** 2] + ([1.0 / cfg.tau_a ** 2] if has_u else []))

    def f(v):
        w, r = v[:k], (v[k:] if use_v else np.zeros(D))
        loss = 0.5 * float(np.sum(prec * (w - mean) ** 2)) + (0.5 * cfg.lam_v * float(r @ r) if use_v else 0.0)
        gw = prec * (w - mean)
        gr = cfg.lam_v * r if use_v else None
        if qp.size:
            th = Fq @ w + Xq @ r
            loss += float(np.sum(_log1pexp(th) - qy * th))
            e = sigmoid(th) - qy
            gw = gw + Fq.T @ e
            if use_v:
                gr = gr + Xq.T @ e
        if bp.size:
            z = sign * (Fb @ w + Xb @ r) + off
            loss += float(np.sum(_log1pexp(z) - bo * z))
            e = (sigmoid(z) - bo) * sign
            gw = gw + Fb.T @ e
            if use_v:
                gr = gr + Xb.T @ e
        return loss, np.concatenate([gw, gr]) if use_v else gw

    v = lbfgs(f, np.concatenate([mean, np.zeros(D if use_v else 0)]), iters=iters)
    w = v[:k]
    a_new = float(w[2]) if has_u else 1.0
    v_new = v[k:] if use_v else np.zeros(D)
    return IRTParams(params.models + [name], np.append(params.b, w[0]), np.append(params.alpha, w[1]),
                     np.append(params.a, a_new), params.u.copy(), np.vstack([params.V, v_new]),
                     np.append(params.absolute, bool(qp.size)))


def pair_win_rate(theta: np.ndarray, absolute_pair: bool) -> np.ndarray:
    """P(strong wins) from the (n, 2) scores of (strong, weak)."""
    if absolute_pair:
        return 0.5 * (1.0 + sigmoid(theta[:, 0]) - sigmoid(theta[:, 1]))
    return sigmoid(theta[:, 0] - theta[:, 1])


def log_loss(params: IRTParams, d: np.ndarray, X: np.ndarray, obs: Observations) -> float:
    """Mean log-loss of ``obs`` under ``params`` (qualities and battles together)."""
    rows = obs.prompts
    remap = np.full(len(d), -1)
    remap[rows] = np.arange(rows.size)
    T = params.theta(np.asarray(d)[rows], np.asarray(X)[rows])
    total = 0.0
    if obs.q_y.size:
        th = T[remap[obs.q_prompt], obs.q_model]
        total += float(np.sum(_log1pexp(th) - obs.q_y * th))
    if obs.b_o.size:
        z = T[remap[obs.b_prompt], obs.b_a] - T[remap[obs.b_prompt], obs.b_b]
        total += float(np.sum(_log1pexp(z) - obs.b_o * z))
    return total / max(len(obs), 1)


def observations(quality: dict, battles: dict, prompt_map: np.ndarray | None = None) -> Observations:
    """:class:`Observations` from :class:`~routekit_export.fit_data.ModelLabels` arrays; ``prompt_map``
    sends the file's prompt indices to rows of ``d`` / ``X`` (−1 drops the label)."""
    qp, bp = quality["prompt"], battles["prompt"]
    if prompt_map is not None:
        prompt_map = np.asarray(prompt_map, np.int64)
        qp, bp = prompt_map[qp], prompt_map[bp]
    q, b = qp >= 0, bp >= 0
    return Observations(qp[q], quality["model"][q], quality["y"][q], bp[b], battles["a"][b], battles["b"][b],
                        battles["outcome"][b])


def choose_config(d, X, obs: Observations, models: list, *, alpha0=None, grid=GRID, folds: int = 5,
                  seed: int = 0) -> tuple[IRTConfig, list[dict]]:
    """The grid point with the lowest out-of-fold log-loss (folds grouped by prompt), and the table."""
    from .fit_data import prompt_folds

    prompts = obs.prompts
    fold_of = np.full(len(d), -1)
    fold_of[prompts] = prompt_folds(prompts.size, folds, seed)
    table = []
    for cfg in grid:
        total, count = 0.0, 0
        for k in range(folds):
            test = obs.subset(fold_of == k)
            if not len(test):
                continue
            params = fit(d, X, obs.subset((fold_of >= 0) & (fold_of != k)), models, cfg, alpha0=alpha0)
            total += log_loss(params, d, X, test) * len(test)
            count += len(test)
        table.append({"config": cfg.to_dict(), "cv_log_loss": round(total / max(count, 1), 5)})
    best = min(range(len(grid)), key=lambda i: (table[i]["cv_log_loss"], i))
    return grid[best], table

"""Bradley–Terry maximum-likelihood fits from win-count matrices (the SW router's statistics).

``pair_counts`` turns battles ``(prompt, tier a, tier b, outcome)`` into per-prompt win counts of
every ordered tier pair (ties count half a win each way); ``bt_fit`` fits tier strengths θ with
``P(i beats j) = σ(θ_i − θ_j)`` (natural-log logits) to weighted counts by Newton's method.  BT is
identified only up to a shift, so the fit adds a tiny ridge ``λ/2·‖θ‖²`` with ``λ = ridge · ΣW / T``
(relative, so the answer does not depend on the weights' scale); with the default ``ridge = 1e-7``
it changes P by < 1e-6 and keeps θ finite when one tier never loses.
"""

from __future__ import annotations

import numpy as np

from routekit.errors import BadInputError

DEFAULT_RIDGE = 1e-7


def bt_fit(wins: np.ndarray, *, ridge: float = DEFAULT_RIDGE, theta0: np.ndarray | None = None,
           tol: float = 1e-6, max_iter: int = 50, max_step: float = 4.0) -> np.ndarray:
    """Weighted Bradley–Terry MLE from win-count matrices, batched.

    ``wins[..., i, j]`` is the (weighted) number of wins of player ``i`` over ``j`` (a tie adds ½ to
    both directions).  Maximises ``Σ_ij W_ij log σ(θ_i − θ_j) − λ/2 ‖θ‖²`` with
    ``λ = ridge · ΣW / T`` by Newton's method (the objective is strictly concave).  Returns θ
    with the shape of ``wins`` minus its last axis, in natural-log logit units.
    """
    W = np.asarray(wins, dtype=np.float64)
    if W.ndim == 2 or W.shape[0] == 1:  # one query (the latency path): fewer array operations
        W1 = W.reshape(W.shape[-2:]).copy()
        np.fill_diagonal(W1, 0.0)
        N1 = W1 + W1.T
        lam1 = ridge * float(N1.sum()) / (2.0 * W1.shape[0])
        th = np.zeros(W1.shape[0]) if theta0 is None else np.array(theta0, dtype=np.float64)
        th = _bt_newton_one(W1, N1, lam1 if lam1 > 0 else 1e-12, th, tol, max_iter, max_step)
        return th if W.ndim == 2 else th[None]
    B, T, _ = W.shape
    W = W.copy()
    W[:, np.arange(T), np.arange(T)] = 0.0
    N = W + W.transpose(0, 2, 1)
    lam = ridge * N.sum(axis=(1, 2)) / (2.0 * T)
    lam = np.where(lam > 0, lam, 1e-12)[:, None]
    theta = np.zeros((B, T)) if theta0 is None else np.broadcast_to(np.asarray(theta0, float), (B, T)).copy()
    eye = np.eye(T)
    active = np.ones(B, dtype=bool)
    for _ in range(max_iter):
        th = theta[active]
        Wa, Na, la = W[active], N[active], lam[active]
        P = 1.0 / (1.0 + np.exp(th[:, None, :] - th[:, :, None]))  # P[b,i,j] = σ(θi − θj)
        g = (Wa - Na * P).sum(axis=2) - la * th
        V = Na * P * (1.0 - P)
        H = (V.sum(axis=2)[:, :, None] + la[:, :, None]) * eye - V
        step = np.linalg.solve(H, g[:, :, None])[:, :, 0]
        big = np.abs(step).max(axis=1)
        scale = np.minimum(1.0, max_step / np.maximum(big, 1e-300))
        theta[active] = th + step * scale[:, None]
        done = big * scale < tol
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    return theta


def _bt_newton_one(W: np.ndarray, N: np.ndarray, lam: float, theta: np.ndarray, tol: float, max_iter: int,
                   max_step: float) -> np.ndarray:
    """:func:`bt_fit`'s Newton iteration for one T × T problem (W: wins, N = W + Wᵀ)."""
    wins = W.sum(axis=1)
    diag = np.diag_indices(W.shape[0])
    for _ in range(max_iter):
        P = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))
        NP = N * P
        V = NP * (1.0 - P)
        H = -V
        H[diag] += V.sum(axis=1) + lam
        step = np.linalg.solve(H, wins - NP.sum(axis=1) - lam * theta)
        big = float(np.abs(step).max())
        scale = min(1.0, max_step / max(big, 1e-300))
        theta = theta + step * scale
        if big * scale < tol:
            break
    return theta


def pair_counts(battle_prompt, tier_a, tier_b, outcome, n_tiers: int):
    """Aggregate battles into entries ``(prompt, ordered tier pair i*T+j, wins of i over j)``.

    Same-tier battles are dropped.  Returns ``(prompt, pair, count, n_same_tier)`` sorted by pair.
    """
    p = np.asarray(battle_prompt, dtype=np.int64)
    a = np.asarray(tier_a, dtype=np.int64)
    b = np.asarray(tier_b, dtype=np.int64)
    o = np.asarray(outcome)
    o = o.astype(np.float64) / 2.0 if o.dtype.kind == "u" else o.astype(np.float64)
    if not (p.shape == a.shape == b.shape == o.shape):
        raise BadInputError("battle arrays must have equal lengths")
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_tiers):
        raise BadInputError(f"tier ids must be in [0, {n_tiers})")
    if np.any((o != 0.0) & (o != 0.5) & (o != 1.0)):
        raise BadInputError("outcomes must be 1 (a wins), 0 (b wins) or 0.5 (tie)")
    keep = a != b
    n_same = int((~keep).sum())
    p, a, b, o = p[keep], a[keep], b[keep], o[keep]
    T = n_tiers
    key = np.concatenate([p * T * T + a * T + b, p * T * T + b * T + a])
    val = np.concatenate([o, 1.0 - o])
    nz = val > 0
    uniq, inv = np.unique(key[nz], return_inverse=True)
    cnt = np.bincount(inv, weights=val[nz], minlength=uniq.size)
    prompt, pair = uniq // (T * T), uniq % (T * T)
    order = np.lexsort((prompt, pair))
    return prompt[order], pair[order], cnt[order], n_same


"""The numeric core of the SW router: battles + prompt embeddings → P(tier s beats tier w).

For a query ``q`` every training battle gets the weight ``ω_p`` of its prompt's similarity
``s_p = cos(q, p)`` and a Bradley–Terry model over the tiers is fitted to the weighted counts
(:mod:`.bradley_terry`); the formulas are in :mod:`routekit.routers.sw`.  ``mode="exact"`` sums over
every training prompt (by default with int8 similarities, one onnxruntime graph per batch:
:mod:`.graph`); ``mode="fast"`` takes FAISS's top ``k`` and accounts for the rest through exact
count, mean and variance of their similarities.  Measured precision and timings: docs/sw.md.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from routekit.encoders.onnx_graph import Int8InnerProduct
from routekit.errors import BadInputError, RoutekitError
from routekit.routers.sw.bradley_terry import DEFAULT_RIDGE, bt_fit, pair_counts
from routekit.routers.sw.graph import HEAD_TOL, Int8Head, count_blocks

WEIGHTINGS = ("paper", "reference")
MODES = ("exact", "fast")
PRECISIONS = ("int8", "float32")
DEFAULT_GAMMA = 10.0
DEFAULT_K = 256
#: Up to this many queries at once, similarity products run single-threaded (see SWModel._sims).
SMALL_BATCH = 256


@functools.cache
def _faiss_ip():
    """faiss's single-threaded inner-product kernel, imported on first use (None without faiss)."""
    try:
        import faiss

        fn, ptr = faiss.fvec_inner_products_ny, faiss.swig_ptr
    except (ImportError, AttributeError):  # pragma: no cover
        return None

    def ip(out: np.ndarray, q: np.ndarray, E: np.ndarray) -> None:
        # out[p] = <q, E[p]>: faiss's single-threaded SIMD kernel (arrays float32, C-contiguous)
        fn(ptr(out), ptr(q), ptr(E), E.shape[1], E.shape[0])

    return ip


def check_options(*, weighting=None, gamma=None, mode="exact", remainder="moments", precision="int8",
                  k=None) -> None:
    """Raise :class:`BadInputError` for an unknown or out-of-range SW option (``None``: not given)."""
    for name, value, allowed in (("weighting", weighting, WEIGHTINGS), ("mode", mode, MODES),
                                 ("remainder", remainder, ("moments", "none")), ("precision", precision, PRECISIONS)):
        if value is not None and value not in allowed:
            raise BadInputError(f"{name} must be one of {allowed}, got {value!r}")
    number = (int, float, np.integer, np.floating)
    if gamma is not None and not (isinstance(gamma, number) and 1.0 < float(gamma) < math.inf):
        raise BadInputError(f"gamma must be a finite number > 1, got {gamma!r}")
    if k is not None and (not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1):
        raise BadInputError(f"k must be a positive integer, got {k!r}")


class SWModel:
    """The numeric core of the SW router: battles + prompt embeddings -> P(tier s beats tier w).

    Usable without an encoder (``scores``/``tier_ratings`` take embeddings), e.g. for benchmarks.
    Stateless after construction, so safe to share between threads.
    """

    def __init__(self, embeddings: np.ndarray, battle_prompt, tier_a, tier_b, outcome, n_tiers: int, *,
                 weighting: str = "paper", gamma: float = DEFAULT_GAMMA, ridge: float = DEFAULT_RIDGE,
                 mode: str = "exact", k: int | None = None, index: Any = None, remainder: str = "moments",
                 precision: str = "int8", threads: int | None = None):
        check_options(weighting=weighting, gamma=gamma, mode=mode, remainder=remainder, precision=precision)
        gamma = float(gamma)
        E = np.asarray(embeddings)
        if E.ndim != 2:
            raise BadInputError("embeddings must be a 2-D matrix (n_prompts × d)")
        self.E = np.ascontiguousarray(E, dtype=np.float32)
        self.n_prompts, self.dim = self.E.shape
        self.T = int(n_tiers)
        self.weighting, self.gamma, self.log_gamma = weighting, gamma, math.log(gamma)
        self.ridge, self.mode, self.remainder, self.precision = float(ridge), mode, remainder, precision
        prompt, pair, cnt, self.n_same_tier = pair_counts(battle_prompt, tier_a, tier_b, outcome, self.T)
        if prompt.size and prompt.max() >= self.n_prompts:
            raise BadInputError(f"battle_prompt refers to prompt {prompt.max()} but there are "
                                f"{self.n_prompts} prompt embeddings")
        TT = self.T * self.T
        self.total = np.bincount(pair, weights=cnt, minlength=TT)  # unweighted counts per pair
        self.theta0 = bt_fit(self.total.reshape(self.T, self.T), ridge=self.ridge)
        # Dense (n_prompts × pairs) count matrix (one BLAS product) unless it is large and sparse; the
        # entry list (gather + segment sums) wins for e.g. one battle per prompt.
        self.pairs = np.flatnonzero(self.total > 0)
        col = np.searchsorted(self.pairs, pair)
        cells = self.n_prompts * self.pairs.size
        self.dense = cells <= 2_000_000 or cnt.size >= 0.15 * cells
        if self.dense:
            C = np.zeros((self.n_prompts, self.pairs.size))
            C[prompt, col] = cnt
            self.C = C
            self.blocks = count_blocks(C, self.pairs, self.T)
        else:
            self.ent_prompt, self.ent_count = prompt, cnt
            self.starts = np.searchsorted(col, np.arange(self.pairs.size))
        self.index = self._ip = self._head = None
        if mode == "exact" and precision == "int8" and self.n_prompts:
            try:
                if self.dense and self.pairs.size:
                    self._head = Int8Head(self.E, self.blocks, self.pairs, self.T, self.theta0, weighting=weighting,
                                          log_gamma=self.log_gamma, ridge=self.ridge, threads=threads)
                else:
                    self._ip = Int8InnerProduct(self.E, threads=threads)
            except RoutekitError as exc:  # too large for one ONNX model, or no contrib ops: stay exact
                warnings.warn(f"SW: int8 similarities unavailable ({exc}); using float32", stacklevel=2)
                self.precision = "float32"
        if mode == "fast":
            self._init_fast(prompt, col, cnt, k, index)

    # ---------------------------------------------------------------------- weights
    def _log_weights(self, s: np.ndarray, smax: np.ndarray) -> np.ndarray:
        """log ω up to a per-row constant (the BT fit is invariant to scaling all weights)."""
        if self.weighting == "paper":
            return self.log_gamma * (s - smax)
        denom = np.where(smax > 1e-12, smax, np.inf)  # max s <= 0: all weights equal
        return self.log_gamma * (s / denom - 1.0)

    def _sims(self, Q: np.ndarray) -> np.ndarray:
        """Cosine similarities (B, P) of unit queries to every training prompt.

        A few queries use single-threaded kernels: a multi-threaded BLAS matrix-vector product gains
        little (it is memory-bound) and stalls badly when another process holds a core.  With
        ``precision="int8"`` onnxruntime's integer GEMM reads a quarter of the bytes instead."""
        if self._ip is not None:
            return self._ip(Q)
        if self._head is not None:
            return self._head.sims(Q)
        if Q.shape[0] > SMALL_BATCH:
            return Q @ self.E.T
        out = np.empty((Q.shape[0], self.n_prompts), dtype=np.float32)
        ip = _faiss_ip()
        for i, q in enumerate(np.ascontiguousarray(Q, dtype=np.float32)):
            if ip is not None:
                ip(out[i], q, self.E)
            else:  # pragma: no cover - faiss is a dependency; einsum does not use BLAS threads
                out[i] = np.einsum("pd,d->p", self.E, q)
        return out

    def _counts_exact(self, Q: np.ndarray) -> np.ndarray:
        S = self._sims(Q)  # (B, P)
        lw = self._log_weights(S, S.max(axis=1, keepdims=True))
        w = np.exp(lw)
        if self.dense:
            if w.shape[0] > SMALL_BATCH:
                return w @ self.C
            ip = _faiss_ip()
            if ip is None:  # pragma: no cover - faiss is a dependency
                return np.einsum("bp,pk->bk", w, self.C)
            out = np.zeros((w.shape[0], self.pairs.size))
            part = np.empty(self.pairs.size, dtype=np.float32)
            for rows, cols, CT in self.blocks:
                wb = np.ascontiguousarray(w if rows is None else w[:, rows], dtype=np.float32)
                for i, row in enumerate(wb):
                    ip(part, row, CT)  # W[pair] = <w, C[:, pair]>, single-threaded SIMD
                    out[i, cols] += part[:len(cols)]
            return out
        vals = w.T[self.ent_prompt] * self.ent_count[:, None]  # (entries, B), grouped by pair
        return np.add.reduceat(vals, self.starts, axis=0).T

    # ---------------------------------------------------------------------- fast mode
    def _init_fast(self, prompt, col, cnt, k, index) -> None:
        import faiss

        self.k = int(min(k or DEFAULT_K, self.n_prompts))
        if self.k < 1:
            raise BadInputError("k must be >= 1")
        if index is None:
            index = faiss.IndexFlatIP(self.dim)
            index.add(self.E)
        if index.ntotal != self.n_prompts or index.d != self.dim:
            raise BadInputError(f"FAISS index holds {index.ntotal} × {index.d} vectors, "
                                f"expected {self.n_prompts} × {self.dim}")
        self.index = index
        # per-prompt counts as CSR rows (prompt -> its pairs) for the top-k gather
        order = np.argsort(prompt, kind="stable")
        self.row_ptr = np.concatenate([[0], np.cumsum(np.bincount(prompt, minlength=self.n_prompts))])
        self.row_col, self.row_cnt = col[order], cnt[order]
        # exact first and second moments of the similarities, for the non-top-k remainder, in
        # chunks of rows (np.add.at and one float64 copy of E took 12 s and 3 GB at 55k / 1M prompts)
        M = np.zeros((self.pairs.size, self.dim))
        by_pair = np.argsort(col, kind="stable")
        bounds = np.searchsorted(col[by_pair], np.arange(self.pairs.size + 1))
        for j in range(self.pairs.size):
            ent = by_pair[bounds[j]:bounds[j + 1]]
            for c0 in range(0, ent.size, 65536):
                part = ent[c0:c0 + 65536]
                M[j] += cnt[part].astype(np.float64) @ self.E[prompt[part]].astype(np.float64)
        self.M = M                      # Σ_p C_p,ij e_p for every pair
        self.E_sum = np.zeros(self.dim)
        self.G = np.zeros((self.dim, self.dim))
        for c0 in range(0, self.n_prompts, 65536):
            part = self.E[c0:c0 + 65536].astype(np.float64)
            self.E_sum += part.sum(axis=0)  # Σ_p e_p
            self.G += part.T @ part         # Σ_p e_p e_pᵀ

    def _counts_fast(self, Q: np.ndarray) -> np.ndarray:
        B, k = Q.shape[0], self.k
        Q32 = np.ascontiguousarray(Q, dtype=np.float32)
        _, I = self.index.search(Q32, k)
        valid = I >= 0
        I = np.where(valid, I, 0)
        # the index only picks the neighbours; their similarities are recomputed from the stored
        # embeddings, so a compressed index (fp16, HNSW) does not change the weights
        D = np.einsum("bkd,bd->bk", self.E[I], Q32, dtype=np.float32)
        D = np.where(valid, D, -np.inf).astype(np.float64)
        smax = D.max(axis=1, keepdims=True)
        w = np.where(valid, np.exp(self._log_weights(D, smax)), 0.0)  # (B, k)
        # gather the top-k prompts' count rows
        starts, ends = self.row_ptr[I], self.row_ptr[I + 1]
        lens = (ends - starts) * valid
        flat_q = np.repeat(np.arange(B * k), lens.ravel())
        offs = np.arange(flat_q.size) - np.repeat(np.cumsum(lens.ravel()) - lens.ravel(), lens.ravel())
        ent = np.repeat(starts.ravel(), lens.ravel()) + offs
        rows = flat_q // k
        cols = self.row_col[ent]
        cnt = self.row_cnt[ent]
        npairs = self.pairs.size
        key = rows * npairs + cols
        out = np.bincount(key, weights=w.ravel()[flat_q] * cnt, minlength=B * npairs).reshape(B, npairs)
        if self.remainder == "none":
            return out
        # remainder: exact remaining counts and mean similarity per pair; weight via Gaussian correction
        top_cnt = np.bincount(key, weights=cnt, minlength=B * npairs).reshape(B, npairs)
        top_sim = np.bincount(key, weights=D.ravel()[flat_q] * cnt, minlength=B * npairs).reshape(B, npairs)
        Q64 = Q.astype(np.float64)
        rest_cnt = np.maximum(self.total[self.pairs][None, :] - top_cnt, 0.0)
        rest_sim = np.einsum("bd,kd->bk", Q64, self.M) - top_sim
        has = rest_cnt > 1e-9
        mu = np.where(has, rest_sim / np.where(has, rest_cnt, 1.0), 0.0)
        n_rest = self.n_prompts - valid.sum(axis=1)
        Dv = np.where(valid, D, 0.0)
        s1 = np.einsum("bd,d->b", Q64, self.E_sum) - Dv.sum(axis=1)
        s2 = np.einsum("bj,bj->b", np.einsum("bi,ij->bj", Q64, self.G), Q64) - (Dv ** 2).sum(axis=1)
        nr = np.maximum(n_rest, 1)
        var = np.maximum(s2 / nr - (s1 / nr) ** 2, 0.0)[:, None]
        if self.weighting == "paper":
            a = np.full((B, 1), self.log_gamma)
        else:
            a = np.where(smax > 1e-12, self.log_gamma / np.where(smax > 1e-12, smax, 1.0), 0.0)
        s_k = np.where(valid, D, np.inf).min(axis=1, keepdims=True)
        lw_mean = self._log_weights(mu, smax) + 0.5 * a * a * var
        lw_cap = self._log_weights(s_k, smax)
        rest_w = np.exp(np.minimum(lw_mean, lw_cap))
        return out + np.where(has & (n_rest[:, None] > 0), rest_cnt * rest_w, 0.0)

    # ---------------------------------------------------------------------- public
    def _queries(self, embeddings) -> np.ndarray:
        Q = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if Q.ndim != 2 or Q.shape[1] != self.dim:
            raise BadInputError(f"embeddings have shape {Q.shape}, the SW model expects (n × {self.dim})")
        return Q

    def pair_wins(self, embeddings: np.ndarray) -> np.ndarray:
        """Weighted win-count matrices ``(B, T, T)`` for prompt embeddings ``(B, d)``."""
        Q = self._queries(embeddings)
        if self._head is not None:
            return self._head(Q)[0].astype(np.float64).reshape(-1, self.T, self.T)
        vals = self._counts_fast(Q) if self.mode == "fast" else self._counts_exact(Q)
        out = np.zeros((Q.shape[0], self.T * self.T))
        out[:, self.pairs] = vals
        return out.reshape(-1, self.T, self.T)

    def tier_ratings(self, embeddings: np.ndarray, *, chunk: int = 0) -> np.ndarray:
        """Per-prompt BT tier strengths θ ``(B, T)`` (natural-log logit units, mean ≈ 0)."""
        Q = self._queries(embeddings)
        if self._head is not None:
            return self._head_ratings(Q)
        chunk = chunk or max(1, int(4_000_000 // max(self.n_prompts, 1)))
        if Q.shape[0] == 1:
            return bt_fit(self.pair_wins(Q), ridge=self.ridge, theta0=self.theta0)
        parts = [bt_fit(self.pair_wins(Q[i:i + chunk]), ridge=self.ridge, theta0=self.theta0)
                 for i in range(0, Q.shape[0], chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.T))

    def _head_ratings(self, Q: np.ndarray) -> np.ndarray:
        """θ ``(B, T)`` from the int8 head.  numpy's damped Newton finishes the rare fit that has not
        converged in ``HEAD_STEPS``: from the graph's θ while its steps were still small, else
        (undamped steps that overshot, NaN) from the global ratings."""
        W, theta, step = self._head(Q)
        last = np.abs(step).max(axis=1, initial=0.0)
        for i in np.flatnonzero(~(last < HEAD_TOL)):  # NaN compares False: finished here too
            start = theta[i] if last[i] < 1.0 else self.theta0
            theta[i] = bt_fit(W[i].astype(np.float64).reshape(1, self.T, self.T), ridge=self.ridge, theta0=start)[0]
        return theta

    def scores(self, embeddings: np.ndarray, strong_tier: int, weak_tier: int) -> np.ndarray:
        """P(strong tier beats weak tier) per prompt embedding."""
        if strong_tier == weak_tier:
            return np.full(np.atleast_2d(embeddings).shape[0], 0.5)
        th = self.tier_ratings(embeddings)
        return 1.0 / (1.0 + np.exp(th[:, weak_tier] - th[:, strong_tier]))



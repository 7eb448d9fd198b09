"""Similarity-weighted (SW) ranking router (RouteLLM paper, §4.1), exact and in milliseconds.

For a prompt ``q`` every training battle ``(prompt p, tier a, tier b, outcome)`` gets a weight from
the similarity ``s_p = cos(q, p)`` of ``q`` to the battle's prompt, and a Bradley–Terry model over
the model *tiers* is fitted to the weighted battles (ties count half a win each way)::

    paper:      ω_p = γ^(1 + s_p)                (RouteLLM paper)
    reference:  ω_p = γ^(1 + s_p / max_p' s_p')    (RouteLLM's code uses γ = 10: 10·10^(s/max s))

    P(strong wins | q) = σ(θ_strong_tier − θ_weak_tier)   (natural-log logits; the reference's
                                                        Elo 1/(1+10^(Δ/400)) is the same number)

The weighted log-likelihood depends on the battles only through the weighted win counts of every
ordered tier pair, ``W_ij = Σ_p ω_p C_p,ij`` (``C_p,ij``: wins of tier ``i`` over tier ``j`` on
prompt ``p``, ties as ½).  So the per-query refit that RouteLLM does with a logistic regression over
all battle rows is: one matrix-vector product for the similarities, one weighted sum of the
precomputed per-prompt count matrices, and a few Newton steps over ≤ 10 parameters.  This is the
same maximum-likelihood estimate, not an approximation (``mode="exact"``; see *Precision* below for
how the similarities are computed).  BT is identified only
up to a shift, so the fit adds a tiny ridge ``λ/2·‖θ‖²`` with ``λ = ridge · ΣW / T`` (relative, so
the answer does not depend on the weights' scale); with the default ``ridge = 1e-7`` it changes
P by < 1e-6 and keeps θ finite when one tier never loses.  Battles between models of the same tier
carry no information about tier differences and are left out.  (RouteLLM's design matrix writes
``−log 10`` for such rows, a quirk not reproduced here.)

``mode="fast"`` uses a FAISS index for the ``k`` most similar training prompts and accounts for the
rest without their individual similarities: for every tier pair it knows the exact remaining count
and, from precomputed sums ``M = Cᵀ E``, the exact *mean* similarity of the remaining battles; their
weight is that of the mean similarity with a second-order (Gaussian) correction from the exact
residual variance ``(qᵀ EᵀE q − Σ_topk s²)/n_rest − μ²``, capped at the weight of the k-th
similarity (no remaining prompt is more similar than that).  Its error is measured against exact.

Precision: the similarity pass reads every training prompt's embedding once per query, so it is
memory-bound (55k × 1536 float32 = 338 MB per query).  By default (``precision="int8"``) exact mode
keeps the embeddings as int8 with one scale per prompt and lets onnxruntime's integer GEMM compute
the cosines (:class:`routekit.session.Int8InnerProduct`): a quarter of the bytes, every battle still
counted.  Each query is rounded to int8 with its own scale, so its answer never depends on its
batch-mates.  The cosines are then accurate to ~1e-3 (rounding of both sides), which moved
P(strong) by 9.7e-5 on average (max 2.7e-3) on the 1,513 dev MMLU prompts with the shipped artifact
and left its APGR unchanged (0.5700 vs 0.5695).  When the counts are held densely (the shipped
artifact), the whole int8 pass is one onnxruntime graph over a batch of queries, :class:`Int8Head`:
similarities, weights, the count blocks and five unrolled Newton steps, so a batch costs one ``run``
instead of ~60 small numpy calls per query (0.47 → 0.31 ms per query right after an encoder pass
on the 2-core dev box; 0.12 → 0.03 ms per query for ``sw-static`` in batches of 32).  A fit the
graph has not converged (last step ≥ ``HEAD_TOL``; 9 of the 1,513 dev MMLU prompts) is finished by
:func:`bt_fit`; accepted ones are within 5e-11 in P of a fit converged to 1e-13 there.
``precision="float32"`` gives the textbook computation: for one to
``SMALL_BATCH`` queries faiss's single-threaded SIMD inner-product kernel (a multi-threaded BLAS
matrix-vector product gained little and stalled for 10–20 ms whenever another process held a core on
the 2-core box), BLAS for larger batches.  FAISS searches in fast mode run with FAISS's own OpenMP
setting.

Pairs: any two models in the artifact's model table can be scored; they map to their tiers.  If both
models are in the *same* tier the SW model cannot tell them apart — every prompt then gets 0.5 and a
warning is issued at load time (use another router or another pair).

Artifact: ``sw.npz`` (no pickle) with ``embeddings`` (n_prompts × d, float32 or float16,
L2-normalised), ``battle_prompt`` (int32), ``tier_a``, ``tier_b`` (uint8), ``outcome`` (float32
1/0/0.5, or uint8 codes 2/0/1); optional FAISS index file for fast mode (else a flat inner-product
index is built in memory); ``router.model_tiers`` maps model -> tier in the manifest.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import BadArtifactError, BadInputError, RoutekitError
from ..router import Router
from ..session import (Int8InnerProduct, OnnxGraph, batch_rows, encoder_from_manifest, int8_threads, quantize_rows,
                       run_in_chunks)

WEIGHTINGS = ("paper", "reference")
MODES = ("exact", "fast")
PRECISIONS = ("int8", "float32")
DEFAULT_GAMMA = 10.0
DEFAULT_RIDGE = 1e-7
DEFAULT_K = 256
#: Up to this many queries at once, similarity products run single-threaded (see SWModel._sims).
SMALL_BATCH = 256


def _load_faiss_ip():
    try:
        import faiss

        fn, ptr = faiss.fvec_inner_products_ny, faiss.swig_ptr
    except (ImportError, AttributeError):  # pragma: no cover
        return None

    def ip(out: np.ndarray, q: np.ndarray, E: np.ndarray) -> None:
        # out[p] = <q, E[p]>: faiss's single-threaded SIMD kernel (arrays float32, C-contiguous)
        fn(ptr(out), ptr(q), ptr(E), E.shape[1], E.shape[0])

    return ip


_faiss_ip = _load_faiss_ip()


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


# --------------------------------------------------------------------------- Bradley–Terry


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


def count_blocks(C: np.ndarray, pairs: np.ndarray, n_tiers: int, *, min_rows: int = 64):
    """Split the dense prompt × pair count matrix into blocks of prompts that battle in the same
    tier pairs, each keeping only its own columns: ``[(rows or None, cols, Cᵀ block float32)]``.

    Training sets mix sources with very different battle patterns (a benchmark question with one
    battle of the pair; 11 models on every RouterBench prompt; all 15 models on an Arena prompt), so
    most of the full matrix is zeros.  The blocks hold the same numbers in ~¼ of the bytes the
    per-query weighted sum has to read.  Prompts in groups under ``min_rows`` join the narrowest
    block that holds all their pairs (or form one more block)."""
    T = n_tiers
    a, b = pairs // T, pairs % T
    unordered = np.minimum(a, b) * T + np.maximum(a, b)  # both directions of a pair share a key
    uniq, ucol = np.unique(unordered, return_inverse=True)
    support = np.zeros((C.shape[0], uniq.size), dtype=bool)
    rr, cc = np.nonzero(C)
    support[rr, ucol[cc]] = True
    keys, group = np.unique(np.packbits(support, axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    sizes = np.bincount(group, minlength=len(keys))
    small = sizes[group] < min_rows
    groups = [np.flatnonzero((group == g) & ~small) for g in np.flatnonzero(sizes >= min_rows)]

    def columns(rows):
        return np.flatnonzero(np.isin(ucol, np.unique(ucol[np.nonzero(C[rows])[1]])))

    cols = [columns(rows) for rows in groups]
    if small.any():  # the few leftover prompts join the narrowest block that has all their columns
        rest = np.flatnonzero(small)
        need = columns(rest)
        fits = [i for i, c in enumerate(cols) if np.isin(need, c).all()]
        if fits:
            i = min(fits, key=lambda j: cols[j].size)
            groups[i] = np.sort(np.concatenate([groups[i], rest]))
        else:
            groups.append(rest)
            cols.append(need)
    if len(groups) == 1:
        return [(None, np.arange(pairs.size), np.ascontiguousarray(C.T, dtype=np.float32))]
    return [(rows, c, np.ascontiguousarray(C[np.ix_(rows, c)].T, dtype=np.float32))
            for rows, c in zip(groups, cols)]


#: Newton steps the int8 head's graph takes (unrolled); a fit is accepted when its last step is
#: below ``HEAD_TOL`` (error then ~HEAD_TOL², quadratic convergence), else numpy finishes it.
HEAD_STEPS = 5
HEAD_TOL = 1e-3


class Int8Head:
    """Exact mode's whole pass for a batch of queries as one onnxruntime graph (dense counts, int8
    similarities; every query rounded and fitted on its own):

    1. int8 similarities to every training prompt (as :class:`~routekit.session.Int8InnerProduct`),
       their log-weights and weights (float32);
    2. the weighted win counts ``W`` of every ordered tier pair: one product per count block,
       placed into the ``T × T`` layout by a 0/1 matrix;
    3. ``HEAD_STEPS`` unrolled Newton steps of :func:`bt_fit` from the global ratings (float64,
       same objective and ridge), returning θ and the last step.

    One ``run`` per batch instead of ~60 small numpy calls per query: right after an encoder pass,
    with the caches cold, those calls were most of the per-query cost.  Training prompts are reordered so every block is
    one contiguous slice of the similarities; prompts without cross-tier battles only enter the max.
    """

    def __init__(self, E: np.ndarray, blocks, pairs: np.ndarray, n_tiers: int, theta0: np.ndarray, *,
                 weighting: str, log_gamma: float, ridge: float, threads: int | None = None):
        n, d = E.shape
        T, TT = n_tiers, n_tiers * n_tiers
        if blocks[0][0] is None:
            order, spans = np.arange(n), [(0, n)]
        else:
            order = np.concatenate([rows for rows, _, _ in blocks])
            starts = np.cumsum([0] + [len(rows) for rows, _, _ in blocks])
            spans = list(zip(starts[:-1], starts[1:]))
            order = np.concatenate([order, np.setdiff1d(np.arange(n), order)])
        self.T = T
        self.unorder = np.argsort(order)  # sims[:, unorder]: back in training-prompt order
        g = OnnxGraph("SW head")
        f32 = lambda name, v: g.const(name, np.asarray(v, dtype=np.float32))  # noqa: E731
        f64 = lambda name, v: g.const(name, np.asarray(v, dtype=np.float64))  # noqa: E731
        g.int8_matmul("q", *quantize_rows(E[order]), out="sims")
        g.op("ReduceMax", "sims", out="smax", axes=[1], keepdims=1)
        if weighting == "paper":  # log ω = log γ · (s − max s)
            g.op("Mul", g.op("Sub", "sims", "smax", out="centred"), f32("log_gamma", log_gamma), out="logw")
        else:  # log ω = log γ · (s / max s − 1); all weights equal when max s <= 0
            pos = g.op("Greater", "smax", f32("eps", 1e-12), out="pos")
            denom = g.op("Where", pos, "smax", f32("inf", np.inf), out="denom")
            rel = g.op("Sub", g.op("Div", "sims", denom, out="ratio"), f32("one", 1.0), out="rel")
            g.op("Mul", rel, f32("log_gamma", log_gamma), out="logw")
        g.op("Exp", "logw", out="w")
        parts, place = [], []
        for i, ((rows, cols, CT), (a, b)) in enumerate(zip(blocks, spans)):
            if len(cols) == 0:  # prompts whose battles are all within a tier: only in the max
                continue
            wb = "w" if (a, b) == (0, n) else g.op(
                "Slice", "w", g.const(f"start{i}", np.array([a], np.int64)), g.const(f"end{i}", np.array([b], np.int64)),
                g.const(f"axis{i}", np.array([1], np.int64)), out=f"w{i}")
            parts.append(g.op("MatMul", wb, g.const(f"C{i}", np.ascontiguousarray(CT.T)), out=f"part{i}"))
            P = np.zeros((len(cols), TT), dtype=np.float32)
            P[np.arange(len(cols)), pairs[cols]] = 1.0
            place.append(P)
        cat = parts[0] if len(parts) == 1 else g.op("Concat", *parts, out="parts", axis=1)
        g.op("MatMul", cat, g.const("place", np.concatenate(place)), out="W")
        # Bradley–Terry Newton steps for a batch, θ as (B, T, 1) columns, in float64 (see bt_fit)
        Wm = g.op("Reshape", g.op("Cast", "W", out="W64", to=11), g.const("square", np.array([-1, T, T], np.int64)),
                  out="Wm")
        tr = dict(perm=[0, 2, 1])  # transpose each query's matrix
        N = g.op("Add", Wm, g.op("Transpose", Wm, out="WmT", **tr), out="N")
        axis2 = g.const("last_axis", np.array([2], np.int64))
        wins = g.op("ReduceSum", Wm, axis2, out="wins", keepdims=1)
        total = g.op("ReduceSum", wins, g.const("axes12", np.array([1, 2], np.int64)), out="total", keepdims=1)
        lam = g.op("Max", g.op("Mul", total, f64("ridge_per_tier", ridge / T), out="lam0"), f64("tiny", 1e-12),
                   out="lam")
        eye = f64("eye", np.eye(T))
        theta = f64("theta0", np.asarray(theta0, dtype=np.float64).reshape(1, T, 1))
        for k in range(HEAD_STEPS):
            P = g.op("Sigmoid", g.op("Sub", theta, g.op("Transpose", theta, out=f"row{k}", **tr), out=f"diff{k}"),
                     out=f"P{k}")
            NP = g.op("Mul", N, P, out=f"NP{k}")
            V = g.op("Mul", NP, g.op("Transpose", P, out=f"PT{k}", **tr), out=f"V{k}")
            grad = g.op("Sub", g.op("Sub", wins, g.op("ReduceSum", NP, axis2, out=f"exp{k}", keepdims=1), out=f"res{k}"),
                        g.op("Mul", lam, theta, out=f"pull{k}"), out=f"grad{k}")
            dg = g.op("Add", g.op("ReduceSum", V, axis2, out=f"vs{k}", keepdims=1), lam, out=f"dg{k}")
            H = g.op("Sub", g.op("Mul", eye, dg, out=f"D{k}"), V, out=f"H{k}")
            step = g.op("MatMul", g.op("Inverse", H, out=f"Hinv{k}", domain="com.microsoft"), grad,
                        out="step" if k == HEAD_STEPS - 1 else f"step{k}")
            theta = g.op("Add", theta, step, out="theta" if k == HEAD_STEPS - 1 else f"th{k}")
        self.outputs = ["W", "theta", "step"]
        self.rows = batch_rows(n)
        self.session = g.session([("q", ["batch", d])],
                                 [("W", ["batch", TT]), ("theta", ["batch", T, 1], np.float64),
                                  ("step", ["batch", T, 1], np.float64), ("sims", ["batch", n])],
                                 int8_threads(n * d, threads))

    def __call__(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(W (B, T·T) float32, θ (B, T) float64, last Newton step (B, T) float64)`` for unit
        queries ``(B, d)``.  Each query is quantised with its own scale and fitted on its own, so
        its result does not depend on its batch-mates."""
        W, theta, step = run_in_chunks(self.session, self.outputs, Q, self.rows)
        return W, theta[:, :, 0], step[:, :, 0]

    def sims(self, Q: np.ndarray) -> np.ndarray:
        """The int8 similarities ``(B, n)`` in training-prompt order."""
        return run_in_chunks(self.session, ["sims"], Q, self.rows)[0][:, self.unorder]


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
        for i, q in enumerate(np.ascontiguousarray(Q, dtype=np.float32)):
            if _faiss_ip is not None:
                _faiss_ip(out[i], q, self.E)
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
            if _faiss_ip is None:  # pragma: no cover - faiss is a dependency
                return np.einsum("bp,pk->bk", w, self.C)
            out = np.zeros((w.shape[0], self.pairs.size))
            part = np.empty(self.pairs.size, dtype=np.float32)
            for rows, cols, CT in self.blocks:
                wb = np.ascontiguousarray(w if rows is None else w[:, rows], dtype=np.float32)
                for i, row in enumerate(wb):
                    _faiss_ip(part, row, CT)  # W[pair] = <w, C[:, pair]>, single-threaded SIMD
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
        # exact first and second moments of the similarities, for the non-top-k remainder
        E64 = self.E.astype(np.float64)
        M = np.zeros((self.pairs.size, self.dim))
        np.add.at(M, col, cnt[:, None] * E64[prompt])
        self.M = M                      # Σ_p C_p,ij e_p for every pair
        self.E_sum = E64.sum(axis=0)    # Σ_p e_p
        self.G = E64.T @ E64            # Σ_p e_p e_pᵀ

    def _counts_fast(self, Q: np.ndarray) -> np.ndarray:
        B, k = Q.shape[0], self.k
        D, I = self.index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
        valid = I >= 0
        D = np.where(valid, D, -np.inf).astype(np.float64)
        I = np.where(valid, I, 0)
        smax = D[:, :1]
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


# --------------------------------------------------------------------------- router


class SWRouter(Router):
    """SW ranking router.  Options (``routekit.load(path, ...)``):

    * ``mode``: ``"exact"`` (default; all training prompts) or ``"fast"`` (FAISS top-``k`` plus the
      moment-matched remainder, see the module docstring);
    * ``precision``: exact mode's similarity pass, ``"int8"`` (default; onnxruntime integer GEMM over
      int8 prompt embeddings) or ``"float32"`` (faiss / BLAS over the stored embeddings);
    * ``k``: prompts searched in fast mode (default: the artifact's ``router.k`` or 256);
    * ``weighting`` (``"paper"``/``"reference"``), ``gamma``, ``ridge``: override the artifact's
      choice (the calibration table then no longer matches: pass ``threshold=``).
    """

    kind = "sw"

    def __init__(self, manifest, *, providers=None, threads=None, strong=None, weak=None,
                 mode: str = "exact", k: int | None = None, weighting: str | None = None,
                 gamma: float | None = None, ridge: float | None = None, remainder: str = "moments",
                 precision: str = "int8", **options):
        if options:
            raise BadInputError(f"unknown option(s) for the SW router: {', '.join(sorted(options))} "
                                "(known: mode, k, weighting, gamma, ridge, remainder, precision)")
        super().__init__(manifest, strong=strong, weak=weak)
        spec = manifest["router"]
        data = manifest.array(spec.get("data", "sw.npz"))
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
        if dim and emb.shape[1] != int(dim):
            raise BadArtifactError(f"{manifest.folder}: embeddings are {emb.shape[1]}-d, encoder gives {dim}")
        # the caller's options are input errors, not artifact errors: check them before SWModel
        check_options(weighting=weighting, gamma=gamma, mode=mode, remainder=remainder, precision=precision, k=k)
        self.mode = mode
        index = None
        if mode == "fast" and spec.get("index"):
            import faiss

            index = faiss.read_index(str(manifest.path(spec["index"]["file"])))
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

    def tier_of(self, model: str) -> int:
        """Tier of a model (0 = lowest rated)."""
        return self.model_tiers[self.canonical(model)]

    def tier_ratings(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-prompt BT strengths of every tier (natural-log logits) from prompt embeddings."""
        return self.sw.tier_ratings(embeddings)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Win rates from precomputed prompt embeddings (n × d)."""
        return self.sw.scores(embeddings, self.strong_tier, self.weak_tier)

    def score_embeddings(self, embeddings: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.scores(embeddings)

    def _score(self, prompts: list[str]) -> np.ndarray:
        if not prompts:
            return np.zeros(0)
        return self.scores(self.encoder(prompts))

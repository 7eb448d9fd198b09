"""The SW router's exact int8 pass as one onnxruntime graph (:class:`Int8Head`) and the dense
count blocks it multiplies (:func:`count_blocks`).  Measured effects: docs/sw.md."""

from __future__ import annotations

import numpy as np

from routekit.encoders.onnx_graph import (
    OnnxGraph,
    batch_rows,
    int8_threads,
    quantize_rows,
    run_in_chunks,
)


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

    1. int8 similarities to every training prompt (as :class:`~routekit.encoders.onnx_graph.Int8InnerProduct`),
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

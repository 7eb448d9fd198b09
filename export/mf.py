"""Train the matrix-factorisation router with torch on precomputed prompt embeddings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .data import split_by_prompt
from .train_config import TrainConfig


@dataclass
class MFConfig(TrainConfig):
    lr: float = 3e-4
    weight_decay: float = 1e-5
    batch_size: int = 64
    hidden: int = 128
    epochs: int = 10


def build_model(n_models: int, dim: int, hidden: int):
    import torch

    class MF(torch.nn.Module):
        """δ(M, q) = w₂ᵀ (v_M ⊙ (W₁ q + b))."""

        def __init__(self):
            super().__init__()
            self.model_emb = torch.nn.Embedding(n_models, hidden)
            self.proj = torch.nn.Linear(dim, hidden)
            self.head = torch.nn.Linear(hidden, 1, bias=False)

        def delta(self, q, m):
            return self.head(self.model_emb(m) * self.proj(q)).squeeze(-1)

        def forward(self, q, a, b):  # logit of P(a beats b)
            return self.delta(q, a) - self.delta(q, b)

    return MF()


def train_mf(emb: np.ndarray, arrays: dict[str, np.ndarray], n_models: int, cfg: MFConfig,
             *, show_progress: bool = True) -> tuple[dict[str, np.ndarray], dict, Any]:
    """Fit MF; returns (weights for ``mf.npz``, metrics, the torch model).  Ties are soft targets of 0.5."""
    import torch

    torch.manual_seed(cfg.seed)
    q = torch.from_numpy(emb.astype(np.float32))
    pidx, a, b, y = (torch.from_numpy(arrays[k]) for k in ("prompt", "a", "b", "outcome"))
    train_rows, val_rows = split_by_prompt(arrays["prompt"], cfg.val_fraction, cfg.seed)  # sorted row indices
    train_idx = torch.from_numpy(train_rows)
    model = build_model(n_models, emb.shape[1], cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(cfg.seed)

    def evaluate(rows: np.ndarray) -> dict:
        idx = torch.from_numpy(rows)
        if len(idx) == 0:
            return {}
        with torch.no_grad():
            logit = model(q[pidx[idx]], a[idx], b[idx])
            loss = float(loss_fn(logit, y[idx]))
            decided = y[idx] != 0.5
            acc = float(((logit[decided] > 0).float() == y[idx][decided]).float().mean()) if decided.any() else float("nan")
        return {"loss": round(loss, 5), "accuracy_non_tie": round(acc, 5), "battles": int(len(idx))}

    history = []
    for epoch in tqdm(range(cfg.epochs), total=cfg.epochs, desc="training MF", disable=not show_progress, unit="epoch"):
        model.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(perm), cfg.batch_size):
            i = perm[start:start + cfg.batch_size]
            loss = loss_fn(model(q[pidx[i]], a[i], b[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        history.append({"epoch": epoch + 1, "train": evaluate(train_rows), "val": evaluate(val_rows)})
    weights = {
        "model_emb": model.model_emb.weight.detach().numpy().astype(np.float32),
        "proj_w": model.proj.weight.detach().numpy().astype(np.float32),
        "proj_b": model.proj.bias.detach().numpy().astype(np.float32),
        "head": model.head.weight.detach().numpy().reshape(-1).astype(np.float32),
    }
    metrics = {"config": asdict(cfg), "final": history[-1] if history else {}, "history": history}
    return weights, metrics, model


def torch_pair_prob(model, emb: np.ndarray, strong: int, weak: int) -> np.ndarray:
    """P(strong beats weak) from the torch model (for parity tests)."""
    import torch

    with torch.no_grad():
        q = torch.from_numpy(emb.astype(np.float32))
        n = len(q)
        logit = model(q, torch.full((n,), strong, dtype=torch.long), torch.full((n,), weak, dtype=torch.long))
        return torch.sigmoid(logit.double()).numpy()

"""Two numeric helpers several routers and exporters share."""

from __future__ import annotations

import numpy as np

#: How close to 0 and 1 a probability is clipped before its logit is taken.
EPS = 1e-12


def logit(p) -> np.ndarray:
    """log(p / (1 − p)) in float64, with ``p`` clipped to [EPS, 1 − EPS] (finite at 0 and 1)."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x) -> np.ndarray:
    """1 / (1 + e^−x) in float64, written with tanh (no overflow warning for large |x|)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))

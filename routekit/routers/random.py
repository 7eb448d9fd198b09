"""The random router: the baseline every quality table needs.

Its win rate is a uniform number derived from a hash of (seed, prompt), so it is reproducible,
the same in batch and alone, and independent of call order.
"""

from __future__ import annotations

import hashlib

import numpy as np

from routekit.errors import BadInputError
from routekit.router import Router


class RandomRouter(Router):
    """Uniform win rates from a hash of (seed, prompt).  ``seed``: the option, else the artifact's
    ``router.seed``, else 0.  It has no model table: ``strong``/``weak`` are accepted and ignored."""

    kind = "random"

    @classmethod
    def check_section(cls, c, r: dict, data: dict, models) -> None:
        c.integer(r.get("seed"), "router.seed", lo=-(1 << 63), hi=(1 << 63) - 1, optional=True)

    def __init__(self, manifest=None, *, seed: int | None = None, providers=None, threads=None, strong=None,
                 weak=None):
        if seed is None:
            seed = ((manifest.get("router") if manifest else None) or {}).get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, (int, str)):
            raise BadInputError(f"seed must be an integer, got {seed!r}")
        try:
            seed = int(seed)
        except ValueError:
            raise BadInputError(f"seed must be an integer, got {seed!r}") from None
        if not -(2**63) <= seed < 2**63:
            raise BadInputError(f"seed must be in [-2**63, 2**63), got {str(seed)[:40]}")
        super().__init__(manifest, name="random" if seed == 0 else f"random:{seed}")
        self.seed = seed

    def score(self, prompts: list[str]) -> np.ndarray:
        out = np.empty(len(prompts))
        salt = str(self.seed).encode()
        for i, p in enumerate(prompts):
            h = hashlib.blake2b(p.encode("utf-8", "replace"), digest_size=8, key=salt or b"0").digest()
            out[i] = int.from_bytes(h, "little") / 2.0**64
        return out

    @property
    def calibration(self):
        return {"quantiles": [0.0, 1.0], "default_strong_fraction": 0.5}

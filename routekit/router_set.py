""":class:`RouterSet`: several routers scored together, each distinct encoder run once per batch."""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import numpy as np

from routekit._validate import as_prompts, check_batch_size, short
from routekit.errors import BadInputError
from routekit.loading import load
from routekit.progress import progress
from routekit.router import Decision, EncoderRouter, Router, threshold_source


class RouterSet:
    """Several routers scored together, running each distinct encoder once per batch.

    Routers whose artifacts ship the same encoder file (same sha256) share one embedding pass;
    the others (BERT, causal, random) score on their own.  ``win_rates`` returns one array per
    router, in the order given, identical to each router's own ``win_rates``.
    """

    def __init__(self, routers: Sequence[Router | str], **load_options: Any):
        if isinstance(routers, (str, bytes, os.PathLike)) or not hasattr(routers, "__iter__"):
            raise BadInputError(f"RouterSet takes a list of routers or router names, got {short(routers)}")
        self.routers = []
        for i, r in enumerate(routers):
            if isinstance(r, Router):
                self.routers.append(r)
            elif isinstance(r, (str, os.PathLike)) and not isinstance(r, bool):
                self.routers.append(load(r, **load_options))
            else:
                raise BadInputError(f"routers[{i}] must be a Router, a shipped name or a folder, got {short(r)}")

    @staticmethod
    def _encoder_key(router: Router) -> tuple | None:
        spec = router.manifest.get("encoder") if router.manifest else None
        if not isinstance(router, EncoderRouter) or not isinstance(spec, dict) or "file" not in spec:
            return None
        return (router.manifest.file_key(spec["file"]), int(spec.get("max_length", 256)))

    def _encoder_groups(self) -> tuple[list[int], list[list[int]]]:
        """(routers that score on their own, groups of routers sharing one encoder), by index.
        Worked out once per :meth:`win_rates` call: an unverified artifact's file key stats its file."""
        alone: list[int] = []
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.routers):
            key = self._encoder_key(r)
            if key is None:
                alone.append(i)
            else:
                groups.setdefault(key, []).append(i)
        return alone, list(groups.values())

    def _score_chunk(self, items: list[str], batch_size: int, plan) -> list[np.ndarray]:
        alone, groups = plan
        out: list[np.ndarray | None] = [None] * len(self.routers)
        for i in alone:
            out[i] = self.routers[i].score(items)
        for members in groups:
            emb = self.routers[members[0]].encoder(items, batch_size=batch_size)
            for i in members:
                out[i] = self.routers[i].score_embeddings(emb, items)
        return [r.to_win_rates(o) for r, o in zip(self.routers, out)]

    def win_rates(self, prompts: Iterable[str], *, batch_size: int = 64,
                  show_progress: bool = False) -> list[np.ndarray]:
        batch_size = check_batch_size(batch_size)
        items = as_prompts(prompts)
        if not items:
            return [np.zeros(0) for _ in self.routers]
        plan = self._encoder_groups()
        chunks = range(0, len(items), batch_size)
        parts = [self._score_chunk(items[i:i + batch_size], batch_size, plan)
                 for i in progress(chunks, total=len(chunks), desc="scoring", enabled=show_progress, unit="batch")]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.routers))]

    def route(self, prompt: str, **kw: Any) -> list[Decision]:
        """One decision per router for ``prompt`` (``threshold``/``strong_fraction`` as for Router.route)."""
        rates = self.win_rates([prompt])
        decisions = []
        for r, w in zip(self.routers, rates):
            thr, forced = r.resolve_threshold(kw.get("threshold"), kw.get("strong_fraction"))
            decisions.append(r.decide(float(w[0]), thr, forced, source=threshold_source(kw.get("threshold"))))
        return decisions

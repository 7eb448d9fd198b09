"""The length-only router: the baseline that ranks prompts by their number of characters, no model.

Every quality table carries it beside ``random``: a learned router has to beat a ruler, and on
many prompt sets length alone ranks well. Its win rate is ``c / (c + 500)`` for a prompt of ``c``
characters (Python ``len``, code points): strictly increasing in ``c``, so every ranking metric
(AUC, APGR, CPT) is that of the raw character count, while the number stays in [0, 1] as a win
rate must.

Its thresholds come from the same reference traffic mix as the shipped routers' (50 % Arena-Hard,
25 % held-out everyday prompts, 15 % held-out long easy requests, 10 % GSM8K train questions,
weighted; ``export.build.traffic_mix``):
:data:`CHAR_QUANTILES` are that mix's character-count quantiles, and the default threshold sends
the mix's needs-strong share (35.3 %, ``export.build.strong_share()``) to strong, as the default
router's does.
``tests/test_baselines.py`` recomputes the table from the data.
"""

from __future__ import annotations

import numpy as np

from routekit.router import Router

#: Characters at which the win rate is 0.5.
SCALE = 500.0
#: Weighted character-count quantiles (levels 0, 0.05, ..., 1) of the reference traffic mix
#: (1,753 prompts), rounded to 0.1.
CHAR_QUANTILES = (2.0, 24.0, 31.0, 35.0, 40.0, 48.0, 62.0, 83.0, 111.0, 138.0, 173.0, 207.0, 253.1, 320.0,
                  449.0, 544.4, 592.0, 670.3, 914.7, 1903.6, 27586.0)
#: Share of the reference mix that needs the strong model (``export.build.strong_share()``: 0.5 x 0.671 of
#: its Arena-Hard part + 0.1 x 0.176 of its GSM8K part).
DEFAULT_STRONG_FRACTION = 0.3532
_SOURCE = ("character-count quantiles of the reference traffic mix: 50 % arena-hard, 25 % everyday, "
           "15 % long-easy, 10 % gsm8k-train (1753 prompts, weighted)")


def length_win_rate(chars) -> np.ndarray:
    """The win rate for prompts of ``chars`` characters: ``c / (c + SCALE)``."""
    c = np.asarray(chars, dtype=np.float64)
    return c / (c + SCALE)


class LengthRouter(Router):
    """Win rate ``c / (c + 500)`` for a prompt of ``c`` characters.  Built in (``routekit.load("length")``);
    it has no model table: ``strong``/``weak`` are accepted and ignored."""

    kind = "length"

    def __init__(self, manifest=None, *, providers=None, threads=None, strong=None, weak=None):
        super().__init__(manifest, name="length")

    def score(self, prompts: list[str]) -> np.ndarray:
        return length_win_rate([len(p) for p in prompts])

    @property
    def calibration(self):
        return {"prompts": _SOURCE, "default_strong_fraction": DEFAULT_STRONG_FRACTION,
                "quantiles": [float(x) for x in length_win_rate(CHAR_QUANTILES)]}

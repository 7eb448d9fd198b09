"""The project's bench/ scripts (not part of the routekit package), importable from tests."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import chat_proxy  # noqa: E402
import eval_report  # noqa: E402
import peer_compare  # noqa: E402
import slowloris  # noqa: E402
import task_kind  # noqa: E402

__all__ = ["BENCH", "chat_proxy", "eval_report", "peer_compare", "slowloris", "task_kind"]

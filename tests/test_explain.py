"""explain(top=...) is checked the same way by every kind that explains (routekit.control.explain.check_top)."""

import numpy as np
import pytest

import routekit
from routekit.control.explain import check_top

BAD_TOPS = [0, -1, 2.5, "x", True, None]


@pytest.mark.parametrize("kind", ["linear", "mf", "sw"])
def test_explain_refuses_a_top_that_is_not_a_positive_integer(kind):
    """top=-1 silently dropped the last item, "x" and 2.5 raised a bare TypeError."""
    router = routekit.load(kind)
    for bad in BAD_TOPS:
        with pytest.raises(routekit.BadInputError, match="top must be an integer >= 1"):
            router.explain("hello there", top=bad)
    assert router.explain("hello there", top=np.int64(2)) is not None


def test_check_top():
    assert check_top(3) == 3 and type(check_top(np.int32(4))) is int
    for bad in BAD_TOPS:
        with pytest.raises(routekit.BadInputError):
            check_top(bad)

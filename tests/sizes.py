"""How many examples each Hypothesis test asks for, scaled by ``CM_EXAMPLES`` (a factor).

``make test`` runs at 1 (the sizes written in the tests), ``make test-fast`` at 0.25 (every
property still checked, on a quarter of the examples) and ``make hypothesis-long`` at 10. The
protocol's stateful test has its own knob (``CM_STATEFUL_STEPS``).
"""

import os

FACTOR = float(os.environ.get("CM_EXAMPLES", "1"))


def examples(n: int) -> int:
    """``n`` examples scaled by ``CM_EXAMPLES``, at least one."""
    return max(1, round(n * FACTOR))

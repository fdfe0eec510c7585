"""No account the protocol lets exist is unliquidatable: the largest one (128 options on
their own expiries over 16 underlyings with 32-scenario grids, a perp on each, every
collateral the vault lists), with every risk array stale, is started and bid on into a
fresh account, each in one transaction under the block gas limit the spec states."""

from __future__ import annotations

import pytest

from crossmargin.worst_case import BLOCK_GAS_LIMIT, worst_case_benchmark

pytestmark = pytest.mark.slow


def test_worst_case__stale_start_and_fresh_bid__each_fit_a_block(config, admin, trader, maker, keeper):
    rows = worst_case_benchmark(config, admin, trader, maker, keeper)
    assert len(rows) == 2  # the start, then the bid
    for row in rows:
        # sent with BLOCK_GAS_LIMIT as its gas limit: a larger need would have reverted
        assert row.total < BLOCK_GAS_LIMIT

"""No account the protocol lets exist is unliquidatable: the largest one (128 options on
their own expiries over 16 underlyings with the costliest grids allowed, a perp on each,
every collateral the vault lists), with every risk array stale, is started and bid on into
a fresh account, each in one transaction under the block gas limit the spec states; insolvent
(the loss waterfall's deleveraging charging every perp and future) it is bid on after the
keeper's refresh batches, each under the cap; and a
keeper's refresh batch of such arrays fits Ethereum's per-transaction cap."""

from __future__ import annotations

import pytest

from crossmargin.tools.worst_case import BLOCK_GAS_LIMIT, TX_GAS_CAP, worst_case_benchmark

pytestmark = pytest.mark.slow


def test_worst_case__stale_start_and_fresh_bid__each_fit_a_block(config, admin, trader, maker, keeper):
    start, bid, mark, insolvent_stale, insolvent, refresh = worst_case_benchmark(config, admin, trader, maker, keeper)
    # each was sent with the limit as its gas limit: a larger need would have reverted
    assert start.total < BLOCK_GAS_LIMIT
    assert bid.total < BLOCK_GAS_LIMIT
    # found insolvent: the loss reserved and every perp's and future's side marked
    assert mark.total < BLOCK_GAS_LIMIT
    # insolvent, every array stale, with deleveraging writing 31 loss indices: past the
    # block by ~2%, so there the keeper refreshes first (as on Ethereum): each batch and the
    # bid after them fit (SPECIFICATION.md, limits)
    assert BLOCK_GAS_LIMIT < insolvent_stale.total < BLOCK_GAS_LIMIT * 21 // 20
    assert insolvent.total < BLOCK_GAS_LIMIT // 3
    assert refresh.total < TX_GAS_CAP

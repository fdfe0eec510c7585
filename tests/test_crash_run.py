"""The crash run (`ape run crash`, crossmargin/tools/crash.py) at a small size: a 12-account book on
ETH and BTC (perps and dated futures on both sides, a delta-hedged option pair, passive USDC
depositors, a standing bidder), an insurance fund too small for the losses, one oracle round
of ETH −35%, BTC −25% and implied vol doubled, then keeper sweeps until nothing is
liquidatable. The loss waterfall (SPECIFICATION.md, Loss waterfall) must hold per slice, and
the deficit the fund leaves must be carried by the other side of the losing markets, not by
the depositors.
"""

from decimal import Decimal

import pytest

from crossmargin.tools.crash import CrashConfig, plan_book, run_crash
from crossmargin.units import SUB_BITS

CONFIG = CrashConfig(accounts=12, fund=Decimal(2_000))
DUST = Decimal("1e-12")  # USD: the loss index rounds each charge down by < 1 wei per unit


@pytest.fixture
def crash(cm, admin, trader, keeper, accounts):
    return run_crash(cm, admin, trader, keeper, accounts[9], CONFIG)


def test_plan_book__roles_and_both_sides():
    book = plan_book(CONFIG)
    assert len(book.accounts) == 12
    assert book.subs("passive") and book.standing
    for leg in book.legs:  # every trade is between two accounts of the book
        assert leg.buyer in book.accounts and leg.seller in book.accounts and leg.buyer != leg.seller
    with pytest.raises(ValueError, match="at least 8"):
        plan_book(CrashConfig(accounts=7))


def test_crash_run__waterfall_per_slice__depositors_untouched_while_deleveraging_carries(crash, trader):
    w = crash.waterfall
    assert crash.liquidatable_left == 0
    assert w.auctioned and w.covered  # the crash bankrupted someone
    # loss = fund + deleveraged + socialized, to the wei, for every insolvent slice
    assert all(c.exact for c in w.covered)
    assert w.total("loss") == w.total("fund") + w.total("deleveraged") + w.total("socialized")
    # the fund ran out: it paid all it held before the crash (to a token unit), and the
    # liquidation fees it earned during it (harvested while a loss is pending, since stop
    # 23); the rest went to the other side of the losing markets
    assert w.total("fund") >= crash.fund_before - Decimal("0.000001")
    assert w.total("deleveraged") > 0
    # the linear losses could carry every deficit here: only rounding dust is socialized...
    assert all(c.socialized < DUST for c in w.covered)
    # ...so the passive depositors lost nothing (at most their share of that dust)
    passive = crash.book.subs("passive")
    assert passive
    for sub in passive:
        assert crash.book.accounts[sub].deposit - crash.final_cash[sub] < DUST
    assert crash.passive_loss < DUST
    # each charge lands on accounts of the charged side only, rounded up against them
    own = int(trader.address, 16) << SUB_BITS
    for charge in w.charges:
        assert charge.payers
        assert all(account >> SUB_BITS == own >> SUB_BITS for account in charge.payers)
        paid = sum(charge.payers.values())
        assert charge.amount <= paid <= charge.amount + Decimal(len(charge.payers)) / 10**18
    # the loss index of each charged side is the sum of its charges per unit
    instrument_of = {c.name: c.instrument for c in w.charges}
    for name, longs, _n, _amount, per_unit in w.sides():
        assert w.loss_index[instrument_of[name]][0 if longs else 1] == per_unit
    # the standing bids filled within one keeper sweep of coming due
    assert w.standing
    assert all(s.lag <= CONFIG.step_seconds + 30 for s in w.standing)

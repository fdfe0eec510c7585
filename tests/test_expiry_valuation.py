"""Valuation of expired options before and after settlement (issue 11, finding 2).

Once an option's expiry passes it is worth its payoff at the settlement price, the first
oracle round at or after expiry, not at the live spot: until the clearinghouse stores that
price (at the instrument's first `settle`) longs count for nothing and shorts at their worst
intrinsic value over the grid; afterwards both at intrinsic(settlement price). No risk array
computed before expiry values the option after it.
"""

import ape
import pytest

from crossmargin.model import margin as model
from crossmargin.units import WAD, account_id, to_wad

STRIKE = 3000
SIZE = 10


@pytest.fixture
def trader_call(cm, create_account, maker, trader, list_option, admin):
    """The trader holds 10 ETH 3000 calls (1 day) bought from the maker at 100 each."""
    create_account(maker, {"USDC": "100000"})
    create_account(trader, {"USDC": "2000"})
    call = list_option("ETH", True, str(STRIKE), 1)
    cm.trade(trader, maker, call, str(SIZE), "100")
    return call


def push_feeds(cm, admin, spot: str, vol: str = "0.6") -> None:
    """New rounds of every feed a check reads (the clock moved past their heartbeats)."""
    cm.oracle.push(admin, "ETH/USD", spot)
    cm.oracle.push(admin, "ETH/IV", vol)
    cm.oracle.push(admin, "USDC/USD", "1")


def equity(cm, owner) -> int:
    return cm.engine.contract.margin(account_id(str(owner))).equity


def test_expired_long__live_spot_above_settlement__cannot_borrow_against_it(
    markets, cm, vault, clearing, trader_call, list_option, trader, maker, admin, chain, keeper
):
    """fails on c1dcd68: after expiry the long call is valued at intrinsic(live spot 4000),
    1000 per unit, though it settles at 3050 (50 per unit): the trader pays its accomplice
    (the maker) 2,500 USD for a worthless put, and settlement leaves its cash at about
    -1,000 USD, a loss for the fund."""
    call = trader_call
    worthless_put = list_option("ETH", False, "1000", 30)
    expiry = markets.instrument(call).expiry
    chain.mine(timestamp=expiry + 10)
    push_feeds(cm, admin, "3050")  # the settlement round: the first at or after expiry
    settlement_round = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    push_feeds(cm, admin, "4000")  # spot runs away after expiry
    cash = vault.cash_of(trader, 0)
    # unsettled: the long counts for nothing, whatever the live spot
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(trader, maker, worthless_put, "1", "2500")
    assert equity(cm, trader) == cash
    # settled: worth its payoff at the settlement price, not at the live spot
    cm.clearing.settle(keeper, maker, call, settlement_round)
    push_feeds(cm, admin, "4000")  # a new epoch: the array is computed again
    assert equity(cm, trader) == cash + to_wad((3050 - STRIKE) * SIZE)
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(trader, maker, worthless_put, "1", "2500")
    cm.clearing.settle(keeper, trader, call, 0)
    assert vault.cash_of(trader, 0) == cash + to_wad((3050 - STRIKE) * SIZE)


def test_expired_short__unsettled__valued_at_worst_intrinsic_over_grid(
    markets, cm, clearing, trader_call, maker, admin, chain, keeper
):
    """fails on c1dcd68: the short is valued at intrinsic(live spot) (0 at spot 2900) before
    the settlement price is known, not at its worst case over the grid (+30%: 3770)."""
    call = trader_call
    expiry = markets.instrument(call).expiry
    chain.mine(timestamp=expiry + 10)
    push_feeds(cm, admin, "2900")
    settlement_round = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    cash = cm.vault.contract.cash_of(maker, 0)
    m = cm.engine.contract.margin(account_id(str(maker)))
    worst = (2900 * 130 // 100 - STRIKE) * SIZE  # the grid's largest spot shock is +30%
    quantum = cm.engine.contract.underlyings(cm.manifest.underlyings["ETH"]).quantum
    # shorts are valued one lane unit up: at most quantum << shift per unit above the value
    shift = (to_wad(worst // SIZE) // quantum).bit_length() - 19
    assert cash - to_wad(worst) - SIZE * (quantum << shift) <= m.equity <= cash - to_wad(worst)
    cm.clearing.settle(keeper, maker, call, settlement_round)  # out of the money: pays nothing
    assert cm.vault.contract.cash_of(maker, 0) == cash
    assert markets.instrument(call).settlement_price == to_wad(2900)


def test_array_stored_before_expiry__not_used_after_it(
    markets, cm, engine, clearing, trader_call, trader, admin, chain, keeper
):
    """fails on c1dcd68: an array stored 30 minutes before expiry (same rounds, younger than
    `max_array_age`) still values the long call with its time value after expiry."""
    call = trader_call
    expiry = markets.instrument(call).expiry
    chain.mine(timestamp=expiry - 1_800)
    push_feeds(cm, admin, str(STRIKE))  # at the money: all time value
    cm.engine.refresh(keeper, [call])
    u = cm.manifest.underlyings["ETH"]
    epoch = engine.epoch(u)[2]
    assert engine.risk_array(call)[0] == epoch
    cash = cm.vault.contract.cash_of(trader, 0)
    assert equity(cm, trader) > cash + SIZE * WAD  # over 1 USD of time value per unit
    chain.mine(timestamp=expiry + 1)
    # same rounds, 1801 s old: before the fix the epoch (and the array) were still current
    assert equity(cm, trader) == cash
    cm.engine.refresh(keeper, [call])
    assert engine.epoch(u)[2] == epoch + 1
    assert equity(cm, trader) == cash


@pytest.fixture
def hedged_calls(cm, create_account, maker, trader, list_option, admin, chain, insure):
    """The trader holds 10 ETH 2500 calls (2 days, in the money) bought at 510 each and is
    short 10 ETH perp at 3,000 against the maker, on 6,500 USDC. The last round before
    expiry is at 3,150 (the calls gain 1,500, the perp loses as much); the expiry has come
    and no round at or after it yet (nobody can settle). The fund holds 100,000 USDC."""
    insure("100000")
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "6500"})
    call = list_option("ETH", True, "2500", 2)
    cm.trade(trader, maker, call, str(SIZE), "510")
    cm.trade(maker, trader, cm.markets.perp("ETH"), str(SIZE), "3000")
    expiry = cm.markets.contract.instrument(call).expiry
    chain.mine(timestamp=expiry - 20)
    push_feeds(cm, admin, "3150")  # the last round before expiry
    chain.mine(timestamp=expiry)
    return call


def test_expired_long_call__unsettled_in_the_money__not_sold_as_insolvent(
    cm, vault, hedged_calls, trader, maker, stranger, admin, keeper
):
    """fails on 6c327b7 (audit, stop 23): the liquidation counted the expired, unsettled long
    calls for nothing, as withdrawals do: the hedged account (calls 650 in the money, the
    short perp down 1,500) was worth its cash less the perp's loss, below zero, and anyone
    could sell it as insolvent, the fund paying a deficit that does not exist. A
    liquidation now values the calls at their intrinsic value in every scenario, as with no
    time left."""
    call = hedged_calls
    account = account_id(str(trader))
    held = vault.cash_of(trader, 0)
    # withdrawals, trades and views keep the worst case: the long calls count for nothing
    view = cm.engine.contract.margin(account)
    assert tuple(view) == tuple(model.margin(*model.snapshot(cm, trader)))
    assert view.equity <= 0
    with ape.reverts("vault: insufficient margin"):
        cm.vault.withdraw(trader, "USDC", "1")
    # the liquidation: the calls at intrinsic (650 each, floored to lanes), the perp hedges them
    bound = cm.engine.contract.refresh_bound.call(account, 1)
    assert tuple(bound) == tuple(model.margin(*model.snapshot(cm, trader, liquidation=True), hint=1))
    assert view.equity + to_wad(6490) <= bound.equity <= view.equity + to_wad(6500)
    assert bound.maintenance < bound.equity
    with ape.reverts("liquidator: account healthy"):
        cm.liquidator.start(stranger, account)
    # the stored array stays the worst case (never the liquidation's)
    cm.engine.refresh(keeper, [call])
    assert cm.engine.contract.risk_array(call)[3]
    assert tuple(cm.engine.contract.margin(account)) == tuple(view)
    # the first round after expiry; the maker's settlement stores the settlement price, the
    # trader's stored array is still the unsettled one: the liquidation values the calls at
    # the settlement price, the views keep the array
    push_feeds(cm, admin, "3150")
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    cm.engine.refresh(keeper, [call])
    fund_before = cm.fund.contract.totalAssets()
    cm.clearing.settle(stranger, maker, call, round_id)
    assert cm.engine.contract.risk_array(call)[3]
    settled = cm.engine.contract.refresh_bound.call(account, 1)
    assert tuple(settled) == tuple(model.margin(*model.snapshot(cm, trader, liquidation=True), hint=1))
    assert settled.equity > settled.maintenance
    cm.clearing.settle(stranger, trader, call, round_id)
    assert vault.cash_of(trader, 0) == held + to_wad(6500)
    assert cm.fund.contract.totalAssets() == fund_before

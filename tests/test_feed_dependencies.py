"""Which oracle feeds a valuation depends on (issue 11, finding 10).

A valuation reads only the feeds its positions need: an underlying's vol feed only where
the account holds options on it. Nobody but the owner or its operators can add a feed to an
account's dependencies (a collateral the account does not hold). For a feed it does need,
liquidation values the account at the feed's last answer clamped into its bounds, staleness
ignored, instead of reverting (SPECIFICATION.md, oracle router).

The book: `trader` holds 10,000 USDC and is short 10 ETH perp at 3,000 against `maker`; at
3,500 it is below maintenance (see tests/test_liquidation.py).
"""

import ape
import pytest

from crossmargin.model import margin as model
from crossmargin.units import account_id


def stale_feeds_but(cm, admin, chain, fresh: dict[str, str]) -> None:
    """Moves the clock past every heartbeat (3600 s + 300 s grace), then pushes `fresh`."""
    chain.mine(timestamp=chain.pending_timestamp + 4_000)
    for name, answer in fresh.items():
        cm.oracle.push(admin, name, answer)


def test_perp_only__stale_vol_feed__valued_and_liquidated(cm, book, keeper, admin, chain):
    """fails on c1dcd68: a perp-only account read the ETH vol feed, so a stale vol round
    reverted its valuation and its liquidation start ("oracle: stale price")."""
    stale_feeds_but(cm, admin, chain, {"ETH/USD": "3500", "USDC/USD": "1"})
    m = cm.engine.contract.margin(book)
    assert 0 < m.equity < m.maintenance
    cm.liquidator.start(keeper, book)
    assert cm.vault.contract.frozen(book)


def test_perp_only__vol_above_bound__valued_and_liquidated(cm, book, keeper, admin):
    """fails on c1dcd68: an implied vol of 6.0 (above the router's bound of 5.0, plausible in
    a crash) reverted the valuation of a perp-only account ("oracle: price out of bounds")."""
    cm.oracle.push(admin, "ETH/USD", "3500")
    cm.oracle.push(admin, "ETH/IV", "6")
    m = cm.engine.contract.margin(book)
    assert 0 < m.equity < m.maintenance
    cm.liquidator.start(keeper, book)
    assert cm.vault.contract.frozen(book)


def break_spot(cm, admin, chain, case: str, price: str) -> None:
    """The ETH spot feed's last answer is ``price`` and then it breaks: it goes stale (no
    round for 4,000 s; the other feeds stay fresh), or its answer leaves the router's bounds
    (2,000,000 > 1,000,000; a liquidation's reads clamp it to the bound)."""
    if case == "stale spot":
        cm.oracle.push(admin, "ETH/USD", price)
        stale_feeds_but(cm, admin, chain, {"ETH/IV": "0.6", "USDC/USD": "1"})
    else:
        cm.oracle.push(admin, "ETH/USD", "2000000")


@pytest.mark.parametrize("case", ["stale spot", "spot above bound"])
def test_broken_spot__insolvent_perp_account__started(cm, book, keeper, admin, chain, insure, case):
    """fails on 7bf7dfd (audit, stop 23): an insolvent start marks the sides its deleveraging
    may charge (`Clearinghouse.mark`), which read the index with the router's checked
    `price`, so a broken spot feed reverted the start ("oracle: stale price", "oracle:
    price out of bounds") in the very crash the liquidation reads exist for. It now reads
    it as the valuation does."""
    insure("10")  # far too little: the start marks the maker's long
    break_spot(cm, admin, chain, case, "4100")  # 4,100: equity about -1,000
    assert cm.engine.contract.refresh_bound.call(book, 1).equity <= 0
    receipt = cm.liquidator.start(keeper, book)
    [pending] = receipt.decode_logs(cm.clearing.contract.ChargePending)
    assert pending.instrument == cm.markets.perp("ETH") and pending.longs


def test_stale_spot__insolvent_perp_account__bid_out(cm, book, keeper, bidder, admin, chain, insure):
    """The bid of the same insolvent account on the stale spot: the fund, then the maker's
    long deleveraged (each reads the index as the valuation does), the whole book sold."""
    insure("10")
    break_spot(cm, admin, chain, "stale spot", "4100")
    cm.liquidator.start(keeper, book)
    receipt = cm.liquidator.bid(bidder, book, "1", "0")
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    assert covered.deleveraged > 0
    assert not cm.liquidator.contract.in_auction(book)
    assert cm.clearing.contract.perp_position(book, cm.manifest.underlyings["ETH"]).size == 0


def test_stale_spot__solvent_perp_account__bid_goes_through(cm, book, keeper, bidder, admin, chain):
    """fails on 7bf7dfd (audit, stop 23): the start of a solvent account under maintenance
    went through on a stale spot, but the bid's perp transfer accrued funding with a checked
    read ("oracle: stale price"), so the account sat frozen until the feed came back."""
    break_spot(cm, admin, chain, "stale spot", "3500")
    cm.liquidator.start(keeper, book)
    taken, _price = cm.liquidator.contract.bid.call(book, 10**18, 10**30, sender=bidder)
    assert taken > 0
    cm.liquidator.bid(bidder, book, "1", "1000000")
    assert cm.clearing.contract.perp_position(account_id(bidder.address, 0), cm.manifest.underlyings["ETH"]).size != 0


def test_trade__stale_spot__still_reverts(cm, book, maker, trader, admin, chain):
    """The liquidation's reads stay the liquidation's: a perp fill on the same stale spot
    still reverts with the oracle's reason."""
    break_spot(cm, admin, chain, "stale spot", "3000")
    with ape.reverts("oracle: stale price"):
        cm.trade(maker, trader, cm.markets.perp("ETH"), "1", "3000", preflight=False)


def test_deposit__stranger_adds_new_collateral__reverts(cm, book, fund, trader, stranger, operator, admin, chain):
    """fails on c1dcd68: anyone could drop 1 satoshi of WBTC into the trader's ETH-perp
    account, and its liquidation then depended on the BTC feed too (a stale BTC round
    blocked it)."""
    fund(stranger, "WBTC", "1")
    fund(stranger, "USDC", "10")
    with ape.reverts("vault: new collateral from a stranger"):
        cm.vault.deposit(stranger, "WBTC", "0.00000001", recipient=trader)
    # the settlement asset adds no feed: anyone may deposit it (to cure the account, say)
    cm.vault.deposit(stranger, "USDC", "10", recipient=trader)
    # the owner's operators may add collateral, and once held anyone may add more of it
    cm.vault.contract.set_operator(0, operator, True, sender=trader)
    fund(operator, "WBTC", "1")
    cm.vault.deposit(operator, "WBTC", "0.00000001", recipient=trader)
    cm.vault.deposit(stranger, "WBTC", "0.00000001", recipient=trader)
    assert cm.vault.contract.balance_of(trader, 0, cm.token("WBTC").address) > 0


# ------------------------------------------------------------------ feeds an account needs, broken


@pytest.fixture
def short_calls(cm, create_account, maker, trader, list_option):
    """`trader` short 10 ETH 3000 calls (30 days) at 200 with 10,000 USDC; `maker` long."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    call = list_option("ETH", True, "3000", 30)
    cm.trade(maker, trader, call, "10", "200")
    return account_id(trader.address, 0)


def started(cm, receipt):
    [event] = receipt.decode_logs(cm.liquidator.contract.AuctionStarted)
    return event


@pytest.mark.parametrize(
    "case, reason",
    [
        ("stale vol", "oracle: stale price"),
        ("vol above bound", "oracle: price out of bounds"),
        ("stale spot", "oracle: stale price"),
    ],
)
def test_options_account__broken_feed_in_crash__liquidation_values_at_clamped_last_answer(
    cm, short_calls, trader, keeper, admin, chain, case, reason
):
    """fails on c1dcd68: the liquidation start reverted with the oracle's reason, so a
    broken feed blocked the auction of an account under maintenance. Withdrawals (and the
    views) keep the checked reads."""
    account = short_calls
    if case == "stale vol":
        stale_feeds_but(cm, admin, chain, {"ETH/USD": "3800", "USDC/USD": "1"})
    elif case == "vol above bound":
        cm.oracle.push(admin, "ETH/USD", "3800")
        cm.oracle.push(admin, "ETH/IV", "6")  # clamped to the bound, 5.0
    else:
        cm.oracle.push(admin, "ETH/USD", "3800")
        stale_feeds_but(cm, admin, chain, {"ETH/IV": "0.6", "USDC/USD": "1"})
    with ape.reverts(reason):
        cm.engine.contract.margin(account)
    with ape.reverts(reason):
        cm.vault.withdraw(trader, "USDC", "1")
    # the reference model with the same reads equals the liquidation's valuation
    bound = cm.engine.contract.refresh_bound.call(account, 1)
    assert tuple(bound) == tuple(model.margin(*model.snapshot(cm, trader, liquidation=True)))
    event = started(cm, cm.liquidator.start(keeper, account))
    assert event.equity < event.maintenance
    assert cm.vault.contract.frozen(account)


def test_options_account__spot_above_bound__valued_at_the_bound(cm, short_calls, keeper, admin):
    """fails on c1dcd68: a spot of 2,000,000 (above the feed's bound, 1,000,000) reverted the
    liquidation start; it now values the short calls at the bound: insolvent."""
    account = short_calls
    cm.oracle.push(admin, "ETH/USD", "2000000")
    with ape.reverts("oracle: price out of bounds"):
        cm.engine.contract.margin(account)
    event = started(cm, cm.liquidator.start(keeper, account))
    # cash 12,000 less the maker's fee, short 10 calls worth at least 997,000 each
    assert event.equity < -9_900_000 * 10**18
    assert cm.liquidator.auction(account).insolvent_at != 0

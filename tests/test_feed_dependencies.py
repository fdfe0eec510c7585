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

from crossmargin.units import account_id


@pytest.fixture
def book(cm, create_account, maker, trader):
    """`trader` short 10 ETH perp at 3,000 with 10,000 USDC; `maker` long with 1M USDC."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    cm.trade(maker, trader, cm.clearing.perp("ETH"), "10", "3000")
    return account_id(trader.address, 0)


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

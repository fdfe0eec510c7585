"""Known gaps: findings of stop 23's security review that are not fixed yet (README,
Security). Each is its reviewer's proof of concept, marked `xfail(strict=True)`: it states
the property that should hold and fails today; the day a fix makes it pass, strict xfail
fails the suite, and the test moves to the module of the contract it covers.

The book of the hold-back cases is conftest's `short_calls`: an insolvent short-call
account whose loss goes beyond a 10 USDC fund (so it is socialized), and two passive 50,000
USDC depositors, `taker` (here the attacker's owner, on other subaccounts) and `operator`
(the one who stays).
"""

import ape
import pytest
from prices import set_eth

from crossmargin.units import account_id, to_wad

DAY = 86_400


def set_all(cm, admin, spot: str, vol: str = "0.6") -> None:
    """ETH's spot and vol and the USDC feed, fresh."""
    set_eth(cm, admin, spot, vol)
    cm.oracle.push(admin, "USDC/USD", "1")


@pytest.fixture
def no_fees(exchange, admin):
    exchange.set_fees(0, 0, 0, sender=admin)


@pytest.fixture
def short_calls_and_indebted_weth(
    cm, list_option, admin, maker, trader, taker, operator, stranger, create_account, insure
):
    """`short_calls` at ETH 3,000, plus the attacker's `taker/4`: 10 WETH, a cash debt of
    about 21,000 (a perp bought at 24,000 from its own `taker/6` and sold back at 3,000) and
    short 12 ETH perp against its own `taker/5`. Then ETH goes to 6,000: the short calls are
    insolvent, `taker/4` is below maintenance but solvent, its cash still in debt."""
    insure("10")
    call = list_option("ETH", True, "3000", 30)
    perp = cm.markets.perp("ETH")
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "20000"})
    create_account(taker, {"USDC": "50000"})
    create_account(operator, {"USDC": "50000"})
    cm.trade(maker, trader, call, "10", "150")
    create_account(taker, {"WETH": "10"}, subaccount=4)
    create_account(taker, {"USDC": "100000"}, subaccount=5)
    create_account(taker, {"USDC": "100000"}, subaccount=6)
    cm.trade(taker, taker, perp, "1", "24000", maker_subaccount=4, taker_subaccount=6)
    cm.trade(taker, taker, perp, "-1", "3000", maker_subaccount=4, taker_subaccount=6)
    cm.trade(taker, taker, perp, "-12", "3000", maker_subaccount=4, taker_subaccount=5)
    set_eth(cm, admin, "6000")
    return account_id(trader.address, 0), account_id(taker.address, 4)


def covered_of(cm, receipt):
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    return covered


@pytest.mark.xfail(strict=True, reason="open: cash turned into an unrealized gain leaves the socialization base")
def test_hold_back__realized_perp_loss_into_own_unrealized_gain__pays_its_share(
    cm, vault, admin, short_calls, bidder, stranger, taker, operator, create_account
):
    """Positive cash leaves the balances a loss is spread over without a hold-back when it
    pays a realized perp loss whose other side stays an unrealized gain.

    The attacker's owner holds three subaccounts: /1 long and /2 short 20 ETH perp against
    each other. ETH moves 500: /2 is 10,000 down, unrealized. The insolvent auction starts
    (the loss is known). /2 buys its short back from /3 (which opens a fresh short at the
    mark): /2 realizes the 10,000 out of its positive cash (a debit: no hold-back), while
    the matching gain stays unrealized in /1's long. After the bid /1 and /3 close against
    each other and /1 realizes the 10,000 into cash the socialization never touched. The
    pair's cash left the positive balances like a withdrawal, gave up nothing, and the
    stayer pays more than its share.
    """
    perp = cm.markets.perp("ETH")
    for sub in (1, 2, 3):
        create_account(taker, {"USDC": "40000"}, subaccount=sub)
    cm.trade(taker, taker, perp, "20", "6000", maker_subaccount=1, taker_subaccount=2)  # /1 long, /2 short
    set_eth(cm, admin, "6500")  # /2 is 10,000 down (unrealized); the short calls worse off

    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > cm.fund.contract.totalAssets() * 10**12  # a hold-back is due
    base = vault.positive_cash()
    stake = vault.cash_of(operator, 0)
    short_cash = vault.cash_of(taker, 2)

    # /2 closes its short against /3 at the mark: the realized loss leaves /2's positive cash
    receipt = cm.trade(taker, taker, perp, "20", "6500", maker_subaccount=2, taker_subaccount=3)
    realized = short_cash - vault.cash_of(taker, 2)
    assert realized > to_wad(10000)  # the loss and /2's fee
    assert vault.cash_of(taker, 2) > 0  # still a positive balance, just a smaller one
    left = base - vault.positive_cash()
    print(
        f"positive cash left the base: {left / 1e18:.2f} USD; held back: "
        f"{sum(e.amount for e in receipt.decode_logs(vault.ExitHeldBack)) / 1e18:.2f}"
    )

    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    loss = covered_of(cm, bid).socialized
    assert loss > 0
    fair = loss * stake // base  # the stayer's share had nobody left
    stayer_paid = stake - vault.cash_of(operator, 0)

    # after the bid /1 realizes its gain into cash nobody socialized
    cm.trade(taker, taker, perp, "-20", "6500", maker_subaccount=1, taker_subaccount=3)
    print(
        f"socialized {loss / 1e18:.2f}; stayer paid {stayer_paid / 1e18:.6f}, fair {fair / 1e18:.6f}; "
        f"/1 cash {vault.cash_of(taker, 1) / 1e18:.2f}"
    )

    # the property the hold-back promises (SPECIFICATION.md, Vault: "a stayer ... pays no
    # more than if nobody had left")
    assert stayer_paid <= fair + 1, "the stayer paid more than its share: the pair's 10,000 left without a hold-back"


@pytest.mark.xfail(strict=True, reason="open: cash turned into an unsettled claim leaves the socialization base")
def test_hold_back__expiry_payoff_paid_first_into_own_unsettled_claim__pays_its_share(
    cm, vault, admin, list_option, maker, trader, taker, operator, stranger, bidder, create_account, insure, chain
):
    """The expiry variant of the realized-perp-loss path: an expired option's payoff is cash
    on the side that settled first only. The attacker's /2 is short 10 expired ITM calls to
    its own /1. With the insolvent auction public, /2 settles first: the 30,000 payoff
    leaves its positive cash (a debit: no hold-back) into /1's unsettled claim, which /1
    settles after the bid into cash the socialization never touched.
    """
    insure("10")
    call = list_option("ETH", True, "3000", 30)
    expiring = list_option("ETH", True, "3000", 1)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "20000"})
    create_account(operator, {"USDC": "50000"})
    for sub in (1, 2):
        create_account(taker, {"USDC": "40000"}, subaccount=sub)
    cm.trade(maker, trader, call, "10", "150")
    cm.trade(taker, taker, expiring, "10", "100", maker_subaccount=1, taker_subaccount=2)  # /1 long, /2 short
    chain.mine(timestamp=cm.markets.contract.instrument(expiring).expiry + 10)
    cm.oracle.push(admin, "USDC/USD", "1")
    set_eth(cm, admin, "6000")  # settles the expired calls 30,000 in the money; the short calls insolvent
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    short_calls = account_id(trader.address, 0)

    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > cm.fund.contract.totalAssets() * 10**12
    base = vault.positive_cash()
    stake = vault.cash_of(operator, 0)

    receipt = cm.clearing.settle(stranger, taker, expiring, round_id, subaccount=2)  # the payer first
    assert receipt.decode_logs(vault.ExitHeldBack) == []
    assert vault.cash_of(taker, 2) > 0
    print(f"positive cash left the base: {(base - vault.positive_cash()) / 1e18:.2f}")

    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    loss = covered_of(cm, bid).socialized
    fair = loss * stake // base
    stayer_paid = stake - vault.cash_of(operator, 0)
    cm.clearing.settle(stranger, taker, expiring, 0, subaccount=1)  # the claim, untouched
    print(
        f"socialized {loss / 1e18:.2f}; stayer paid {stayer_paid / 1e18:.4f}, its share {fair / 1e18:.4f}; "
        f"/1 cash {vault.cash_of(taker, 1) / 1e18:.2f}"
    )
    assert stayer_paid <= fair + 1, "the stayer paid more than its share: the payoff left without a hold-back"


@pytest.mark.xfail(strict=True, reason="open: a solvent bid on ones own indebted account holds nothing back")
def test_hold_back__solvent_bid_on_own_indebted_account__pays_its_share(
    cm, vault, engine, short_calls_and_indebted_weth, bidder, stranger, taker, operator
):
    """Positive cash leaves the balances a loss is spread over without a hold-back when it
    buys a slice of an indebted account in a solvent liquidation: the bid's price is a
    liquidator `settle_cash` credit into the account's debt (`trading` false: no hold) and
    `transfer_fraction` moves the slice's debt onto the bidder's positive cash.

    The attacker's `taker/0` (50,000 USDC, a passive depositor like the stayer `operator`)
    sees the insolvent auction of the short calls start. Its own `taker/4` (WETH and a cash
    debt, below maintenance) is auctioned too; `taker/0` bids for it. Its cash pays the
    price into /4's debt and takes on /4's debt, so the pair's positive cash shrinks by
    price + debt, turned into WETH, and gives up nothing. The stayer pays more than its share.
    """
    short_calls, indebted = short_calls_and_indebted_weth
    m = engine.margin(indebted)
    print(f"/4: equity {m.equity / 1e18:.2f} MM {m.maintenance / 1e18:.2f} cash {vault.cash_of(taker, 4) / 1e18:.2f}")
    assert 0 < m.equity < m.maintenance and vault.cash_of(taker, 4) < 0

    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > cm.fund.contract.totalAssets() * 10**12  # a hold-back is due
    base = vault.positive_cash()
    stake = vault.cash_of(operator, 0)
    attacker_cash = vault.cash_of(taker, 0)

    cm.liquidator.start(stranger, indebted)
    receipt = cm.liquidator.bid(taker, indebted, "1", "100000")  # taker/0 buys /4
    assert receipt.decode_logs(vault.ExitHeldBack) == []
    left = base - vault.positive_cash()
    print(
        f"taker/0 cash {attacker_cash / 1e18:.2f} -> {vault.cash_of(taker, 0) / 1e18:.2f}; "
        f"positive cash left the base: {left / 1e18:.2f}; "
        f"WETH now {vault.balance_of(taker, 0, cm.token('WETH').address) / 1e18}"
    )

    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    loss = covered_of(cm, bid).socialized
    assert loss > 0
    fair = loss * stake // base
    stayer_paid = stake - vault.cash_of(operator, 0)
    print(f"socialized {loss / 1e18:.2f}; stayer paid {stayer_paid / 1e18:.6f}, fair {fair / 1e18:.6f}")
    assert stayer_paid <= fair + 1, "the stayer paid more than its share: the bidder's cash left without a hold-back"


@pytest.mark.xfail(strict=True, reason="open: no loss is reserved before the start")
def test_hold_back__withdrawal_between_the_price_and_the_start__pays_its_share(
    cm, vault, short_calls, taker, operator, stranger, bidder
):
    """The loss is public from the oracle round that makes the account insolvent (any view,
    e.g. `Lens` or `engine.margin`, shows equity < 0), but the hold-back starts only with
    `Liquidator.start`. A holder that withdraws between the two (a block to spare, or in
    front of the keeper's `start`) and deposits again after the bid pays nothing, and the
    stayer pays more than its share.
    """
    # the fixture's last oracle round (ETH at 6,000) made the short calls insolvent
    assert cm.engine.contract.margin(short_calls).equity < 0
    base = vault.positive_cash()
    stake = vault.cash_of(operator, 0)

    receipt = cm.vault.withdraw(taker, "USDC", "50000")  # before the keeper's start
    assert receipt.decode_logs(vault.ExitHeldBack) == []
    cm.liquidator.start(stranger, short_calls)
    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    loss = covered_of(cm, bid).socialized
    fair = loss * stake // base
    stayer_paid = stake - vault.cash_of(operator, 0)
    print(f"socialized {loss / 1e18:.2f}; stayer paid {stayer_paid / 1e18:.4f}, its share {fair / 1e18:.4f}")
    assert stayer_paid <= fair + 1, (
        "the stayer paid the share of a holder that left after the price made the loss known"
    )


@pytest.mark.xfail(strict=True, reason="open: a dust fill takes the next fills time weight")
def test_funding__a_one_wei_fill_ahead_of_a_real_one__voids_its_time_weight(
    no_fees, cm, clearing, books, create_account, maker, taker, operator, trader, chain
):
    """The EMA weights a fill by the time since the last fill (min(dt, window)) times its
    notional share. A 1-wei fill moves it by nothing (the issue-11 fix) but still resets
    the clock: sent ahead of each real fill (one per block or second), it leaves every real
    fill a dt of a second or so, and the premium EMA (so the funding rate) stays frozen
    wherever it is, for the gas of a 1-wei fill. Property: after a quiet hour, a
    full-notional fill at a 1% premium moves the EMA most of the way to 1% (as it does
    alone: test_trade_rules), whatever 1-wei fill came a second before it."""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    create_account(operator, {"USDC": "1000"})
    create_account(trader, {"USDC": "1000"})
    chain.mine(timestamp=chain.pending_timestamp + 3600)
    # the attacker's two accounts: one wei at the index
    order = cm.exchange.make_order(operator, perp, True, size_raw=1, price=3000)
    cm.exchange.fill(trader, order, cm.exchange.sign(operator, order), size_raw=1, taker_subaccount=0)
    assert clearing.funding(u).premium_ema == 0
    cm.trade(maker, taker, perp, "34", "3030")  # 102,000 USD at a 1% premium
    ema = clearing.funding(u).premium_ema
    print("ema after the real fill", ema)
    assert ema >= to_wad("0.005"), "a 1-wei fill voided the next fill's weight"


@pytest.mark.xfail(strict=True, reason="open: an out-of-bounds first round after expiry blocks settlement")
def test_expiry__first_round_after_it_out_of_bounds__the_future_can_never_settle(
    no_fees, cm, markets, admin, maker, taker, keeper, create_account, chain
):
    """The settlement price is the first round at or after expiry, normalized with the
    feed's bounds: when that round's answer is outside them (the bounds exist to catch
    such prints), `settlement_price(hint = that round)` reverts "oracle: price out of
    bounds", any other hint "oracle: bad round hint", and the fallback (hint 0) "oracle:
    round after expiry". Nothing ever settles the future: its payoffs stay locked and
    both sides stay valued at the grid's worst case. Property: an expired future can be
    settled once the feed is back in bounds."""
    create_account(maker, {"USDC": "100000"})
    create_account(taker, {"USDC": "100000"})
    expiry = chain.pending_timestamp + 2 * DAY
    future = cm.markets.list_future(admin, "ETH", expiry, 10**6)
    cm.trade(maker, taker, future, "1", "3000")
    chain.mine(timestamp=expiry + 10)
    cm.oracle.push(admin, "ETH/USD", "2000000")  # the first round after expiry: above the 1e6 bound
    bad = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    set_all(cm, admin, "3100")  # back in bounds
    chain.mine(timestamp=chain.pending_timestamp + 30 * DAY)  # past any fallback delay
    set_all(cm, admin, "3100")
    for hint in (bad, bad + 1, 0):
        try:
            cm.clearing.settle(keeper, maker, future, hint)
            break
        except ape.exceptions.ContractLogicError as error:
            print("hint", hint, "->", error)
    assert cm.clearing.futures(maker) == [], "the expired future could not be settled"

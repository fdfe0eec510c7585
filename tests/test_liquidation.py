"""Dutch-auction liquidation: start, solvent bids (partial, capped, small account), the
insolvent phase paid by the insurance fund, socialization of what it cannot pay,
conversion, termination and cure by deposit, and every bad input with its exact reason.

The book: `trader` holds 10,000 USDC and is short 10 ETH perp at 3,000 against `maker`.
At 3,000 its MM is 4,800 (the +15% scenario, 4,500, plus 1% of notional); at 3,500 equity
is about 5,000 < MM 5,600 (solvent auction); at 4,100 equity is about -1,000 (insolvent).
"""

import ape
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prices import set_eth
from sizes import examples

from crossmargin.model import margin as model
from crossmargin.model.auction import AuctionParams, cap, insolvent_terms, multiplier, solvent_terms, tip_owed, tip_paid
from crossmargin.units import WAD, account_id, key, to_wad

NOT_OWNER = "ownable: caller is not the owner"


def margin(engine, account):
    m = engine.margin(account)
    return m.equity, m.maintenance


def started(receipt, liquidator):
    [event] = receipt.decode_logs(liquidator.AuctionStarted)
    return event


# ------------------------------------------------------------------ start


def test_start__healthy__reverts(cm, book, keeper):
    with ape.reverts("liquidator: account healthy"):
        cm.liquidator.start(keeper, book)


def test_start__below_maintenance__freezes_the_account(cm, vault, book, keeper, admin, trader, maker):
    set_eth(cm, admin, "3500")
    equity, mm = margin(cm.engine.contract, book)
    assert 0 < equity < mm
    receipt = cm.liquidator.start(keeper, book)
    event = started(receipt, cm.liquidator.contract)
    assert (event.account, event.keeper, event.equity, event.maintenance) == (book, keeper.address, equity, mm)
    auction = cm.liquidator.auction(book)
    assert auction.active and auction.keeper == keeper.address and auction.insolvent_at == 0
    assert vault.frozen(book)
    with ape.reverts("vault: account in auction"):
        cm.vault.withdraw(trader, "USDC", "1")
    with ape.reverts("vault: account in auction"):
        cm.vault.move(trader, "USDC", "1", 0, 1)
    with ape.reverts("clearing: account in auction"):
        cm.trade(maker, trader, cm.markets.perp("ETH"), "-1", "3500")
    # deposits stay open: they may cure it
    before = cm.vault.balances(trader).cash
    cm.token("USDC").mint(admin, trader, "10")
    cm.vault.deposit(trader, "USDC", "10")
    assert cm.vault.balances(trader).cash == before + 10
    # the freeze shares the cash word: a cash change keeps it
    assert vault.frozen(book)
    with ape.reverts("vault: account in auction"):
        cm.vault.withdraw(trader, "USDC", "1")


def test_start__keeper_hint__proves_the_shortfall_at_the_worst_scenario(cm, book, keeper, admin):
    """The hint names each underlying's worst scenario; the start then counts that scenario
    alone. At the worst one the bound is the requirement itself; a hint naming a scenario
    that does not bind gives a lower bound, and the start fails rather than freeze a book
    it has not proved short."""
    set_eth(cm, admin, "3500")
    equity, mm = margin(cm.engine.contract, book)
    eth = cm.engine.contract.underlying_ids(key("ETH"))
    hint = cm.engine.hint(book)
    # the short perp loses most at +15% (any vol; the first of the three is reported)
    assert hint == 4 << (8 * eth)
    bound = cm.engine.contract.refresh_bound.call(book, hint)
    assert (bound.equity, bound.maintenance) == (equity, mm)
    for wrong in (1, 9):  # -15% (the short perp gains), 0% with vol up (no loss)
        low = cm.engine.contract.refresh_bound.call(book, wrong << (8 * eth))
        assert low.equity == equity and low.maintenance < mm and low.initial < cm.engine.contract.margin(book).initial
        assert low.maintenance < equity
        with ape.reverts("liquidator: account healthy"):
            cm.liquidator.start(keeper, book, wrong << (8 * eth))
    # an underlying the account does not touch: its byte is not read
    btc = cm.engine.contract.underlying_ids(key("BTC"))
    receipt = cm.liquidator.start(keeper, book, hint | (30 << (8 * btc)))
    event = started(receipt, cm.liquidator.contract)
    assert (event.equity, event.maintenance) == (equity, mm)
    assert cm.vault.contract.frozen(book)


def test_start__bad_hint__reverts(cm, book, keeper, admin):
    set_eth(cm, admin, "3500")
    eth = cm.engine.contract.underlying_ids(key("ETH"))
    # (bit 0 is no scenario: it asks for the liquidation reads, see test_feed_dependencies.py)
    # (1 << 136: byte 17, past the last underlying id, 16)
    for hint in (23 << (8 * eth), 255 << (8 * eth), 2, 1 << (8 * 17), 2**256 - 1):
        with ape.reverts("engine: bad hint"):
            cm.liquidator.start(keeper, book, hint)
        with ape.reverts("engine: bad hint"):
            cm.engine.contract.refresh_bound.call(book, hint)
    assert not cm.vault.contract.frozen(book)
    # the last scenario is a good hint (+10% vol down: a loss, but not the worst)
    last = cm.engine.contract.refresh_bound.call(book, 22 << (8 * eth))
    assert 0 < last.maintenance < margin(cm.engine.contract, book)[1]


def test_start__twice__reverts(cm, book, keeper, admin):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(keeper, book)
    with ape.reverts("liquidator: already in auction"):
        cm.liquidator.start(keeper, book)


def test_start__insolvent__marks_the_ramp_at_once(cm, book, keeper, admin):
    set_eth(cm, admin, "4100")
    receipt = cm.liquidator.start(keeper, book)
    assert started(receipt, cm.liquidator.contract).equity < 0
    assert cm.liquidator.auction(book).insolvent_at == receipt.timestamp


def test_start__while_paused__goes_through(cm, vault, book, keeper, admin, guardian):
    vault.pause(sender=guardian)
    set_eth(cm, admin, "3500")
    cm.liquidator.start(keeper, book)
    assert vault.frozen(book)


# ------------------------------------------------------------------ solvent bids


def test_bid__solvent_partial__price_fee_tip_and_positions(markets, cm, vault, clearing, book, bidder, admin, chain):
    set_eth(cm, admin, "3500")
    start = cm.liquidator.start(bidder, book)
    chain.mine(timestamp=start.timestamp + 300)
    fund_account = account_id(cm.fund.address, 0)
    fund_cash, bidder_cash, trader_cash = (
        vault.account_state(fund_account)[0],
        vault.cash_of(bidder, 0),
        vault.account_state(book)[0],
    )
    receipt = cm.liquidator.bid(bidder, book, "0.1", "1000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    terms = solvent_terms(bid.equity, bid.maintenance, to_wad("0.1"), receipt.timestamp - start.timestamp)
    assert (bid.fraction, bid.price, bid.fee) == (terms.fraction, terms.price, terms.fee)
    assert terms.fraction == to_wad("0.1")  # under the buffer cap
    tip = min(to_wad(5), terms.fee)
    # cash: the bidder pays the price and takes 10% of the trader's cash; the trader gets the
    # price less the fee; the fund the fee less the keeper's tip; the keeper (= bidder) the tip
    moved = trader_cash * to_wad("0.1") // WAD
    assert vault.account_state(book)[0] == trader_cash - moved + terms.price - terms.fee
    assert vault.cash_of(bidder, 0) == bidder_cash + moved - terms.price + tip
    assert vault.account_state(fund_account)[0] == fund_cash + terms.fee - tip
    # positions: a tenth of the short perp, its cost pro rata
    u = cm.manifest.underlyings["ETH"]
    assert clearing.perp_position(book, u).size == -to_wad(9)
    assert clearing.perp_position(book, u).cost == -to_wad(27000)
    assert clearing.perp_position(account_id(bidder.address, 0), u).size == -to_wad(1)
    assert clearing.perp_position(account_id(bidder.address, 0), u).cost == -to_wad(3000)
    assert markets.instrument(cm.markets.perp("ETH")).open_interest == to_wad(10)
    # the tip is paid once
    assert cm.liquidator.auction(book).keeper == "0x0000000000000000000000000000000000000000"
    assert cm.liquidator.auction(book).active


def test_bid__dust_first_bid__starter_paid_in_full(cm, vault, book, bidder, admin, stranger):
    """A first bid of f = 1e-12 (a fee of a few hundred million wei) does not void the
    starter's tip: what a fee does not cover stays owed and later fees pay it, to exactly
    `keeper_tip`. Fails on c1dcd68: the starter gets the dust fee and nothing after."""
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    keeper_cash = vault.cash_of(stranger, 0)
    tips, fees = [], []
    for fraction in ("0.000000000001", "0.0001", "0.1"):
        receipt = cm.liquidator.bid(bidder, book, fraction, "1000")
        tips += [t.tip for t in receipt.decode_logs(cm.liquidator.contract.KeeperTipped)]
        fees += [receipt.decode_logs(cm.liquidator.contract.Bid)[0].fee]
    # tips are whole 0.0001 USD: the dust fee (under one) pays none, the 0.0001 bid's fee
    # (about 0.025 USD) pays its whole units, the third bid the rest
    assert fees[0] < 10**14 and 10**14 < fees[1] < to_wad(5) < fees[2]
    first = tip_paid(to_wad(5), fees[1])
    assert first == fees[1] // 10**14 * 10**14 and tip_paid(to_wad(5), fees[0]) == 0
    assert tips == [first, to_wad(5) - first]
    assert vault.cash_of(stranger, 0) == keeper_cash + to_wad(5)
    assert cm.liquidator.contract.tip_owed(book) == 0
    assert cm.liquidator.auction(book).keeper == "0x0000000000000000000000000000000000000000"


def test_bid__settles_perp_funding_into_both_cash_balances_before_the_slice(
    cm, vault, clearing, book, bidder, maker, admin, chain
):
    """Funding has accrued on the book's short and on the bidder's own short: the bid settles
    both (one `FundingSettled` each), the vault adds them to cash with the slice, and the
    slice of cash is taken after the book's funding."""
    perp, u = cm.markets.perp("ETH"), cm.manifest.underlyings["ETH"]
    chain.mine(timestamp=chain.pending_timestamp + 3_600)
    set_eth(cm, admin, "3000")
    cm.trade(maker, bidder, perp, "1", "3060")  # a 2% premium: funding runs from longs to shorts
    chain.mine(timestamp=chain.pending_timestamp + 7_200)
    set_eth(cm, admin, "3500")
    start = cm.liquidator.start(bidder, book)
    chain.mine(timestamp=start.timestamp + 300)
    bidder_id = account_id(bidder.address, 0)
    book_snapshot = clearing.perp_position(book, u).funding
    bidder_snapshot = clearing.perp_position(bidder_id, u).funding
    book_cash, bidder_cash = vault.account_state(book)[0], vault.cash_of(bidder, 0)

    receipt = cm.liquidator.bid(bidder, book, "0.1", "1000")
    index = clearing.perp_position(book, u).funding
    assert clearing.perp_position(bidder_id, u).funding == index
    owed_book = (10 * WAD) * (index - book_snapshot) // WAD  # short 10: receives
    owed_bidder = (1 * WAD) * (index - bidder_snapshot) // WAD  # short 1
    assert owed_book > 0 and owed_bidder > 0
    settled = {e.account: e.amount for e in receipt.decode_logs(clearing.FundingSettled)}
    assert settled == {book: owed_book, bidder_id: owed_bidder}
    [moved_event] = receipt.decode_logs(vault.FractionTransferred)
    assert (moved_event.source_settled, moved_event.target_settled) == (owed_book, owed_bidder)
    # the clearinghouse settles no cash of its own: every cash entry is the liquidator's
    assert {e.clearing for e in receipt.decode_logs(vault.CashSettled)} == {cm.liquidator.address}
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    moved = (book_cash + owed_book) * to_wad("0.1") // WAD
    assert moved_event.cash == moved
    tip = min(to_wad(5), bid.fee)
    assert vault.account_state(book)[0] == book_cash + owed_book - moved + bid.price - bid.fee
    assert vault.cash_of(bidder, 0) == bidder_cash + owed_bidder + moved - bid.price + tip
    assert clearing.perp_position(bidder_id, u).size == -to_wad(2)


def test_bid__solvent__capped_at_the_buffer_then_terminated(cm, vault, book, bidder, admin, stranger):
    set_eth(cm, admin, "3500")
    start = cm.liquidator.start(stranger, book)
    receipt = cm.liquidator.bid(bidder, book, "1", "100000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    d = multiplier(receipt.timestamp - start.timestamp)
    expected = cap(bid.equity, bid.maintenance, d)
    assert 0 < bid.fraction == expected < WAD
    equity, mm = margin(cm.engine.contract, book)
    assert equity >= mm * 115 // 100  # back above the buffer
    receipt = cm.liquidator.terminate(stranger, book)
    assert not vault.frozen(book)
    assert not cm.liquidator.auction(book).active
    [ended] = receipt.decode_logs(cm.liquidator.contract.AuctionEnded)
    assert (ended.equity, ended.maintenance) == (equity, mm)


def test_bid__small_account__taken_whole(cm, vault, clearing, book, bidder, admin, stranger):
    set_eth(cm, admin, "3500")
    liquidator = cm.liquidator.contract
    liquidator.set_terms(to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(100000), sender=admin)
    cm.liquidator.start(stranger, book)
    receipt = cm.liquidator.bid(bidder, book, "1", "100000")
    [bid] = receipt.decode_logs(liquidator.Bid)
    assert bid.fraction == WAD
    assert clearing.perp_mask(book) == 0
    assert vault.account_state(book)[0] == bid.price - bid.fee  # all that is left: the price, less the fee
    assert not vault.frozen(book) and not cm.liquidator.auction(book).active


def test_bid__price_limit__reverts(cm, book, bidder, admin, stranger):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: price limit"):
        cm.liquidator.bid(bidder, book, "0.1", "1")


@pytest.mark.parametrize("fraction", ["0", "1.000000000000000001"])
def test_bid__bad_fraction__reverts(cm, book, bidder, admin, stranger, fraction):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: bad fraction"):
        cm.liquidator.bid(bidder, book, fraction, "1000")


def test_bid__no_auction__reverts(cm, book, bidder):
    with ape.reverts("liquidator: no auction"):
        cm.liquidator.bid(bidder, book, "0.1", "1000")


def test_bid__bidder_is_the_liquidated_account__reverts(cm, book, trader, admin, stranger):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: bidder is liquidated"):
        cm.liquidator.bid(trader, book, "0.1", "1000")


def test_bid__bidder_under_margin__reverts(cm, book, admin, stranger):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: bidder under margin"):
        cm.liquidator.bid(stranger, book, "0.1", "1000")  # no collateral to pay with


def test_bid__bidder_in_auction__reverts(cm, create_account, book, admin, stranger, maker, operator):
    # a second short that is liquidatable too, then bids with it
    create_account(operator, {"USDC": "1000"})
    cm.trade(maker, operator, cm.markets.perp("ETH"), "1", "3000")  # MM 480 against 1,000
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    cm.liquidator.start(stranger, account_id(operator.address, 0))
    with ape.reverts("liquidator: bidder in auction"):
        cm.liquidator.bid(operator, book, "0.1", "1000")


def test_bid__dust_sent_to_the_bidder_does_not_block_it(cm, vault, book, bidder, admin, stranger, fund):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    fund(stranger, "WBTC", "1")
    # 1e-8 WBTC of dust would add the BTC feeds to the bidder's checks: refused
    with ape.reverts("vault: new collateral from a stranger"):
        vault.deposit(cm.token("WBTC").address, 1, 0, bidder, sender=stranger)
    receipt = cm.liquidator.bid(bidder, book, "0.1", "1000")
    assert receipt.decode_logs(cm.liquidator.contract.Bid)[0].fraction == to_wad("0.1")


def test_bid__while_paused_and_new_risk_closed__goes_through(cm, vault, book, bidder, admin, stranger, guardian):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    vault.pause(sender=guardian)
    cm.oracle.push(admin, "USDC/USD", "0.9")  # depeg: new risk closed
    receipt = cm.liquidator.bid(bidder, book, "0.1", "1000")
    assert receipt.decode_logs(cm.liquidator.contract.Bid)[0].fraction == to_wad("0.1")


def test_bid__account_above_buffer__reverts(cm, book, bidder, admin, stranger, trader):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    cm.token("USDC").mint(admin, trader, "5000")
    cm.vault.deposit(trader, "USDC", "5000")  # equity ~10,000 against a buffer of ~6,440
    with ape.reverts("liquidator: account above buffer"):
        cm.liquidator.bid(bidder, book, "0.1", "1000")


def test_bid__small_account_cured_by_deposit__reverts_above_buffer(
    cm, vault, book, bidder, admin, stranger, trader, chain
):
    """A small account the owner cured back above the buffer cannot be taken whole before
    its `terminate`, however late (d = 0: the bidder would pay nothing for the deposit).
    Fails on c1dcd68: the bid takes the whole account, cure deposit included, for 0."""
    set_eth(cm, admin, "3500")
    cm.liquidator.contract.set_terms(to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(100000), sender=admin)
    start = cm.liquidator.start(stranger, book)
    cm.token("USDC").mint(admin, trader, "5000")
    cm.vault.deposit(trader, "USDC", "5000")  # equity ~10,000 against a buffer of ~6,440
    equity, mm = margin(cm.engine.contract, book)
    assert equity < to_wad(100000) and equity >= mm * 115 // 100
    chain.mine(timestamp=start.timestamp + 900 + 12 * 3600)  # d(t) = 0
    set_eth(cm, admin, "3500")  # fresh rounds after the wait
    assert cm.liquidator.quote(book, 1).fraction == 0
    cash = vault.account_state(book)[0]
    with ape.reverts("liquidator: account above buffer"):
        cm.liquidator.bid(bidder, book, "1", "0")
    cm.liquidator.terminate(trader, book)  # the cure stands
    assert not vault.frozen(book) and vault.account_state(book)[0] == cash


def test_bid__small_account_below_buffer__still_taken_whole(cm, book, bidder, admin, stranger, trader):
    """A partial cure that leaves a small account under the buffer keeps the exception."""
    set_eth(cm, admin, "3500")
    cm.liquidator.contract.set_terms(to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(100000), sender=admin)
    cm.liquidator.start(stranger, book)
    cm.token("USDC").mint(admin, trader, "500")
    cm.vault.deposit(trader, "USDC", "500")
    equity, mm = margin(cm.engine.contract, book)
    assert equity < mm * 115 // 100
    receipt = cm.liquidator.bid(bidder, book, "1", "100000")
    assert receipt.decode_logs(cm.liquidator.contract.Bid)[0].fraction == WAD


# ------------------------------------------------------------------ the price curve


def test_multiplier__curve_points(cm):
    liquidator = cm.liquidator.contract
    assert liquidator.multiplier(0) == to_wad("0.95")
    assert liquidator.multiplier(450) == to_wad("0.825")
    assert liquidator.multiplier(900) == to_wad("0.70")
    assert liquidator.multiplier(900 + 6 * 3600) == to_wad("0.35")
    assert liquidator.multiplier(900 + 12 * 3600) == 0
    assert liquidator.multiplier(10**9) == 0


@settings(max_examples=examples(60), deadline=None)
@given(a=st.integers(0, 14 * 3600), b=st.integers(0, 14 * 3600))
def test_multiplier__never_rises_and_matches_the_model(cm, a, b):
    liquidator = cm.liquidator.contract
    lo, hi = min(a, b), max(a, b)
    assert liquidator.multiplier(lo) >= liquidator.multiplier(hi)
    assert liquidator.multiplier(a) == multiplier(a)


@settings(max_examples=examples(200), deadline=None)
@given(
    equity=st.integers(10**15, 10**30),
    mm=st.integers(10**15, 10**30),
    elapsed=st.integers(0, 13 * 3600),
)
def test_cap__restores_the_buffer_for_linear_books(equity, mm, elapsed):
    """A book whose MM scales with the fraction left is back at the buffer after a capped
    bid (the cap is the root of E(1 − f·a) = buffer·MM(1 − f), rounded up)."""
    p = AuctionParams()
    if equity >= mm:
        return
    d = multiplier(elapsed, p)
    f = cap(equity, mm, d, p)
    assert 0 < f <= WAD
    a = WAD - d + p.liquidation_fee
    left = equity * (WAD - f * a // WAD) // WAD
    mm_left = mm * (WAD - f) // WAD
    assert left * WAD >= mm_left * p.buffer or f == WAD


# ------------------------------------------------------------------ insolvent auctions


def test_insolvent__fund_pays_the_deficit_growing_to_deficit_plus_mm(
    cm, vault, book, bidder, admin, stranger, chain, insure
):
    insure("50000")
    set_eth(cm, admin, "4100")
    start = cm.liquidator.start(stranger, book)
    chain.mine(timestamp=start.timestamp + 1800)
    fund_assets = cm.fund.contract.totalAssets()
    bidder_cash = vault.cash_of(bidder, 0)
    trader_cash = vault.account_state(book)[0]
    receipt = cm.liquidator.bid(bidder, book, "1", "0")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    terms = insolvent_terms(bid.equity, bid.maintenance, WAD, receipt.timestamp - start.timestamp)
    assert bid.equity < 0 and bid.price == terms.price
    assert -bid.equity < covered.loss < -bid.equity + bid.maintenance
    # loss = fund payout + socialized, exactly; the fund had enough
    assert covered.loss == covered.fund_payout + covered.socialized
    assert covered.socialized == 0 and covered.loss % 10**12 == 0  # whole USDC units, all from the fund
    # no fee to take it from: the fund pays the starter's tip too, after the loss
    [tipped] = receipt.decode_logs(cm.liquidator.contract.KeeperTipped)
    assert tipped.keeper == stranger.address and tipped.tip == to_wad(5)
    assert fund_assets - cm.fund.contract.totalAssets() == (covered.fund_payout + tipped.tip) // 10**12
    assert vault.cash_of(bidder, 0) == bidder_cash + trader_cash + covered.loss
    assert vault.account_state(book)[0] == 0 and cm.clearing.contract.perp_mask(book) == 0
    assert not cm.liquidator.auction(book).active


def test_insolvent__tip_paid_once_by_the_fund_after_the_loss(cm, vault, book, bidder, admin, stranger, insure):
    insure("50000")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, book)
    keeper_cash = vault.cash_of(stranger, 0)
    first = cm.liquidator.bid(bidder, book, "0.5", "0")
    [covered] = first.decode_logs(cm.liquidator.contract.LossCovered)
    [tipped] = first.decode_logs(cm.liquidator.contract.KeeperTipped)
    assert covered.socialized == 0 and tipped.tip == to_wad(5)
    assert vault.cash_of(stranger, 0) == keeper_cash + to_wad(5)
    assert cm.liquidator.auction(book).keeper == "0x0000000000000000000000000000000000000000"  # paid
    second = cm.liquidator.bid(bidder, book, "0.5", "0")
    assert second.decode_logs(cm.liquidator.contract.KeeperTipped) == []
    assert vault.cash_of(stranger, 0) == keeper_cash + to_wad(5)


def test_insolvent__dust_account__tip_capped_by_its_maintenance(
    cm, vault, create_account, bidder, admin, stranger, maker, operator, insure
):
    """A dust account (0.01 ETH short, MM about 7 USD) gone insolvent: the fund pays the
    starter at most 5% of the MM the start proved, not the whole 5 USD tip, so dust
    accounts on both sides of a move are no faucet. Fails on c1dcd68: the tip is 5 USD."""
    insure("50000")
    create_account(maker, {"USDC": "1000000"})
    create_account(operator, {"USDC": "10"})
    cm.trade(maker, operator, cm.markets.perp("ETH"), "0.01", "3000")
    dust = account_id(operator.address, 0)
    set_eth(cm, admin, "4100")  # loses 11 USD on 10
    start = started(cm.liquidator.start(stranger, dust), cm.liquidator.contract)
    assert start.equity < 0 and start.maintenance < to_wad(10)
    owed = start.maintenance * 5 // 100 // 10**14 * 10**14  # 5% of MM, in 1e-4 USD
    assert owed == tip_owed(start.maintenance)
    assert cm.liquidator.contract.tip_owed(dust) == owed < to_wad("0.5")
    keeper_cash = vault.cash_of(stranger, 0)
    receipt = cm.liquidator.bid(bidder, dust, "1", "0")
    [tipped] = receipt.decode_logs(cm.liquidator.contract.KeeperTipped)
    assert tipped.keeper == stranger.address and tipped.tip == owed // 10**12 * 10**12  # whole USDC units
    assert vault.cash_of(stranger, 0) == keeper_cash + tipped.tip


def test_start__tip_owed_is_the_keeper_tip_for_a_large_account(cm, book, keeper, admin):
    """5% of MM (about 280 USD) is above the 5 USD tip: the tip binds."""
    set_eth(cm, admin, "3500")
    cm.liquidator.start(keeper, book)
    assert cm.liquidator.contract.tip_owed(book) == to_wad(5)


def test_insolvent__fund_short_of_the_tip__rest_stays_owed(cm, vault, book, bidder, admin, stranger, insure):
    """The fund has the loss and about half the tip: it pays that much, the rest stays owed
    and the next bid pays it (never more than the tip in all). Fails on c1dcd68: the part
    payment clears the starter and the second bid pays it nothing."""
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    set_eth(cm, admin, "4100")  # insolvent, not marked: each half pays the bare deficit
    loss = -cm.liquidator.contract.quote(book, WAD // 2)[1]
    fund = cm.fund.contract
    fund.harvest(sender=stranger)
    has = fund.totalAssets() * 10**12
    insure(str((loss + to_wad("2.5") - has) // 10**12 / 10**6))
    keeper_cash = vault.cash_of(stranger, 0)
    [first] = cm.liquidator.bid(bidder, book, "0.5", "0").decode_logs(cm.liquidator.contract.KeeperTipped)
    assert to_wad(2) < first.tip < to_wad(3)
    owed = cm.liquidator.contract.tip_owed(book)
    assert owed == to_wad(5) - -(-first.tip // 10**14) * 10**14
    insure("1000")
    [second] = cm.liquidator.bid(bidder, book, "1", "0").decode_logs(cm.liquidator.contract.KeeperTipped)
    assert second.tip == owed
    assert to_wad(5) - 10**14 < vault.cash_of(stranger, 0) - keeper_cash <= to_wad(5)


def test_mark_insolvent__conversion_after_start(cm, book, bidder, admin, stranger, chain, insure):
    insure("50000")
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: account solvent"):
        cm.liquidator.mark_insolvent(stranger, book)
    set_eth(cm, admin, "4100")
    receipt = cm.liquidator.mark_insolvent(stranger, book)
    assert cm.liquidator.auction(book).insolvent_at == receipt.timestamp
    with ape.reverts("liquidator: already insolvent"):
        cm.liquidator.mark_insolvent(stranger, book)
    chain.mine(timestamp=receipt.timestamp + 3600)
    quote = cm.liquidator.quote(book, 1)
    equity, mm = margin(cm.engine.contract, book)
    assert quote.price * WAD == -(-equity + mm)  # the ramp is complete


def test_insolvent__unmarked_pays_the_bare_deficit(cm, book, admin, stranger, insure):
    """Before `mark_insolvent` a bid on an account that became insolvent is paid just the
    deficit (the ramp has not started)."""
    insure("50000")
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    set_eth(cm, admin, "4100")
    equity, _ = margin(cm.engine.contract, book)
    assert cm.liquidator.quote(book, 1).price * WAD == equity


# ------------------------------------------------------------------ termination


def test_terminate__below_buffer__reverts(cm, book, admin, stranger):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    with ape.reverts("liquidator: below buffer"):
        cm.liquidator.terminate(stranger, book)


def test_terminate__no_auction__reverts(cm, book, stranger):
    with ape.reverts("liquidator: no auction"):
        cm.liquidator.terminate(stranger, book)


def test_cure_by_deposit__terminate_and_trade_again(cm, vault, book, admin, stranger, trader, maker):
    set_eth(cm, admin, "3500")
    cm.liquidator.start(stranger, book)
    cm.token("USDC").mint(admin, trader, "10000")
    cm.vault.deposit(trader, "USDC", "10000")
    cash = cm.vault.balances(trader).cash
    cm.liquidator.terminate(stranger, book)
    assert not vault.frozen(book)
    assert cm.vault.balances(trader).cash == cash  # thawing leaves the balance alone
    cm.trade(maker, trader, cm.markets.perp("ETH"), "-10", "3500")  # closes the short
    assert cm.clearing.perp_size(trader, "ETH") == 0


# ------------------------------------------------------------------ roles and bounds


def test_vault_liquidation_entries__only_liquidator(vault, stranger):
    with ape.reverts("vault: not liquidator"):
        vault.set_frozen(1, True, sender=stranger)
    with ape.reverts("vault: not liquidator"):
        vault.transfer_fraction(1, 2, WAD, 0, 0, sender=stranger)
    with ape.reverts("vault: not liquidator"):
        vault.socialize(1, 2, 0, sender=stranger)


def test_clearing_transfer__only_liquidator(clearing, stranger):
    with ape.reverts("clearing: not liquidator"):
        clearing.transfer_fraction(1, 2, WAD, sender=stranger)


@pytest.mark.parametrize(
    "curve",
    [
        (to_wad("0.49"), to_wad("0.4"), 900, 43200, 3600),  # start below 0.5
        (to_wad("1.01"), to_wad("0.7"), 900, 43200, 3600),  # start above 1
        (to_wad("0.9"), to_wad("0.91"), 900, 43200, 3600),  # mid above start
        (to_wad("0.95"), to_wad("0.7"), 59, 43200, 3600),  # first phase too short
        (to_wad("0.95"), to_wad("0.7"), 7201, 43200, 3600),  # first phase too long
        (to_wad("0.95"), to_wad("0.7"), 900, 7 * 86400 + 1, 3600),  # second too long
        (to_wad("0.95"), to_wad("0.7"), 900, 43200, 299),  # ramp too short
        (to_wad("0.95"), to_wad("0.7"), 900, 43200, 86401),  # ramp too long
    ],
)
def test_set_curve__out_of_bounds__reverts(cm, admin, curve):
    with ape.reverts("liquidator: out of bounds"):
        cm.liquidator.contract.set_curve(*curve, sender=admin)


@pytest.mark.parametrize(
    "terms",
    [
        (to_wad("0.99"), to_wad("0.05"), to_wad(5), to_wad(1000)),
        (to_wad("2.01"), to_wad("0.05"), to_wad(5), to_wad(1000)),
        (to_wad("1.15"), to_wad("0.21"), to_wad(5), to_wad(1000)),
        (to_wad("1.15"), to_wad("0.05"), to_wad(1001), to_wad(1000)),
        (to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(1000001)),
    ],
)
def test_set_terms__out_of_bounds__reverts(cm, admin, terms):
    with ape.reverts("liquidator: out of bounds"):
        cm.liquidator.contract.set_terms(*terms, sender=admin)


def test_setters__only_owner(cm, stranger):
    liquidator = cm.liquidator.contract
    with ape.reverts(NOT_OWNER):
        liquidator.set_curve(to_wad("0.95"), to_wad("0.7"), 900, 43200, 3600, sender=stranger)
    with ape.reverts(NOT_OWNER):
        liquidator.set_terms(to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(1000), sender=stranger)


def test_setters__emit_and_apply(cm, admin):
    liquidator = cm.liquidator.contract
    receipt = liquidator.set_curve(to_wad("0.9"), to_wad("0.6"), 600, 3600, 1800, sender=admin)
    [event] = receipt.decode_logs(liquidator.CurveSet)
    assert (event.start_multiplier, event.first_phase, event.insolvent_ramp) == (to_wad("0.9"), 600, 1800)
    assert liquidator.multiplier(600) == to_wad("0.6")
    assert AuctionParams.read(liquidator).second_phase == 3600


def test_setters__every_parameter_reads_back_at_its_bounds(cm, admin):
    """The nine parameters share two words: each keeps its own bits at the extremes."""
    liquidator = cm.liquidator.contract
    top = AuctionParams(
        start_multiplier=WAD,
        mid_multiplier=WAD,
        first_phase=7200,
        second_phase=7 * 86400,
        insolvent_ramp=86400,
        buffer=2 * WAD,
        liquidation_fee=to_wad("0.2"),
        keeper_tip=to_wad(1000),
        small_account=to_wad(10**6),
    )
    bottom = AuctionParams(to_wad("0.5"), 0, 60, 60, 300, WAD, 0, 0, 0)
    for p in (top, bottom, AuctionParams()):
        liquidator.set_curve(
            p.start_multiplier, p.mid_multiplier, p.first_phase, p.second_phase, p.insolvent_ramp, sender=admin
        )
        liquidator.set_terms(p.buffer, p.liquidation_fee, p.keeper_tip, p.small_account, sender=admin)
        assert AuctionParams.read(liquidator) == p


# ------------------------------------------------------------------ options in a bid


@pytest.fixture
def options_book(cm, book, bidder, maker, trader, list_option):
    """`book` plus a long call and two short puts; the bidder is short one of the calls."""
    call = list_option("ETH", True, "3000", 30)
    put = list_option("ETH", False, "2800", 30)
    cm.trade(maker, trader, call, "-1", "150")  # trader long 1 call
    cm.trade(maker, trader, put, "2", "60")  # trader short 2 puts
    cm.trade(maker, bidder, call, "1", "150")  # bidder short 1 call
    return call, put


def test_bid__options_move_and_net_out_against_the_bidder(
    markets, cm, clearing, book, bidder, admin, stranger, options_book
):
    call, put = options_book
    bidder_id = account_id(bidder.address, 0)
    oi = markets.instrument(call).open_interest  # longs: trader 1, maker 1
    set_eth(cm, admin, "3600")
    cm.liquidator.contract.set_terms(to_wad("1.15"), to_wad("0.05"), to_wad(5), to_wad(10**6), sender=admin)
    cm.liquidator.start(stranger, book)
    receipt = cm.liquidator.bid(bidder, book, "1", "100000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    assert bid.fraction == WAD
    assert list(clearing.option_ids(book)) == [] and clearing.perp_mask(book) == 0
    # the bidder's short call met the long it bought: no position, one long less open
    assert clearing.option_size(bidder_id, call) == 0 and list(clearing.option_ids(bidder_id)) == [put]
    assert clearing.option_size(bidder_id, put) == -to_wad(2)
    assert markets.instrument(call).open_interest == oi - to_wad(1)


def test_bid__options_partial__sizes_truncate_toward_zero(cm, clearing, book, bidder, admin, stranger, options_book):
    call, put = options_book
    bidder_id = account_id(bidder.address, 0)
    set_eth(cm, admin, "3600")
    cm.liquidator.start(stranger, book)
    receipt = cm.liquidator.bid(bidder, book, "0.1", "100000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    f = bid.fraction
    assert 0 < f < WAD
    moved_call = WAD * f // WAD
    moved_put = -(2 * WAD * f // WAD)
    assert clearing.option_size(book, call) == WAD - moved_call
    assert clearing.option_size(book, put) == -2 * WAD - moved_put
    assert clearing.option_size(bidder_id, call) == -WAD + moved_call
    assert clearing.option_size(bidder_id, put) == moved_put
    assert list(clearing.option_ids(book)) == [call, put]  # the source keeps its order


def test_bid__bidder_at_its_position_cap__reverts(markets, cm, clearing, book, bidder, admin, stranger, options_book):
    set_eth(cm, admin, "3600")
    markets.set_max_options(1, sender=admin)  # the bidder holds one option already
    cm.liquidator.start(stranger, book)
    with ape.reverts("clearing: position cap"):
        cm.liquidator.bid(bidder, book, "0.1", "100000")


# ------------------------------------------------------------------ concentration and the notional cap (issue 14)


def test_bid__bidder_ends_over_the_notional_cap__goes_through(markets, cm, clearing, book, bidder, admin, maker):
    """Liquidation transfers are never capped: with the ETH cap at 1,000 USD a fill of 1 ETH
    into the bidder reverts, the bid handing it a tenth of the short 10 ETH perp does not."""
    set_eth(cm, admin, "3500")
    markets.set_position_cap(cm.manifest.underlyings["ETH"], 1_000, sender=admin)
    with ape.reverts("markets: position notional cap"):
        cm.trade(maker, bidder, cm.markets.perp("ETH"), "1", "3500")
    cm.liquidator.start(bidder, book)
    cm.liquidator.bid(bidder, book, "0.1", "1000")
    u = cm.manifest.underlyings["ETH"]
    assert clearing.perp_position(account_id(bidder.address, 0), u).size == -to_wad(1)
    assert clearing.perp_position(book, u).size == -to_wad(9)


def test_start__concentrated_account__bound_below_margin_and_hinted_start_works(cm, book, keeper, admin, trader):
    """The add-on grows with L_u, and a hinted scenario's loss is at most L_u: so every
    hint's `refresh_bound` is at most the margin (equal at the worst scenario, as the model
    computes it), and a hinted start proves the shortfall of a book that only the add-on
    puts under maintenance (at 3,000: L = 4,500, with free 1,000 and depth 2,000 USD the
    add-on is 4,500 · 3,500 / 2,000 = 7,875 against 10,000 of equity)."""
    engine = cm.engine.contract
    eth = engine.underlying_ids(key("ETH"))
    equity, mm = margin(engine, book)
    assert equity > mm
    cm.engine.risk_model.set_concentration(eth, 1, 2, sender=admin)
    equity, mm = margin(engine, book)
    assert equity < mm
    exact = engine.margin(book)
    snap = model.snapshot(cm, trader)
    for s in range(engine.underlyings(eth).scenarios):
        bound = engine.refresh_bound.call(book, s << (8 * eth))
        assert bound.equity == equity and bound.maintenance <= mm and bound.initial <= exact.initial
        assert tuple(bound) == tuple(model.margin(*snap, hint=s << (8 * eth)))
    hint = cm.engine.hint(book)
    assert tuple(engine.refresh_bound.call(book, hint)) == tuple(exact)
    receipt = cm.liquidator.start(keeper, book, hint)
    event = started(receipt, cm.liquidator.contract)
    assert (event.equity, event.maintenance) == (equity, mm)
    assert cm.vault.contract.frozen(book)

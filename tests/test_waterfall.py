"""The loss waterfall of an insolvent auction: the insurance fund, then deleveraging (the
other side of the account's losing perps and futures, through a loss index per market and
side), then socialization over positive cash; and the hold-back that makes leaving ahead of
a visible loss worthless. Each test here fails on the code before the waterfall (all of the
fund's shortfall socialized, the leaver paying nothing).

The book (conftest `book`): `trader` holds 10,000 USDC and is short 10 ETH perp at 3,000
against `maker` (1M USDC). At 4,100 its equity is about -1,000.
"""

import json
from decimal import Decimal

import ape
import pytest
from prices import set_eth

from crossmargin.model import auction as model
from crossmargin.units import WAD, account_id, from_wad, to_wad


def covered_of(cm, receipt):
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    return covered


def test_insolvent_perp__beyond_the_fund__charged_to_the_longs_not_the_depositors(
    cm, vault, clearing, book, bidder, admin, stranger, maker, taker, create_account, insure
):
    insure("10")  # far too little
    create_account(taker, {"USDC": "50000"})  # a passive depositor: no position at all
    passive = vault.cash_of(taker, 0)
    u = cm.manifest.underlyings["ETH"]
    perp = cm.markets.perp("ETH")
    long_account = account_id(maker.address, 0)
    before = clearing.perp_position(long_account, u)
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, book)
    index = vault.cash_index()
    short = clearing.perp_position(book, u)
    position = model.LinearPosition(perp, short.size, short.cost, to_wad(4100), to_wad(10))
    receipt = cm.liquidator.bid(bidder, book, "1", "0")
    covered = covered_of(cm, receipt)
    [charge] = receipt.decode_logs(clearing.Deleveraged)
    # the reference model, to the wei
    rest = covered.loss - covered.fund_payout
    assert model.deleverage([position], rest, WAD) == (charge.amount, [model.Charge(**charge.event_arguments)])
    # loss = fund + deleveraged + socialized, to the wei; the perp's longs carry it all
    assert covered.loss == covered.fund_payout + covered.deleveraged + covered.socialized
    assert covered.socialized == 0 and covered.deleveraged == charge.amount > 0
    assert (charge.instrument, charge.longs, charge.open_interest) == (perp, True, to_wad(10))
    assert charge.per_unit == (covered.loss - covered.fund_payout) * WAD // to_wad(10)
    assert charge.amount == charge.per_unit * 10  # never more than the deficit
    assert covered.loss - covered.fund_payout - charge.amount < 10  # and short of it by dust
    assert clearing.loss_index(perp) == charge.per_unit  # longs (low half); shorts untouched
    # the maker, the whole long side, owes it in its position's cost
    after = clearing.perp_position(long_account, u)
    assert (after.size, after.cost) == (before.size, before.cost + charge.amount)
    # nobody else paid: the depositor's cash and the cash index are untouched
    assert vault.cash_of(taker, 0) == passive and vault.cash_index() == index
    assert vault.socialized_loss() == 0


def test_loss_index__the_charged_side_pays_when_it_trades__the_other_does_not(
    cm, vault, clearing, book, bidder, admin, stranger, maker, taker, operator, create_account, insure
):
    """After the charge the maker sells its whole long (and 5 more) to a new account: the
    short it ends with starts clean (the short side was never charged), the new long pays
    nothing for the charge made before it bought."""
    insure("10")
    u = cm.manifest.underlyings["ETH"]
    perp = cm.markets.perp("ETH")
    set_eth(cm, admin, "4100")
    cm.liquidator.start(stranger, book)
    [charge] = cm.liquidator.bid(bidder, book, "1", "0").decode_logs(clearing.Deleveraged)
    long_account = account_id(maker.address, 0)
    charged = clearing.perp_position(long_account, u)
    create_account(operator, {"USDC": "1000000"})
    cm.trade(operator, maker, perp, "15", "4100")  # the maker sells 15: short 5
    flipped = clearing.perp_position(long_account, u)
    assert flipped.size == -to_wad(5)
    # the charge stayed in the cost the long carried into the flip
    assert flipped.cost == charged.cost - 15 * to_wad(4100)
    fresh = clearing.perp_position(account_id(operator.address, 0), u)
    assert (fresh.size, fresh.cost) == (to_wad(15), 15 * to_wad(4100))
    assert clearing.loss_index(perp) == charge.per_unit


def test_deleverage__pushes_a_late_long_below_maintenance__which_is_then_liquidated(
    cm, vault, engine, clearing, book, bidder, admin, stranger, maker, operator, taker, create_account, insure
):
    """A long bought near the top gained little and is charged its per-unit share of the
    whole deficit: the charge can push it below MM (SPECIFICATION.md §7.5). Nothing stops
    there: it is an ordinary account below MM, and the next sweep auctions it."""
    insure("10")
    perp = cm.markets.perp("ETH")
    create_account(operator, {"USDC": "1000000"})
    create_account(taker, {"USDC": "1500"})
    set_eth(cm, admin, "5900")
    cm.trade(operator, taker, perp, "-1", "5900")  # taker long 1 at 5,900
    set_eth(cm, admin, "6000")
    late = account_id(taker.address, 0)
    assert engine.margin(late).equity > engine.margin(late).maintenance
    cm.liquidator.start(stranger, book)
    [charge] = cm.liquidator.bid(bidder, book, "1", "0").decode_logs(clearing.Deleveraged)
    assert charge.longs and charge.open_interest == to_wad(11)
    m = engine.margin(late)
    assert m.equity < m.maintenance
    receipt = cm.liquidator.start(stranger, late)
    [started] = receipt.decode_logs(cm.liquidator.contract.AuctionStarted)
    assert started.equity == m.equity


def test_insolvent_options__no_linear_loss__socialized_as_before(
    cm, vault, engine, clearing, list_option, bidder, admin, stranger, maker, trader, create_account, insure
):
    """A short call's loss has no perp or future side to charge: after the fund it is
    socialized, and no loss index moves."""
    insure("10")
    call = list_option("ETH", True, "3000", 30)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "20000"})
    cm.trade(maker, trader, call, "10", "150")  # trader short 10 calls
    set_eth(cm, admin, "6000")
    account = account_id(trader.address, 0)
    assert engine.margin(account).equity < 0
    cm.liquidator.start(stranger, account)
    fund_has = (cm.fund.contract.totalAssets() + cm.fund.contract.pending_income()) * 10**12
    maker_cash = vault.cash_of(maker, 0)
    index = vault.cash_index()
    receipt = cm.liquidator.bid(bidder, account, "1", "0")
    covered = covered_of(cm, receipt)
    assert receipt.decode_logs(clearing.Deleveraged) == []
    assert covered.deleveraged == 0 and covered.socialized > 0
    assert to_wad(10) <= covered.fund_payout <= fund_has  # all it has (fees harvested or not)
    assert covered.loss == covered.fund_payout + covered.socialized
    [social] = receipt.decode_logs(vault.LossSocialized)
    assert social.amount == covered.socialized
    assert vault.socialized_loss() == covered.socialized
    base = social.positive_cash + social.amount  # positive cash when the loss was spread
    assert vault.cash_index() == social.cash_index == index * social.positive_cash // base
    # a positive balance loses its pro-rata share, rounded against it
    assert vault.cash_of(maker, 0) == maker_cash * social.cash_index // index
    share = maker_cash * social.amount // base
    assert maker_cash - share - 1 <= vault.cash_of(maker, 0) <= maker_cash - share


def best_case_hint(cm, account: int) -> int:
    """The hint a starter who wants a small reserve passes: for each underlying the scenario
    in which the account does best (its loss there is 0)."""
    hint = 0
    for r in cm.engine.contract.risk(account):
        best = max(range(1, len(r.pnl)), key=lambda s: r.pnl[s])
        assert r.pnl[best] >= 0
        hint |= best << (8 * r.underlying)
    return hint


def test_insolvent_start__a_hint_does_not_shrink_the_reserved_loss(cm, chain, vault, short_calls, stranger, taker):
    """fails on 7bf7dfd (audit, stop 23): the starter's hint makes the start's requirement a
    lower bound, and an insolvent start reserved −E + MM from it: a starter naming each
    underlying's best scenario halved the reserve (9,101 against 18,103 USD), and a
    depositor leaving afterwards gave up half its share. The reserve is now valued without
    the hint."""
    snapshot = chain.snapshot()
    cm.liquidator.start(stranger, short_calls)
    full = cm.liquidator.contract.reserved(short_calls)
    [held_full] = cm.vault.withdraw(taker, "USDC", "50000").decode_logs(vault.ExitHeldBack)
    chain.restore(snapshot)

    cm.liquidator.start(stranger, short_calls, best_case_hint(cm, short_calls))
    assert cm.liquidator.contract.reserved(short_calls) == full > 0
    [held] = cm.vault.withdraw(taker, "USDC", "50000").decode_logs(vault.ExitHeldBack)
    assert held.amount == held_full.amount > 0


def test_sandwich__leaving_before_the_bid_costs_at_least_the_share_of_staying(
    cm, vault, usdc, short_calls, bidder, stranger, taker, operator
):
    """Reproduces the sandwich: a depositor withdraws all its cash while an insolvent auction
    is public and deposits it again after the bid. On the code before the hold-back it paid
    nothing and the one who stayed paid more than its share; now the leaver gives up at
    least its share on the way out and the stayer pays at most its share."""
    cm.liquidator.start(stranger, short_calls)
    reserved = cm.liquidator.contract.reserved(short_calls)
    assert reserved > 0 and vault.pending_loss() == reserved
    base = vault.positive_cash()  # the balances a loss was spread over when it became known
    stake = vault.cash_of(taker, 0)
    assert stake == vault.cash_of(operator, 0) == to_wad(50000)
    wallet = usdc.contract.balanceOf(taker)
    receipt = cm.vault.withdraw(taker, "USDC", "50000")
    [held] = receipt.decode_logs(vault.ExitHeldBack)
    got = (usdc.contract.balanceOf(taker) - wallet) * 10**12
    assert got + held.amount == stake and vault.exit_pool() == held.amount
    # what is held back stays in the vault: its tokens still match the total it counts
    assert usdc.contract.balanceOf(vault.address) * 10**12 == vault.assets(usdc.address).total
    fund_assets = cm.fund.contract.totalAssets() * 10**12
    assert held.amount == model.hold_back(50000 * 10**6, reserved, fund_assets, base) * 10**12
    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    covered = covered_of(cm, bid)
    loss = covered.socialized  # from the pool first, the rest over positive cash
    fair = loss * stake // base  # each one's share had both stayed
    stayer_paid = stake - vault.cash_of(operator, 0)
    assert held.amount >= fair  # the leaver paid at least its share...
    assert stayer_paid <= fair + 1  # ...and the stayer at most its share (1 wei rounding)
    assert held.amount >= stayer_paid
    # the auction is over: nothing pending, what the pool did not need went to the fund
    assert vault.pending_loss() == 0 and vault.exit_pool() == 0


def test_sandwich__pool_left_over_goes_to_the_fund(cm, vault, short_calls, stranger, taker, trader, fund):
    """The account is cured and its auction terminated: no loss was paid, so what the leaver
    gave up goes to the insurance fund (it chose to leave while a loss was pending)."""
    cm.liquidator.start(stranger, short_calls)
    [held] = cm.vault.withdraw(taker, "USDC", "50000").decode_logs(vault.ExitHeldBack)
    fund(trader, "USDC", "100000")
    cm.vault.deposit(trader, "USDC", "100000")
    fund_account = account_id(cm.fund.contract.address, 0)
    fund_cash = vault.account_state(fund_account)[0]
    receipt = cm.liquidator.terminate(stranger, short_calls)
    [released] = receipt.decode_logs(vault.ExitPoolReleased)
    assert released.amount == held.amount > 0
    assert vault.account_state(fund_account)[0] == fund_cash + held.amount
    assert vault.exit_pool() == 0 and vault.pending_loss() == 0


def test_pending_loss__released_when_the_auction_is_terminated(cm, vault, short_calls, admin, stranger, trader, fund):
    """A cure by deposit ends the auction: its reserve is released and withdrawals pay no
    hold-back any more."""
    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > 0
    fund(trader, "USDC", "100000")
    cm.vault.deposit(trader, "USDC", "100000")
    receipt = cm.liquidator.terminate(stranger, short_calls)
    [event] = receipt.decode_logs(vault.LossReserved)
    assert event.added == 0 and event.pending_loss == 0
    assert vault.pending_loss() == 0 and cm.liquidator.contract.reserved(short_calls) == 0


def test_hold_back__none_while_the_fund_covers_the_pending_loss(cm, vault, usdc, short_calls, stranger, taker, insure):
    insure("100000")
    cm.liquidator.start(stranger, short_calls)
    assert 0 < vault.pending_loss() < cm.fund.contract.totalAssets() * 10**12
    wallet = usdc.contract.balanceOf(taker)
    receipt = cm.vault.withdraw(taker, "USDC", "1000")
    assert receipt.decode_logs(vault.ExitHeldBack) == []
    assert usdc.contract.balanceOf(taker) - wallet == 1000 * 10**6


def test_hold_back__move_into_own_debt_pays_it__move_to_own_cash_does_not(
    cm, vault, list_option, short_calls, stranger, maker, taker, create_account
):
    """Cash moved onto a subaccount's debt leaves the positive balances a loss is spread
    over, like a withdrawal; cash moved to a positive subaccount does not."""
    call = list_option("ETH", True, "3000", 30)
    create_account(taker, {"WETH": "10"}, subaccount=1)
    cm.trade(maker, taker, call, "-1", "1200", taker_subaccount=1)  # taker/1 pays 1,200: debt
    debt = -vault.cash_of(taker, 1)
    assert debt >= to_wad(1200)  # the premium and the taker fee
    create_account(taker, {"USDC": "100"}, subaccount=2)
    cm.liquidator.start(stranger, short_calls)
    receipt = cm.vault.move(taker, "USDC", "100", 0, 2)
    assert receipt.decode_logs(vault.ExitHeldBack) == []
    assert vault.cash_of(taker, 2) == to_wad(200)
    receipt = cm.vault.move(taker, "USDC", "1000", 0, 1)
    [held] = receipt.decode_logs(vault.ExitHeldBack)
    assert held.amount > 0 and held.amount % 10**12 == 0  # whole USDC units
    assert vault.cash_of(taker, 1) == -debt + to_wad(1000) - held.amount
    assert vault.exit_pool() == held.amount


def test_hold_back__premium_paid_into_own_debt_pays_it(
    cm, vault, list_option, short_calls, stranger, maker, taker, create_account
):
    """Cash can also leave the positive balances through a trade: the taker's cash account
    buys a call from its own indebted subaccount at any price. On the code before, the
    premium repaid the debt in full and the owner's share of the loss went with it; now the
    debt repaid gives up its share, as a move onto the debt does."""
    call = list_option("ETH", True, "3000", 30)
    create_account(taker, {"WETH": "10"}, subaccount=1)
    cm.trade(maker, taker, call, "-1", "1200", taker_subaccount=1)  # taker/1 pays 1,200: debt
    debt = -vault.cash_of(taker, 1)
    cm.liquidator.start(stranger, short_calls)
    pending, base = vault.pending_loss(), vault.positive_cash()
    fund_assets = cm.fund.contract.totalAssets() * 10**12
    cash = vault.cash_of(taker, 0)
    # taker/0 buys the call back from taker/1 for 1,000: its cash pays the debt
    receipt = cm.trade(taker, taker, call, "1", "1000", taker_subaccount=1)
    [held] = receipt.decode_logs(vault.ExitHeldBack)
    seller = account_id(taker.address, 1)
    assert held.account == seller
    [credit] = [e for e in receipt.decode_logs(vault.CashSettled) if e.account == seller]
    received = credit.delta + held.amount  # the premium less the seller's fee
    assert to_wad(990) < received < to_wad(1000)
    paid = cash - vault.cash_of(taker, 0)  # left the positive balances before the credit
    assert held.amount == model.hold_back(received, pending, fund_assets, base - paid) > 0
    assert vault.cash_of(taker, 1) == -debt + credit.delta
    assert vault.exit_pool() == held.amount
    # a premium into positive cash gives up nothing
    receipt = cm.trade(maker, taker, call, "1", "10")
    assert receipt.decode_logs(vault.ExitHeldBack) == []


def test_waterfall__bad_callers(cm, clearing, vault, stranger):
    with ape.reverts("clearing: not liquidator"):
        clearing.deleverage(1, 1, WAD, sender=stranger)
    with ape.reverts("vault: not liquidator"):
        vault.reserve_loss(1, 0, sender=stranger)
    with ape.reverts("vault: not liquidator"):
        vault.socialize(1, 1, 0, sender=stranger)
    moves = ape.project.ClearingMoves.at(clearing.MOVES())
    with ape.reverts("clearing: moves called directly"):
        moves.deleverage(1, 1, WAD, sender=stranger)
    with ape.reverts("clearing: moves called directly"):
        moves.transfer_fraction(1, 2, WAD, sender=stranger)
    with ape.reverts("clearing: moves called directly"):
        moves.settle(1, 1, 0, sender=stranger)


def future_of(cm, actor, instrument: int) -> tuple[int, int]:
    """(size, cost) of a future position as read (WAD), (0, 0) if none."""
    for future in cm.clearing.futures(actor, 0):
        if future.instrument == instrument:
            return future.size, future.cost
    return 0, 0


def test_insolvent_future__charged_to_its_longs__realized_at_settlement(
    cm, vault, clearing, markets, bidder, admin, stranger, maker, trader, taker, keeper, create_account, insure, chain
):
    """A short future gone insolvent: its longs are charged through the future's loss index
    (the settings word's flag turns the futures' reads on), another future's holders pay
    nothing, and the charge is realized when the long settles at expiry."""
    insure("10")
    expiry = chain.pending_timestamp + 2 * 86_400
    future = cm.markets.list_future(admin, "ETH", expiry, 10**6)
    other = cm.markets.list_future(admin, "ETH", expiry + 86_400, 10**6)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    create_account(taker, {"USDC": "100000"})
    cm.trade(maker, trader, future, "10", "3000")  # trader short 10
    cm.trade(maker, taker, other, "-1", "3000")  # taker long 1 of another future
    other_before = future_of(cm, taker, other)
    set_eth(cm, admin, "4100")
    account = account_id(trader.address, 0)
    cm.liquidator.start(stranger, account)
    receipt = cm.liquidator.bid(bidder, account, "1", "0")
    covered = covered_of(cm, receipt)
    [charge] = receipt.decode_logs(clearing.Deleveraged)
    assert (charge.instrument, charge.longs, charge.open_interest) == (future, True, to_wad(10))
    assert covered.deleveraged == charge.amount == charge.per_unit * 10 > 0
    assert covered.loss == covered.fund_payout + covered.deleveraged + covered.socialized
    size, cost = future_of(cm, maker, future)
    assert size == to_wad(10) and cost == to_wad(30000) + charge.amount
    assert future_of(cm, taker, other) == other_before  # another instrument: untouched
    # at expiry the long is paid floor(size · P) − cost: the charge is realized
    chain.mine(timestamp=expiry + 10)
    set_eth(cm, admin, "4100")
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    before = vault.cash_of(maker, 0)
    settled = cm.clearing.settle(keeper, maker, future, round_id)
    [event] = settled.decode_logs(clearing.FutureSettled)
    assert event.payoff == 10 * to_wad(4100) - to_wad(30000) - charge.amount
    assert vault.cash_of(maker, 0) - before == event.payoff


def test_status__shows_the_pending_loss_and_the_exit_pool(
    cm, vault, short_calls, stranger, taker, run_status, tmp_path
):
    """`ape run status` shows operators the loss reserved for open insolvent auctions and
    the cash held back from those who left meanwhile."""
    cm.liquidator.start(stranger, short_calls)
    cm.vault.withdraw(taker, "USDC", "50000")
    out = run_status(as_json=True, state_file=tmp_path / "none.json")
    fund = json.loads(out[out.index("{") :])["fund"]
    assert Decimal(fund["pending_loss"]) == from_wad(vault.pending_loss()) > 0
    assert Decimal(fund["exit_pool"]) == from_wad(vault.exit_pool()) > 0
    table = run_status(state_file=tmp_path / "none.json")
    assert "pending loss of insolvent auctions (USD)" in table and "exit pool (USD)" in table


# ---------------------------------------------------------------- the fund and a pending loss

# the fund's virtual shares (snekmate's decimals offset 12) and USDC's WAD scale
VIRTUAL_SHARES = 10**12
USDC_SCALE = 10**12


def exit_assets(cm, vault) -> int:
    """What the fund prices exits on: its token balance less its part of the pending loss."""
    assets = cm.fund.contract.totalAssets()
    return assets - min(assets, -(-vault.pending_loss() // USDC_SCALE))


@pytest.fixture
def open_window(cm, admin, list_option, maker, trader, operator, create_account, fund, insure, accounts, chain):
    """A 40,000 USDC fund of two LPs with 20,000 each, `leaver` (accounts[8]) whose
    withdrawal window is open (for two days) and `stayer` (accounts[9]); then the short-call
    book on fresh prices, insolvent at ETH 6,000, its auction not started."""
    leaver, stayer = accounts[8], accounts[9]
    insure("20000")  # the stayer: accounts[9]
    fund(leaver, "USDC", "20000")
    cm.fund.deposit(leaver, "20000")
    cm.fund.request_withdraw(leaver)
    _, ready, _ = cm.fund.contract.withdrawal_window(leaver)
    chain.pending_timestamp = ready
    cm.oracle.push(admin, "USDC/USD", "1")
    set_eth(cm, admin, "3000")
    call = list_option("ETH", True, "3000", 30)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "20000"})
    create_account(operator, {"USDC": "50000"})
    cm.trade(maker, trader, call, "10", "150")
    set_eth(cm, admin, "6000")
    return leaver, stayer, account_id(trader.address, 0)


def test_fund__lp_in_its_window_redeems_ahead_of_a_known_insolvent_loss__pays_its_share(
    cm, vault, open_window, bidder, stranger
):
    """fails on 6c327b7 (audit, stop 23): an LP whose window was open when an insolvent
    auction started redeemed at the price before the loss (`redeem` never read the vault's
    `pending_loss`), and the LP who stayed paid the leaver's share of it. Exits now price on
    the fund's assets less its part of the pending loss."""
    leaver, stayer, short_calls = open_window
    cm.liquidator.start(stranger, short_calls)  # the loss is public and reserved
    assert vault.pending_loss() > 0
    assets = cm.fund.contract.totalAssets()
    supply = cm.fund.contract.totalSupply()
    stayer_shares = cm.fund.contract.balanceOf(stayer)
    stayer_value = cm.fund.contract.convertToAssets(stayer_shares)

    receipt = cm.fund.redeem(leaver)
    got = receipt.decode_logs(cm.fund.contract.Withdraw)[0].assets
    print(f"leaver redeemed {got / 1e6:.2f} USDC while {vault.pending_loss() / 1e18:.2f} was pending")

    left = cm.fund.contract.totalAssets()
    cm.liquidator.bid(bidder, short_calls, "1", "0")
    outflow = left - cm.fund.contract.totalAssets()  # the loss it covered and the keeper's tip
    assert 0 < outflow < left  # the fund covered it all, even without the leaver
    stayer_lost = stayer_value - cm.fund.contract.convertToAssets(stayer_shares)
    # had the leaver stayed, the fund would have paid the same, each LP its share of it
    fair = outflow * stayer_shares // supply
    print(
        f"fund paid {outflow / 1e6:.2f} of {assets / 1e6:.2f}; "
        f"stayer lost {stayer_lost / 1e6:.2f}, its share {fair / 1e6:.2f}"
    )
    assert stayer_lost <= fair + 1, "the LP who stayed paid the leaver's share of a loss known before it left"


def test_fund__exits_while_a_loss_is_pending__previews_equal_what_they_pay(cm, vault, open_window, bidder, stranger):
    """`previewRedeem`, `previewWithdraw` and `maxWithdraw` price as `redeem` and `withdraw`
    do (the token balance less the fund's part of the pending loss), to the unit once there
    is nothing to harvest; the normal price is back once no loss is pending."""
    leaver, _, short_calls = open_window
    fund = cm.fund.contract
    cm.liquidator.start(stranger, short_calls)
    cm.fund.harvest(stranger)  # the short calls' fees: with nothing left to harvest the previews are exact
    assert fund.pending_income() == 0
    base = exit_assets(cm, vault)
    assert 0 < base < fund.totalAssets()
    ready = fund.maxRedeem(leaver)
    assert (
        fund.maxWithdraw(leaver)
        == fund.previewRedeem(ready)
        == ready * (base + 1) // (fund.totalSupply() + VIRTUAL_SHARES)
    )

    half = ready // 2
    expected = half * (base + 1) // (fund.totalSupply() + VIRTUAL_SHARES)  # rounded down
    assert fund.previewRedeem(half) == expected < fund.convertToAssets(half)
    [redeemed] = fund.redeem(half, leaver, leaver, sender=leaver).decode_logs(fund.Withdraw)
    assert (redeemed.assets, redeemed.shares) == (expected, half)

    amount = 1000 * 10**6
    base = exit_assets(cm, vault)
    burned = -(-amount * (fund.totalSupply() + VIRTUAL_SHARES) // (base + 1))  # rounded up
    assert fund.previewWithdraw(amount) == burned > fund.convertToShares(amount)
    [withdrawn] = fund.withdraw(amount, leaver, leaver, sender=leaver).decode_logs(fund.Withdraw)
    assert (withdrawn.assets, withdrawn.shares) == (amount, burned)

    cm.liquidator.bid(bidder, short_calls, "1", "0")
    assert vault.pending_loss() == 0
    rest = fund.maxRedeem(leaver)
    assert fund.previewRedeem(rest) == fund.convertToAssets(rest) == fund.maxWithdraw(leaver)


def test_fund__exit_while_a_loss_is_pending__leaves_the_funds_part_of_it(cm, vault, open_window, stranger):
    """However much an LP redeems while a loss is pending, the fund keeps at least its part
    of the loss, `min(totalAssets, ceil(pending_loss / scale))`: an exit never lowers what
    the fund covers (which the vault's hold-back counts on)."""
    leaver, _, short_calls = open_window
    fund = cm.fund.contract
    cm.liquidator.start(stranger, short_calls)
    part = fund.totalAssets() - exit_assets(cm, vault)
    assert part > 0
    fund.redeem(fund.maxRedeem(leaver), leaver, leaver, sender=leaver)
    assert fund.balanceOf(leaver) == 0
    assert fund.totalAssets() >= part


def test_fund__pending_loss_beyond_the_fund__exits_priced_at_nothing(cm, vault, short_calls, stranger):
    """A pending loss beyond the fund's balance sets the whole balance aside: an exit then
    gets nothing but its share of the virtual asset (0), and the withdrawals' preview
    asks for more shares than exist."""
    fund = cm.fund.contract
    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > fund.totalAssets() * USDC_SCALE
    assert exit_assets(cm, vault) == 0
    supply = fund.totalSupply()
    assert fund.previewRedeem(supply) == 0 < fund.convertToAssets(supply)
    assert fund.previewWithdraw(1) == supply + VIRTUAL_SHARES > supply


def test_fund__deposit_while_a_loss_is_pending__pays_the_price_before_the_loss(
    cm, vault, open_window, bidder, stranger, trader, taker, fund, chain
):
    """A depositor cannot buy in cheaply ahead of a pending loss: deposits and mints keep the
    full price (the token balance plus unharvested income, no loss taken off). Bought at the
    exit price, its shares would gain when the auction is cured, and it would pay less than
    its share when the loss is paid; at the full price it gains nothing either way."""
    _, _, short_calls = open_window
    shares_of = cm.fund.contract
    cm.liquidator.start(stranger, short_calls)
    amount = 10000 * 10**6
    full = (
        amount
        * (shares_of.totalSupply() + VIRTUAL_SHARES)
        // (shares_of.totalAssets() + shares_of.pending_income() + 1)
    )
    cheap = amount * (shares_of.totalSupply() + VIRTUAL_SHARES) // (exit_assets(cm, vault) + 1)
    assert shares_of.previewDeposit(amount) == full < cheap
    assert shares_of.previewMint(full) <= amount
    fund(taker, "USDC", "10000")
    [deposited] = cm.fund.deposit(taker, "10000").decode_logs(shares_of.Deposit)
    assert deposited.shares == full

    snapshot = chain.snapshot()
    # the account is cured and its auction ends without a loss: the depositor gained nothing
    fund(trader, "USDC", "100000")
    cm.vault.deposit(trader, "USDC", "100000")
    cm.liquidator.terminate(stranger, short_calls)
    assert vault.pending_loss() == 0
    assert shares_of.convertToAssets(full) <= amount
    chain.restore(snapshot)

    # the loss is paid: the depositor pays its share of it
    supply = shares_of.totalSupply()
    before = shares_of.totalAssets()
    cm.liquidator.bid(bidder, short_calls, "1", "0")
    outflow = before - shares_of.totalAssets()
    assert outflow > 0
    lost = amount - shares_of.convertToAssets(full)
    assert lost + 1 >= outflow * full // supply


def test_fund__harvest_while_a_loss_is_pending__moves_all_and_holds_nothing_back(cm, vault, short_calls, stranger):
    """The vault holds nothing back from the fund's own harvest: the cash goes to the fund's
    token balance, which pays the loss first."""
    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > cm.fund.contract.totalAssets() * USDC_SCALE  # a hold-back is due
    income = cm.fund.contract.pending_income()
    assert income > 0  # the short calls' fees
    tokens = cm.fund.contract.totalAssets()
    receipt = cm.fund.harvest(stranger)
    assert receipt.decode_logs(vault.ExitHeldBack) == [] and vault.exit_pool() == 0
    [harvested] = receipt.decode_logs(cm.fund.contract.Harvested)
    assert harvested.amount == income == cm.fund.contract.totalAssets() - tokens
    assert cm.fund.contract.pending_income() == 0


def test_fund__harvest_and_cover_while_a_loss_is_pending__use_the_funds_vault_income(
    cm, vault, short_calls, bidder, stranger, maker, fund
):
    """fails on 6c327b7 (audit, stop 23): while a loss was pending the fund could not harvest:
    the vault's hold-back read the fund's `totalAssets()`, locked by the fund's harvest, so
    the withdrawal failed quietly and `cover` paid 10.00 of an 8,500 loss with 30,000 of
    income in the fund's vault account. The vault now holds nothing back from the fund."""
    fund_address = cm.fund.contract.address
    fund(maker, "USDC", "30000")
    vault.deposit(cm.token("USDC").address, 30000 * 10**6, 0, fund_address, sender=maker)  # income
    assert cm.fund.contract.pending_income() >= 30000 * 10**6  # and the fees of the short calls

    before = cm.fund.contract.harvest.call()  # simulated: no loss pending, it moves it all
    assert before == cm.fund.contract.pending_income()
    cm.liquidator.start(stranger, short_calls)
    assert vault.pending_loss() > 0
    harvested = cm.fund.contract.harvest.call()
    print(f"pending loss {vault.pending_loss() / 1e18:.2f}; harvest moves {harvested / 1e6:.2f} of 30,000.00")
    assert harvested == before

    bid = cm.liquidator.bid(bidder, short_calls, "1", "0")
    covered = covered_of(cm, bid)
    print(
        f"loss {covered.loss / 1e18:.2f}: fund {covered.fund_payout / 1e18:.2f}, "
        f"socialized {covered.socialized / 1e18:.2f}; fund's vault cash left "
        f"{cm.fund.contract.pending_income() / 1e6:.2f}"
    )
    # the fund held 30,010 USDC (10 in tokens, 30,000 as income in its vault account): it
    # pays the whole loss (about 8,500) before anyone else does
    assert covered.fund_payout == covered.loss, "the fund's vault income was left out of the cover"

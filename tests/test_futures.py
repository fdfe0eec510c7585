"""Dated futures (instrument kind 4): listing, trading, margin, settlement, transfer and
liquidation.

A future is marked to its underlying's index until expiry: it adds floor(size · spot) to the
linear exposure E_u (so a long future against a short perp nets to zero in the grid) and
pays the perp add-on on its gross size. From expiry it is worth floor(size · P) − cost at the
stored settlement price P (the first index round at or after expiry), or, before the first
settlement stores P, longs at the grid's least spot and shorts at its greatest, with no
exposure. The clearinghouse keeps one slot per position (at most 16 per account).

Trading fees are off in this module, so every cash change is the positions' own.
"""

import ape
import pytest

from crossmargin.model import clearing as clearing_model
from crossmargin.model import margin as model
from crossmargin.units import WAD, account_id, to_wad

NOT_OWNER = "ownable: caller is not the owner"
DAY = 86_400
FUTURE = 4


@pytest.fixture(autouse=True)
def no_fees(exchange, admin):
    exchange.set_fees(0, 0, 0, sender=admin)


@pytest.fixture
def list_future(cm, admin, chain):
    """Lists an ETH future ``days`` from now; returns its instrument id."""

    def _list(underlying: str = "ETH", days: float = 30, oi_cap=10**6) -> int:
        return cm.markets.list_future(admin, underlying, chain.pending_timestamp + int(days * DAY), oi_cap)

    return _list


def aid(actor, sub: int = 0) -> int:
    return account_id(actor.address, sub)


def future_of(cm, actor, instrument: int, sub: int = 0) -> tuple[int, int]:
    """(size, cost) of a future position in WAD, (0, 0) if none."""
    for future in cm.clearing.futures(actor, sub):
        if future.instrument == instrument:
            return future.size, future.cost
    return 0, 0


def cash(vault, actor, sub: int = 0) -> int:
    return vault.cash_of(actor, sub)


def set_eth(cm, admin, spot: str, vol: str = "0.6") -> None:
    cm.oracle.push(admin, "ETH/USD", spot)
    cm.oracle.push(admin, "ETH/IV", vol)
    cm.oracle.push(admin, "USDC/USD", "1")


def assert_model_matches(cm, actor, sub: int = 0) -> model.Margin:
    """The engine's margin view equals the bit-exact model on a snapshot of the same block."""
    block = ape.chain.blocks.head.number
    snap = model.snapshot(cm, actor, sub, block_id=block)
    m = cm.engine.contract.margin(aid(actor, sub), block_id=block)
    expected = model.margin(*snap)
    assert model.Margin(m.equity, m.initial, m.maintenance) == expected
    return expected


# ------------------------------------------------------------------ listing


def test_list_future__listed__terms_event_and_instrument(cm, markets, admin, chain):
    expiry = chain.pending_timestamp + 90 * DAY
    receipt = markets.list_future(1, expiry, to_wad(500), sender=admin)
    [event] = receipt.decode_logs(markets.InstrumentListed)
    assert (event.underlying, event.kind, event.strike, event.expiry, event.oi_cap) == (
        1,
        FUTURE,
        0,
        expiry,
        to_wad(500),
    )
    listed = markets.instrument(event.instrument)
    assert (listed.kind, listed.underlying, listed.strike, listed.expiry) == (FUTURE, 1, 0, expiry)
    assert (listed.oi_cap, listed.open_interest, listed.settlement_price) == (to_wad(500), 0, 0)


def test_list_future__not_owner__reverts(markets, stranger, chain):
    with ape.reverts(NOT_OWNER):
        markets.list_future(1, chain.pending_timestamp + DAY, 1, sender=stranger)


def test_list_future__unknown_underlying__reverts(markets, engine, admin, chain):
    with ape.reverts("markets: unknown underlying"):
        markets.list_future(0, chain.pending_timestamp + DAY, 1, sender=admin)
    with ape.reverts("markets: unknown underlying"):
        markets.list_future(engine.underlying_count() + 1, chain.pending_timestamp + DAY, 1, sender=admin)


def test_list_future__expiry_past_or_beyond_5_years__reverts(markets, admin, chain):
    now = chain.pending_timestamp
    with ape.reverts("markets: bad expiry"):
        markets.list_future(1, now - 1, 1, sender=admin)
    with ape.reverts("markets: bad expiry"):
        markets.list_future(1, now + 5 * 365 * DAY + 3_600, 1, sender=admin)


# ------------------------------------------------------------------ trading


def test_future_trade__positions_cost_oi_and_realized_pnl(cm, markets, vault, books, maker, taker, list_future):
    future = list_future()
    maker_cash, taker_cash = cash(vault, maker), cash(vault, taker)
    cm.trade(maker, taker, future, "2", "3010")
    assert future_of(cm, maker, future) == (to_wad(2), to_wad(6020))
    assert future_of(cm, taker, future) == (-to_wad(2), -to_wad(6020))
    assert markets.instrument(future).open_interest == to_wad(2)
    # no premium changes hands at the trade
    assert (cash(vault, maker), cash(vault, taker)) == (maker_cash, taker_cash)
    cm.trade(maker, taker, future, "-1", "3050")
    assert future_of(cm, maker, future) == (to_wad(1), to_wad(2970))
    cm.trade(maker, taker, future, "-1", "3070")
    # flat: the cost is realized, the slot freed
    assert future_of(cm, maker, future) == (0, 0) and cm.clearing.futures(maker) == []
    assert cash(vault, maker) - maker_cash == to_wad(100)
    assert taker_cash - cash(vault, taker) == to_wad(100)
    assert markets.instrument(future).open_interest == 0


def test_future_trade__cost_rounds_against_the_account(cm, books, maker, taker, list_future):
    """cost += ceil(size · price): a long's cost rounds up, a short's toward zero."""
    future = list_future()
    cm.trade(maker, taker, future, "0.000000000000000001", "0.5")
    assert future_of(cm, maker, future) == (1, 1)
    assert future_of(cm, taker, future) == (-1, 0)
    size, cost, realized = clearing_model.future_trade(0, 0, 1, WAD // 2)
    assert (size, cost, realized) == (1, 1, 0)


def test_future_trade__over_the_oi_cap__reverts(cm, books, maker, taker, list_future):
    future = list_future(oi_cap=2)
    cm.trade(maker, taker, future, "2", "3000")
    with ape.reverts("markets: open interest cap"):
        cm.trade(maker, taker, future, "0.5", "3000")
    cm.trade(maker, taker, future, "-1", "3000")  # open interest may always fall


def test_future_trade__expired__reverts(cm, books, maker, taker, list_future, chain, markets):
    future = list_future(days=1)
    cm.trade(maker, taker, future, "1", "3000")
    chain.mine(timestamp=markets.instrument(future).expiry)
    with ape.reverts("markets: instrument expired"):
        cm.trade(maker, taker, future, "-1", "3000")


def test_future_trade__17th_position__reverts(cm, books, maker, taker, list_future):
    futures = [list_future(days=30 + i) for i in range(17)]
    for future in futures[:16]:
        cm.trade(maker, taker, future, "0.01", "3000")
    assert len(cm.clearing.futures(maker)) == 16
    with ape.reverts("clearing: position cap"):
        cm.trade(maker, taker, futures[16], "0.01", "3000")
    # closing one frees a slot: the last word takes its place
    cm.trade(maker, taker, futures[0], "-0.01", "3000")
    cm.trade(maker, taker, futures[16], "0.01", "3000")
    assert sorted(f.instrument for f in cm.clearing.futures(maker)) == sorted(futures[1:])


def test_future_trade__size_or_cost_past_the_slot__reverts(cm, books, maker, taker, list_future, admin):
    """A size takes int88 and a cost int128 of the slot (with no notional cap, which would
    stop these sizes first: `markets: position notional cap`)."""
    cm.markets.contract.set_position_cap(cm.manifest.underlyings["ETH"], 0, sender=admin)
    future = list_future(oi_cap=2**100)
    order = cm.exchange.make_order(maker, future, True, size_raw=2**87, price_raw=1)
    with ape.reverts("clearing: position out of range"):
        cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), size_raw=2**87, taker_subaccount=0)
    order = cm.exchange.make_order(maker, future, True, "1", price_raw=2**127)
    with ape.reverts("clearing: position out of range"):
        cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), "1", 0)


def test_future_fill__operator_off_the_index__reverts_within_the_perp_band__fills(
    cm, vault, create_account, trader, operator, taker, list_future
):
    """An operator's fill on a future is held to the perp band (1%) around the index."""
    create_account(trader, {"USDC": "20000"})
    create_account(taker, {"USDC": "100000"})
    vault.set_operator(0, operator, True, sender=trader)
    future = list_future()
    order = cm.exchange.make_order(trader, future, True, "1", 3031)
    with ape.reverts("markets: operator price out of band"):
        cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    order = cm.exchange.make_order(trader, future, True, "1", 3029)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert future_of(cm, trader, future) == (WAD, to_wad(3029))


# ------------------------------------------------------------------ margin


def test_margin__long_future__linear_exposure_like_a_perp(cm, books, maker, taker, list_future, create_account, trader):
    """A future alone needs what the same perp needs: the -15% move plus 1% of notional."""
    create_account(trader, {"USDC": "10000"})
    future = list_future()
    cm.trade(trader, maker, future, "10", "3000")
    m = assert_model_matches(cm, trader)
    assert m.maintenance == to_wad(4800)
    assert m.equity == to_wad(10000)
    [risk] = cm.engine.contract.risk(aid(trader))
    assert risk.loss == to_wad(4500)


def test_greeks__futures__delta_until_expiry_equal_to_the_model(
    cm, admin, books, maker, list_future, create_account, trader, chain, markets
):
    """A live future is delta (its size, as a perp's); an expired one is not (the engine gives
    it no exposure); an underlying held through a future alone has a greeks line. The risk
    model's view equals the model's."""
    create_account(trader, {"USDC": "60000"})
    expiring, live = list_future(days=1), list_future(days=60)
    btc = list_future("BTC", days=60)
    cm.trade(trader, maker, expiring, "-3", "3000")
    cm.trade(trader, maker, live, "2", "3000")
    cm.trade(trader, maker, btc, "0.5", "60000")
    eth, btc_u = cm.manifest.underlyings["ETH"], cm.manifest.underlyings["BTC"]

    def greeks() -> dict[int, model.Greeks]:
        block = ape.chain.blocks.head.number
        snap = model.snapshot(cm, trader, block_id=block)
        view = [
            model.Greeks(g.underlying, g.delta, g.gamma, g.vega)
            for g in cm.engine.risk_model.greeks(aid(trader), block_id=block)
        ]
        assert view == model.greeks(*snap)
        return {g.underlying: g for g in view}

    before = greeks()
    assert (before[eth].delta, before[btc_u].delta) == (to_wad(-1), to_wad("0.5"))
    assert before[eth].gamma == before[eth].vega == 0
    chain.mine(timestamp=markets.instrument(expiring).expiry + 10)
    set_eth(cm, admin, "3000")
    cm.oracle.push(admin, "BTC/USD", "60000")
    cm.oracle.push(admin, "BTC/IV", "0.5")
    assert greeks()[eth].delta == to_wad(2)


def test_margin__calendar_spread__nets_to_the_add_on(cm, books, maker, taker, list_future, create_account, trader):
    create_account(trader, {"USDC": "10000"})
    future = list_future(days=90)
    cm.trade(trader, maker, future, "10", "3000")
    cm.trade(trader, maker, cm.markets.perp("ETH"), "-10", "3000")
    m = assert_model_matches(cm, trader)
    assert m.maintenance == to_wad(600)  # 1% of each leg's notional, no grid loss
    [risk] = cm.engine.contract.risk(aid(trader))
    assert risk.loss == 0


def test_margin__model_matches_with_futures_options_and_perps(
    cm, admin, books, maker, taker, list_future, list_option, create_account, trader, chain
):
    create_account(trader, {"USDC": "30000", "WETH": "2"})
    near, far = list_future(days=7), list_future(days=120)
    call = list_option("ETH", True, "3200", 30)
    cm.trade(trader, maker, near, "3", "3005")
    cm.trade(trader, maker, far, "-2", "3040")
    cm.trade(trader, maker, call, "-1", "90")
    cm.trade(trader, maker, cm.markets.perp("ETH"), "1", "3000")
    cm.trade(trader, maker, cm.markets.perp("BTC"), "0.1", "60000")
    assert_model_matches(cm, trader)
    chain.mine(timestamp=chain.pending_timestamp + 3 * DAY)
    set_eth(cm, admin, "3170")
    cm.oracle.push(admin, "BTC/USD", "61000")
    cm.oracle.push(admin, "BTC/IV", "0.5")
    assert_model_matches(cm, trader)


@pytest.mark.parametrize("settled", [False, True])
def test_margin__model_matches_across_expiry_on_two_underlyings(
    cm, admin, markets, books, maker, list_future, list_option, create_account, trader, chain, keeper, settled
):
    """One book, futures live and expired (unsettled, then settled) on ETH and BTC beside an
    option and a perp: the engine's margin equals the model's at each step."""
    create_account(trader, {"USDC": "60000", "WETH": "1"})
    short_expiring, live = list_future(days=1), list_future(days=60)
    btc_expiring = list_future("BTC", days=1)
    put = list_option("ETH", False, "2800", 30)
    cm.trade(trader, maker, short_expiring, "-3", "3002")
    cm.trade(trader, maker, live, "2", "3030")
    cm.trade(trader, maker, btc_expiring, "0.2", "60100")
    cm.trade(trader, maker, put, "1", "60")
    cm.trade(trader, maker, cm.markets.perp("ETH"), "-1", "3000")
    assert_model_matches(cm, trader)
    chain.mine(timestamp=markets.instrument(short_expiring).expiry + 10)
    set_eth(cm, admin, "3120")
    cm.oracle.push(admin, "BTC/USD", "58000")
    cm.oracle.push(admin, "BTC/IV", "0.5")
    if settled:
        eth_round = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
        btc_round = cm.oracle.aggregator("BTC/USD").latestRoundData()[0]
        cm.clearing.settle(keeper, maker, short_expiring, eth_round)
        cm.clearing.settle(keeper, maker, btc_expiring, btc_round)
    m = assert_model_matches(cm, trader)
    assert m.maintenance > 0  # the live future, the put and the perp


def test_margin__expired_unsettled__grid_extremes_no_exposure(
    cm, admin, markets, books, maker, taker, list_future, create_account, trader, chain
):
    """From expiry and before a settlement price is stored, a long is worth the grid's least
    spot (-30%) and a short its greatest (+30%), with no exposure or add-on: the live spot,
    which may have moved past the settlement round, lends nothing."""
    create_account(trader, {"USDC": "10000"})
    future = list_future(days=1)
    cm.trade(trader, maker, future, "2", "3000")
    chain.mine(timestamp=markets.instrument(future).expiry + 10)
    set_eth(cm, admin, "3500")
    long = assert_model_matches(cm, trader)
    # floor(2 · 3500 · 0.7) − 6000
    assert long.equity == to_wad(10000) + to_wad(4900) - to_wad(6000)
    assert long.maintenance == 0
    short = assert_model_matches(cm, maker)
    assert short.equity == to_wad(100000) - to_wad(9100) + to_wad(6000)
    assert [r.underlying for r in cm.engine.contract.risk(aid(trader))] == [1]


def test_margin__expired_settled__at_the_settlement_price(
    cm, admin, markets, books, maker, taker, list_future, create_account, trader, chain, keeper
):
    create_account(trader, {"USDC": "10000"})
    future = list_future(days=1)
    cm.trade(trader, maker, future, "2", "3000")
    chain.mine(timestamp=markets.instrument(future).expiry + 10)
    set_eth(cm, admin, "3250")
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    cm.clearing.settle(keeper, maker, future, round_id)  # stores P = 3250
    set_eth(cm, admin, "2000")  # the live spot no longer matters
    m = assert_model_matches(cm, trader)
    assert m.equity == to_wad(10000) + to_wad(500) and m.maintenance == 0


def test_margin__futures_only__stale_vol_feed__valued(
    cm, admin, books, maker, list_future, create_account, trader, chain
):
    """A future needs its underlying's spot feed only: a stale vol round does not block the
    valuation of an account holding futures alone."""
    create_account(trader, {"USDC": "10000"})
    future = list_future()
    cm.trade(trader, maker, future, "1", "3000")
    chain.mine(timestamp=chain.pending_timestamp + 4_000)  # past every heartbeat
    for name, answer in (("ETH/USD", "3100"), ("USDC/USD", "1")):
        cm.oracle.push(admin, name, answer)
    m = cm.engine.contract.margin(aid(trader))
    assert m.equity == to_wad(10100)
    assert cm.engine.contract.check_initial.call(aid(trader)) >= 0


# ------------------------------------------------------------------ settlement


def test_settle__expired_future__both_sides_at_the_round_hint(
    cm, admin, markets, vault, clearing, books, maker, taker, list_future, chain, keeper
):
    future = list_future(days=1)
    cm.trade(maker, taker, future, "2", "3010")
    expiry = markets.instrument(future).expiry
    with ape.reverts("markets: not expired"):
        cm.clearing.settle(keeper, maker, future, 1)
    chain.mine(timestamp=expiry + 10)
    set_eth(cm, admin, "3250")
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    set_eth(cm, admin, "3900")  # a later round: not the settlement price
    maker_cash, taker_cash = cash(vault, maker), cash(vault, taker)
    first = cm.clearing.settle(keeper, maker, future, round_id)
    second = cm.clearing.settle(keeper, taker, future, 0)  # the price is stored
    assert [(e.instrument, e.price) for e in first.decode_logs(markets.SettlementPriceStored)] == [
        (future, to_wad(3250))
    ]
    [event] = first.decode_logs(clearing.FutureSettled)
    assert (event.account, event.instrument, event.size, event.settlement_price, event.payoff) == (
        aid(maker),
        future,
        to_wad(2),
        to_wad(3250),
        to_wad(480),
    )
    assert second.decode_logs(markets.SettlementPriceStored) == []
    assert cash(vault, maker) - maker_cash == to_wad(480)
    assert taker_cash - cash(vault, taker) == to_wad(480)
    assert clearing_model.future_payoff(-to_wad(2), -to_wad(6020), to_wad(3250)) == -to_wad(480)
    assert cm.clearing.futures(maker) == [] and cm.clearing.futures(taker) == []
    assert markets.instrument(future).open_interest == 0
    with ape.reverts("clearing: no position"):
        cm.clearing.settle(keeper, maker, future, 0)


def test_settle__perp__reverts(cm, keeper, maker):
    with ape.reverts("markets: not dated"):
        cm.clearing.settle(keeper, maker, cm.markets.perp("ETH"), 1)


# ------------------------------------------------------------------ transfer and liquidation


@pytest.fixture
def short_futures_book(cm, create_account, maker, trader, list_future):
    """`trader` (10,000 USDC) short 10 ETH futures at 3,000; `maker` long with 1M USDC."""
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    future = list_future(days=60)
    cm.trade(maker, trader, future, "10", "3000")
    return future


def test_liquidation__book_with_futures__bid_moves_a_tenth_with_cost(
    cm, admin, markets, vault, short_futures_book, create_account, keeper, trader, chain
):
    future = short_futures_book
    create_account(keeper, {"USDC": "100000"})
    set_eth(cm, admin, "3500")  # equity 5,000 < MM 5,600
    start = cm.liquidator.start(keeper, aid(trader))
    chain.mine(timestamp=start.timestamp + 300)
    cm.liquidator.bid(keeper, aid(trader), "0.1", "1000")
    assert future_of(cm, trader, future) == (-to_wad(9), -to_wad(27000))
    assert future_of(cm, keeper, future) == (-to_wad(1), -to_wad(3000))
    assert markets.instrument(future).open_interest == to_wad(10)  # shorts moved: no change
    assert_model_matches(cm, trader)
    assert_model_matches(cm, keeper)
    # the model's split of the same slice
    assert clearing_model.future_split(-to_wad(10), -to_wad(30000), 0, 0, to_wad("0.1")) == (
        -to_wad(9),
        -to_wad(27000),
        -to_wad(1),
        -to_wad(3000),
        0,
    )


def test_deleveraged_future__perp_funding_still_moves(
    cm, clearing, admin, maker, trader, taker, keeper, stranger, create_account, insure, list_future, chain
):
    """fails on 6c327b7 (audit, stop 23): deleveraging a future sets LOSS_FLAG, bit 255 of
    the clearinghouse's settings word, for good, and the perp funding read
    `funding_notional` from bits 136..255 with it: the reference became N + 2**119, so
    every perp's premium EMA froze wherever it was. After a quiet hour a full-notional fill
    at a 1% premium sets the EMA to 1% again."""
    insure("10")
    future = list_future(days=2)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    create_account(taker, {"USDC": "1000000"})
    create_account(keeper, {"USDC": "100000"})
    cm.trade(maker, trader, future, "10", "3000")  # the trader short 10
    set_eth(cm, admin, "4100")
    account = account_id(trader.address, 0)
    cm.liquidator.start(stranger, account)
    [charge] = cm.liquidator.bid(keeper, account, "1", "0").decode_logs(clearing.Deleveraged)
    assert charge.amount > 0  # a future's side was charged: the settings word has LOSS_FLAG
    chain.mine(timestamp=chain.pending_timestamp + 3600)
    set_eth(cm, admin, "3000")
    notional = cm.markets.contract.funding_notional()
    cm.trade(maker, taker, cm.markets.perp("ETH"), str(notional // 3000 // WAD + 1), "3030")  # >= N at +1%
    assert clearing.funding(cm.manifest.underlyings["ETH"]).premium_ema == to_wad("0.01")


def claims(cm, vault, owners) -> int:
    """Every claim on the vault's USDC once no position is open (WAD)."""
    held = sum(vault.cash_of(owner, 0) for owner in owners)
    return held + vault.exit_pool() + vault.exit_charges()


def test_deleverage__expired_future_with_shorts_settled__left_to_socialization(
    cm, vault, clearing, markets, usdc, admin, maker, trader, keeper, stranger, create_account, insure, chain
):
    """fails on 6c327b7 (audit, stop 23): an insolvent long holding an expired future whose
    shorts had already settled: the deleveraging charged the future's short side through
    its loss index, sized by the open interest (the unsettled long units), though no short
    unit was left to pay it, and the bidder was credited 990 USD backed by nothing. An
    expired future is now left to the socialization: the vault holds every claim."""
    insure("10")  # far too little
    expiry = chain.pending_timestamp + 2 * DAY
    future = cm.markets.list_future(admin, "ETH", expiry, 10**6)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "10000"})
    create_account(keeper, {"USDC": "100000"})
    cm.trade(trader, maker, future, "10", "3000")  # trader long 10, maker short 10
    chain.mine(timestamp=expiry + 10)
    set_eth(cm, admin, "1900")
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    # the short settles its gain first (anyone may send it)
    cm.clearing.settle(stranger, maker, future, round_id)
    assert markets.instrument(future).open_interest == to_wad(10)  # the long's units only
    account = account_id(trader.address, 0)
    m = cm.engine.contract.margin(account)
    assert m.equity < 0  # 10,000 + 19,000 − 30,000
    cm.liquidator.start(stranger, account)
    receipt = cm.liquidator.bid(keeper, account, "1", "0")
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    cm.clearing.settle(stranger, keeper, future, 0)  # the bidder settles the long it bought
    owners = [maker, trader, keeper, stranger, cm.fund.contract]
    held = usdc.contract.balanceOf(vault) * 10**12
    assert covered.deleveraged == 0 and covered.socialized > 0
    assert claims(cm, vault, owners) <= held


def test_dust_future_with_a_huge_cost__insolvent_account_still_liquidated(
    cm, vault, clearing, markets, admin, maker, trader, taker, keeper, stranger, create_account, insure, chain
):
    """fails on 6c327b7 (audit, stop 23): an account kept a 1-wei long in a future nobody
    else traded (open interest 1 wei) at a cost of ~30,000 USD (bought 10 at 3,000 from its
    own second account, all but 1 wei sold back at 1 USD). Insolvent beyond the fund, `mark`
    gave that side thousands of USD per wei of open interest, past 2**128 per unit, and the
    start reverted ("clearing: pending charge out of range"), as every bid did in
    `deleverage`: nobody could liquidate it. Each per-unit charge now stops at 2**128 − 1
    and the vault socializes what it leaves."""
    account = dust_future_book(cm, markets, admin, maker, trader, taker, keeper, create_account, insure, chain)
    set_eth(cm, admin, "4100")
    m = cm.engine.contract.margin(account)
    assert m.equity <= 0
    cm.liquidator.start(stranger, account)
    receipt = cm.liquidator.bid(keeper, account, "1", "0")
    [covered] = receipt.decode_logs(cm.liquidator.contract.LossCovered)
    assert covered.socialized > 0
    assert not cm.liquidator.contract.in_auction(account)


def test_dust_future_with_a_huge_cost__started_solvent__sold_in_slices(
    cm, vault, clearing, markets, admin, maker, trader, taker, keeper, stranger, create_account, insure, chain
):
    """fails on 6c327b7 (audit, stop 23): the same book started while still solvent: once it
    was insolvent, every bid reverted in `deleverage` ("clearing: loss index out of range",
    the 1-wei side's index past 2**128 after ~340 USD in all). Now the slices go through
    and the auction ends."""
    account = dust_future_book(cm, markets, admin, maker, trader, taker, keeper, create_account, insure, chain)
    set_eth(cm, admin, "3700")
    m = cm.engine.contract.margin(account)
    assert 0 < m.equity < m.maintenance
    cm.liquidator.start(stranger, account)
    set_eth(cm, admin, "4100")
    # sliced thin, each slice's charge fits; their sum does not: the 1-wei side's loss index
    # passes 2**128 after ~340 USD in all (the 1 wei moves only with the last slice)
    for _ in range(20):
        cm.liquidator.bid(keeper, account, "0.1", "0")
    cm.liquidator.bid(keeper, account, "1", "0")
    assert not cm.liquidator.contract.in_auction(account)


def dust_future_book(cm, markets, admin, maker, trader, taker, keeper, create_account, insure, chain) -> int:
    """`trader`: a 1-wei long in a fresh future at a cost of ~29,990 USD (its accomplice
    `taker` holds the other side), short 10 ETH perp at 3,000 against `maker`, 40,000 USDC."""
    insure("10")
    future = cm.markets.list_future(admin, "ETH", chain.pending_timestamp + 30 * DAY, 10**6)
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "40000"})
    create_account(taker, {"USDC": "100000"})
    create_account(keeper, {"USDC": "100000"})
    cm.trade(trader, taker, future, "10", "3000")  # trader long 10 from its accomplice
    cm.trade(trader, taker, future, "-9.999999999999999999", "1", preflight=False)  # all but 1 wei back at 1 USD
    assert markets.instrument(future).open_interest == 1
    cm.trade(maker, trader, cm.markets.perp("ETH"), "10", "3000")  # trader short 10 ETH perp
    return account_id(trader.address, 0)


def test_liquidation__bidder_long_the_future__nets_and_realizes(
    cm, admin, markets, vault, short_futures_book, create_account, keeper, trader, maker, chain
):
    """A bidder long the same future nets the slice against it: the open interest falls and
    the bidder's cost is realized once flat."""
    future = short_futures_book
    create_account(keeper, {"USDC": "100000"})
    cm.trade(keeper, maker, future, "1", "3100")  # the bidder long 1 at 3,100
    set_eth(cm, admin, "3500")
    start = cm.liquidator.start(keeper, aid(trader))
    chain.mine(timestamp=start.timestamp + 300)
    oi = markets.instrument(future).open_interest
    before, trader_cash = cash(vault, keeper), vault.account_state(aid(trader))[0]
    receipt = cm.liquidator.bid(keeper, aid(trader), "0.1", "1000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)
    assert future_of(cm, keeper, future) == (0, 0) and cm.clearing.futures(keeper) == []
    assert markets.instrument(future).open_interest == oi - to_wad(1)
    # the bidder realizes −(3,100 − 3,000), then takes the slice of cash as in any bid
    realized = clearing_model.future_split(-to_wad(10), -to_wad(30000), to_wad(1), to_wad(3100), to_wad("0.1"))
    assert realized == (-to_wad(9), -to_wad(27000), 0, 0, -to_wad(100))
    tip = min(to_wad(5), bid.fee)
    assert cash(vault, keeper) == before - to_wad(100) + trader_cash * to_wad("0.1") // WAD - bid.price + tip


def test_liquidation__capped_bid__moves_trunc_size_and_cost_pro_rata(
    cm, admin, markets, vault, short_futures_book, create_account, keeper, trader, chain
):
    future = short_futures_book
    create_account(keeper, {"USDC": "200000"})
    set_eth(cm, admin, "3500")
    start = cm.liquidator.start(keeper, aid(trader))
    chain.mine(timestamp=start.timestamp + 300)
    receipt = cm.liquidator.bid(keeper, aid(trader), "1", "100000")
    [bid] = receipt.decode_logs(cm.liquidator.contract.Bid)  # capped below the whole account
    size, cost, held, held_cost, _ = clearing_model.future_split(-to_wad(10), -to_wad(30000), 0, 0, bid.fraction)
    assert future_of(cm, trader, future) == (size, cost)
    assert future_of(cm, keeper, future) == (held, held_cost)
    assert size + held == -to_wad(10) and cost + held_cost == -to_wad(30000)
    assert_model_matches(cm, trader)
    assert_model_matches(cm, keeper)


# ------------------------------------------------------------------ liquidation after expiry


@pytest.fixture
def expired_long(cm, admin, insure, create_account, maker, trader, keeper, chain, list_future):
    """`trader` long 10 ETH futures at 3,000 on 7,000 USDC (above IM before expiry), the
    expiry come with the last round before it at 3,000 and none at or after it yet (nobody
    can settle); a fund of 100,000 USDC and a bidder."""
    insure("100000")
    future = list_future(days=2)
    expiry = cm.markets.contract.instrument(future).expiry
    create_account(maker, {"USDC": "1000000"})
    create_account(trader, {"USDC": "7000"})
    create_account(keeper, {"USDC": "100000"})
    cm.trade(trader, maker, future, "10", "3000")
    chain.mine(timestamp=expiry - 20)
    set_eth(cm, admin, "3000")  # the last round before expiry: the price has not moved
    chain.mine(timestamp=expiry)
    return future


def test_liquidation__expired_unsettled_long_healthy_at_the_index__not_sold_as_insolvent(
    cm, vault, admin, expired_long, trader, keeper, stranger
):
    """fails on 6c327b7 (audit, stop 23): the liquidation valued the expired, unsettled long
    at the grid's least spot (−30%) as withdrawals do: a healthy 4x long (7,000 USDC, spot
    unchanged) was worth −2,000, anyone started an insolvent auction and bid it out, and the
    fund paid a deficit the settlement price never made. It is now valued at the index, as
    a live future (exposure and add-on)."""
    future = expired_long
    account = aid(trader)
    held = cash(vault, trader)  # 7,000 less its trading fee
    # withdrawals and views keep the worst case: floor(10 · 3,000 · 0.7) − 30,000
    assert cm.engine.contract.margin(account).equity == held - to_wad(9000)
    with ape.reverts("vault: insufficient margin"):
        cm.vault.withdraw(trader, "USDC", "1")
    # the liquidation: 7,000 of equity, above the requirement of a live 10 ETH long
    bound = cm.engine.contract.refresh_bound.call(account, 1)
    assert bound.equity == held and bound.maintenance < held
    snap = model.snapshot(cm, trader, liquidation=True)
    assert tuple(bound) == tuple(model.margin(*snap, hint=1))
    fund_before = cm.fund.contract.totalAssets()
    with ape.reverts("liquidator: account healthy"):
        cm.liquidator.start(stranger, account)
    set_eth(cm, admin, "3000")  # the first round after expiry: the same price
    round_id = cm.oracle.aggregator("ETH/USD").latestRoundData()[0]
    cm.clearing.settle(stranger, trader, future, round_id)
    assert cash(vault, trader) == held  # worth its cash at the settlement price
    assert cm.fund.contract.totalAssets() == fund_before


def test_liquidation__expired_unsettled_long_after_a_crash__liquidated_at_the_index(
    cm, vault, admin, expired_long, trader, keeper, stranger, chain
):
    """Liquidations stay possible in a crash before anyone settles: at 2,400 after expiry
    the long (equity 1,000) is below the requirement of a live future at the index, solvent,
    and sold in slices like one; the bidder is margined on the same valuation and the model
    equals both."""
    future = expired_long
    account = aid(trader)
    set_eth(cm, admin, "2400")
    bound = cm.engine.contract.refresh_bound.call(account, 1)
    assert bound.equity == cash(vault, trader) - to_wad(6000) and 0 < bound.equity < bound.maintenance
    assert tuple(bound) == tuple(model.margin(*model.snapshot(cm, trader, liquidation=True), hint=1))
    # a scenario hint bounds the same valuation, as the model computes it
    hint = (1 << (8 * cm.manifest.underlyings["ETH"])) | 1
    hinted = cm.engine.contract.refresh_bound.call(account, hint)
    assert hinted.equity == bound.equity and 0 < hinted.maintenance <= bound.maintenance
    assert tuple(hinted) == tuple(model.margin(*model.snapshot(cm, trader, liquidation=True), hint=hint))
    start = cm.liquidator.start(stranger, account)
    [event] = start.decode_logs(cm.liquidator.contract.AuctionStarted)
    assert (event.equity, event.maintenance) == (bound.equity, bound.maintenance)
    chain.mine(timestamp=start.timestamp + 300)
    set_eth(cm, admin, "2400")
    cm.liquidator.bid(keeper, account, "0.1", "1000")
    assert future_of(cm, keeper, future) == (to_wad(1), to_wad(3000))
    after = cm.engine.contract.refresh_bound.call(aid(keeper), 1)
    assert tuple(after) == tuple(model.margin(*model.snapshot(cm, keeper, liquidation=True), hint=1))
    # the views still value the bought slice at the worst case
    assert tuple(cm.engine.contract.margin(aid(keeper))) == tuple(model.margin(*model.snapshot(cm, keeper)))

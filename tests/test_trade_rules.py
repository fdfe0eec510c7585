"""The trade rules that keep two colluding accounts from taking value that should not move
(issue 11): the risk-reducing exception, the notional-weighted funding EMA and the
operator price band. Each regression test says how it fails on ``c1dcd68``, the code before
the fix."""

from decimal import Decimal

import ape
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples

from crossmargin.model import clearing as rules
from crossmargin.units import WAD, from_wad, to_wad

MAKER_FEE = Decimal("0.0002")


@pytest.fixture
def short_under_mm(cm, books, maker, taker, admin):
    """The maker is short 100 ETH perps on 100k USDC, and ETH at 3,500 puts it under
    maintenance margin with positive equity; the taker (its accomplice) holds the long."""
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "-100", "3000")
    cm.oracle.push(admin, "ETH/USD", "3500")
    m = cm.engine.margin(maker)
    assert 0 < m.equity < m.maintenance
    return perp, m


def buy_back_price(m, units: int, equity_after: Decimal, spot=3500) -> Decimal:
    """The price at which the maker buying back ``units`` leaves it ``equity_after`` (the
    maker fee included): E' = E − units·(X − spot) − units·X·fee, rounded up to the cent so
    that E' is at most ``equity_after``."""
    price = (m.equity - equity_after + units * spot) / (units * (1 + MAKER_FEE))
    return price.quantize(Decimal("0.01"), rounding="ROUND_UP")


# ------------------------------------------------------------------ finding 1


def test_trade__under_mm_whole_book_to_an_accomplice_into_negative_equity__reverts(cm, short_under_mm, maker, taker):
    """Fails on c1dcd68 (the fill goes through): an account under MM closes its whole book
    to an accomplice at an off-market price. MM falls to 0 and `equity − MM` does not fall,
    so the old exception let it end at negative equity, a deficit the fund would pay."""
    perp, m = short_under_mm
    health = m.equity - m.maintenance
    price = buy_back_price(m, 100, health / 2)  # E' = health / 2 < 0, above the old floor
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, perp, "100", price)
    assert cm.clearing.perp_size(maker, "ETH") == -100


def test_trade__under_mm_partial_close_thinning_the_account__reverts(cm, short_under_mm, maker, taker):
    """Fails on c1dcd68: closing half the book at a price that keeps `equity − MM` but hands
    the accomplice most of the equity leaves the account thinner per unit of risk (it is
    then a small move from insolvency); the ratio rule refuses it."""
    perp, m = short_under_mm
    # half the book: MM' = MM / 2 (linear in size). The old rule needs E' >= MM' + E − MM,
    # the ratio rule E' >= E · MM' / MM = E / 2, which is higher below MM: aim between
    floor_old, floor_new = m.maintenance / 2 + m.equity - m.maintenance, m.equity / 2
    assert floor_new - floor_old > 1_000
    price = buy_back_price(m, 50, (floor_old + floor_new) / 2)
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, perp, "50", price)


def test_trade__under_mm_closing_at_the_index__allowed(cm, short_under_mm, maker, taker):
    """A fair reduction still goes through under MM: half, then all of the book, at the index."""
    perp, m = short_under_mm
    cm.trade(maker, taker, perp, "50", "3500")
    half = cm.engine.margin(maker)
    assert half.maintenance < m.maintenance and half.equity * m.maintenance >= m.equity * half.maintenance
    cm.trade(maker, taker, perp, "50", "3500")
    closed = cm.engine.margin(maker)
    assert cm.clearing.perp_size(maker, "ETH") == 0
    assert closed.maintenance == 0 and closed.equity > 0


def test_trade__insolvent_account__cannot_trade(cm, short_under_mm, maker, taker, admin):
    """Fails on c1dcd68 (a partial close at the index passed): below zero equity every
    trade would leave the account at negative equity, so none goes through; the auction
    takes it."""
    perp, _ = short_under_mm
    cm.oracle.push(admin, "ETH/USD", "4100")
    assert cm.engine.margin(maker).equity < 0
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, perp, "10", "4100")


@settings(max_examples=examples(300), deadline=None)
@given(
    equity=st.integers(-(10**30), 10**30),
    mm=st.integers(1, 10**30),
    equity_after=st.integers(-(10**30), 10**30),
    mm_after=st.integers(0, 10**30),
)
def test_model__risk_reducing_exception__never_negative_never_thinner(equity, mm, equity_after, mm_after):
    """Whatever a trade does, the exception lets it through only at non-negative equity and
    no thinner per unit of MM, and below MM it hands out at most E·(1 − MM'/MM)."""
    if rules.risk_reducing_allowed(equity, mm, equity_after, mm_after):
        assert equity_after >= 0
        assert equity_after * mm >= equity * mm_after
        if 0 <= equity < mm:
            assert equity - equity_after <= equity - equity * mm_after // mm


# ------------------------------------------------------------------ finding 3


def test_funding__one_wei_fill_after_a_quiet_hour__moves_the_ema_by_nothing(cm, clearing, books, maker, taker, chain):
    """Fails on c1dcd68 (the EMA jumps to +100%): after a quiet window one fill of 1 wei at
    twice the index set the EMA to its clamp, and funding ran at its cap for hours."""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    chain.mine(timestamp=chain.pending_timestamp + 3600)
    order = cm.exchange.make_order(maker, perp, True, size_raw=1, price=6000)
    cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), size_raw=1, taker_subaccount=0)
    assert clearing.funding(u).premium_ema == 0


def test_funding_notional__owner_and_bounds(markets, admin, stranger):
    assert markets.funding_notional() == to_wad(100_000)
    with ape.reverts("ownable: caller is not the owner"):
        markets.set_funding_notional(to_wad(1_000), sender=stranger)
    with ape.reverts("markets: funding notional out of bounds"):
        markets.set_funding_notional(to_wad(100) - 1, sender=admin)
    with ape.reverts("markets: funding notional out of bounds"):
        markets.set_funding_notional(to_wad(10**12) + 1, sender=admin)
    receipt = markets.set_funding_notional(to_wad(10**12), sender=admin)
    assert markets.funding_notional() == to_wad(10**12)
    assert [e.notional for e in receipt.decode_logs(markets.FundingNotionalSet)] == [to_wad(10**12)]
    # the other settings in the word are untouched
    assert (markets.funding_interval(), markets.ema_window(), markets.max_options()) == (8 * 3600, 3600, 64)


DUST = to_wad(10)  # USD of notional at the index


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    wait=st.integers(0, 7_200),
    units=st.integers(1, DUST * WAD // to_wad(3000)),
    premium_bps=st.integers(-9_900, 30_000),
    maker_buys=st.booleans(),
)
def test_funding__fills_below_dust_move_the_rate_by_at_most_their_share(
    markets, cm, clearing, books, maker, taker, chain, admin, wait, units, premium_bps, maker_buys
):
    """Property: a fill of notional n < 10 USD at the index, at any price and after any
    wait, moves the EMA (and so the funding rate, its clamp) by at most 2·n / N + 1 wei
    (N the 100,000 USD funding notional), exactly as the model computes."""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    chain.mine(timestamp=chain.pending_timestamp + wait)
    cm.oracle.push(admin, "ETH/USD", "3000")
    cm.oracle.push(admin, "ETH/IV", "0.6")
    spot = to_wad(3000)
    before = clearing.funding(u)
    price = spot * (10_000 + premium_bps) // 10_000
    order = cm.exchange.make_order(maker, perp, maker_buys, size_raw=units, price_raw=price)
    receipt = cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), size_raw=units, taker_subaccount=0)
    after = clearing.funding(u)
    dt = receipt.timestamp - before.updated_at
    reference = markets.funding_notional()
    assert after.premium_ema == rules.premium_ema_after(
        before.premium_ema, price, spot, units, dt, markets.ema_window(), reference
    )
    bound = rules.ema_move_bound(units * spot // WAD, reference)
    assert abs(after.premium_ema - before.premium_ema) <= bound
    cap = markets.funding_cap()

    def rate(ema):
        return min(max(ema, -cap), cap)

    assert abs(rate(after.premium_ema) - rate(before.premium_ema)) <= bound


@settings(max_examples=examples(500), deadline=None)
@given(
    ema=st.integers(-WAD, WAD),
    price=st.integers(1, 10**24),
    spot=st.integers(10**18, 10**24),
    size=st.integers(-(2**126), 2**126),
    dt=st.integers(0, 10**6),
    window=st.integers(60, 86_400),
    reference=st.integers(100 * WAD, 10**12 * WAD),
)
def test_model__premium_ema__bounded_by_notional_share_and_clamped(ema, price, spot, size, dt, window, reference):
    """The EMA stays within ±100% and moves by at most its notional share."""
    after = rules.premium_ema_after(ema, price, spot, size, dt, window, reference)
    assert -WAD <= after <= WAD
    assert abs(after - ema) <= rules.ema_move_bound(abs(size) * spot // WAD, reference)


def test_funding__full_notional_fill_after_a_window__sets_the_premium(
    markets, cm, clearing, books, maker, taker, chain
):
    """A fill of the funding notional or more after a quiet window carries full weight."""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    chain.mine(timestamp=chain.pending_timestamp + 3600)
    cm.trade(maker, taker, perp, "34", "3030")  # 102,000 USD at the index
    assert clearing.funding(u).premium_ema == to_wad("0.01")
    assert from_wad(markets.funding_notional()) == 100_000


# ------------------------------------------------------------------ finding 11


@pytest.fixture
def operated(cm, vault, create_account, trader, operator):
    """The trader's account (20k USDC) names `operator`, which has 20k USDC of its own."""
    create_account(trader, {"USDC": "20000"})
    create_account(operator, {"USDC": "20000"})
    vault.set_operator(0, operator, True, sender=trader)
    return trader, operator


def option_mark(cm, instrument: int) -> int:
    """The engine's mark of an option (WAD USD per unit): (q_0 << shift) · quantum of its
    current array."""
    engine = cm.engine.contract
    engine.refresh([instrument], sender=ape.accounts.test_accounts[9])
    _, shift, lanes, _unsettled = engine.risk_array(instrument)
    u = cm.markets.contract.instrument(instrument).underlying
    return (lanes[0] << shift) * engine.underlyings(u).quantum


def test_fill__operator_buys_a_worthless_option_for_the_account_at_9500__reverts(
    cm, vault, operated, list_option, trader, operator
):
    """Fails on c1dcd68 (the fill goes through): an operator signs for the account an order
    buying a far out-of-the-money call at 9,500 USD and fills it from its own account. A
    long option adds no requirement, so the account's check passed, and the operator then
    withdrew the premium."""
    wing = list_option("ETH", True, "10000", 1)
    assert option_mark(cm, wing) < to_wad("0.01")
    order = cm.exchange.make_order(trader, wing, True, "1", 9500)
    with ape.reverts("markets: operator price out of band"):
        cm.exchange.fill(operator, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert vault.cash_of(trader, 0) == to_wad(20000)


def test_fill__operator_takes_for_the_account_at_twice_the_index__reverts(cm, vault, operated, trader, operator):
    """Fails on c1dcd68: the operator signs its own order selling a perp at twice the index
    and takes the other side for the account (`taker_owner`), which buys at 6,000."""
    perp = cm.markets.perp("ETH")
    order = cm.exchange.make_order(operator, perp, False, "1", 6000)
    signature = cm.exchange.sign(operator, order)
    with ape.reverts("markets: operator price out of band"):
        cm.exchange.fill(operator, order, signature, "1", 0, taker_owner=trader)
    assert cm.clearing.perp_size(trader, "ETH") == 0


def test_fill__operator_within_the_band__fills(cm, operated, list_option, trader, operator, taker, create_account):
    """Operators still trade: a perp 0.9% over the index, an option 9% over its mark, a
    cheap wing at its mark plus 0.09% of spot (the band of spot / 100), each at the edge."""
    create_account(taker, {"USDC": "100000"})
    perp = cm.markets.perp("ETH")
    order = cm.exchange.make_order(trader, perp, True, "1", 3027)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert cm.clearing.perp_size(trader, "ETH") == 1
    call = list_option("ETH", True, "3000", 30)
    mark = option_mark(cm, call)
    order = cm.exchange.make_order(trader, call, True, "1", price_raw=mark * 109 // 100)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert cm.clearing.option_size(trader, call) == 1
    wing = list_option("ETH", True, "10000", 1)
    price = option_mark(cm, wing) + to_wad(3000) // 100 * 9 // 100
    order = cm.exchange.make_order(trader, wing, True, "1", price_raw=price)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert cm.clearing.option_size(trader, wing) == 1


def test_fill__operator_on_an_option_whose_array_is_stale__fills(
    cm, operated, list_option, trader, operator, taker, create_account, chain, admin
):
    """The band reads the mark through the engine, which stores the stale array and reads
    the instrument back from the markets contract while its `on_trade` holds the lock
    (`instrument` is `@reentrant`)."""
    create_account(taker, {"USDC": "100000"})
    call = list_option("ETH", True, "3000", 30)
    option_mark(cm, call)  # an array of this epoch
    cm.oracle.push(admin, "ETH/USD", "3050")  # a new round: the array is stale
    snapshot = chain.snapshot()
    mark = option_mark(cm, call)  # the mark of the new epoch, then forgotten
    chain.restore(snapshot)
    engine, u = cm.engine.contract, cm.manifest.underlyings["ETH"]
    stale = engine.epoch(u)[2]
    assert engine.risk_array(call)[0] == stale
    order = cm.exchange.make_order(trader, call, True, "1", price_raw=mark * 105 // 100)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    assert cm.clearing.option_size(trader, call) == 1
    assert engine.risk_array(call)[0] == engine.epoch(u)[2] == stale + 1


def test_fill__operator_one_wei_past_the_band__reverts(cm, operated, trader, operator, taker, create_account):
    create_account(taker, {"USDC": "100000"})
    perp = cm.markets.perp("ETH")
    for price in (to_wad(3030) + 1, to_wad(2970) - 1):
        order = cm.exchange.make_order(trader, perp, True, "1", price_raw=price)
        with ape.reverts("markets: operator price out of band"):
            cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)
    order = cm.exchange.make_order(trader, perp, True, "1", 3030)
    cm.exchange.fill(taker, order, cm.exchange.sign(operator, order), "1", 0, signer=operator)


def test_fill__owner_trades_at_any_price(cm, operated, trader, taker, create_account):
    """The band binds operators only: an owner may still trade at any price it signs."""
    create_account(taker, {"USDC": "100000"})
    cm.trade(trader, taker, cm.markets.perp("ETH"), "1", "3600")
    assert cm.clearing.perp_size(trader, "ETH") == 1


def test_operator_bands__owner_and_bounds(markets, admin, stranger):
    assert markets.operator_bands() == (to_wad("0.01"), to_wad("0.1"))
    with ape.reverts("ownable: caller is not the owner"):
        markets.set_operator_bands(0, 0, sender=stranger)
    with ape.reverts("markets: band out of bounds"):
        markets.set_operator_bands(to_wad("0.1") + 1, 0, sender=admin)
    with ape.reverts("markets: band out of bounds"):
        markets.set_operator_bands(0, WAD + 1, sender=admin)
    receipt = markets.set_operator_bands(to_wad("0.1"), WAD, sender=admin)
    assert markets.operator_bands() == (to_wad("0.1"), WAD)
    assert [(e.perp_band, e.option_band) for e in receipt.decode_logs(markets.OperatorBandsSet)] == [
        (to_wad("0.1"), WAD)
    ]

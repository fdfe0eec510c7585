"""Markets: the instrument registry and the market parameters. Only the clearinghouse moves
open interest and settles; the clearinghouse's hooks answer only to the markets contract;
each address is wired once; every setter is owned, bounded and logged, and hands the
clearinghouse its copy of the settings word."""

import ape
import pytest

from crossmargin.units import WAD, to_wad

NOT_OWNER = "ownable: caller is not the owner"
M128 = 2**128 - 1
DAY = 86_400


@pytest.fixture
def perp(cm) -> int:
    return cm.markets.perp("ETH")


# ------------------------------------------------------------------ callers


def test_on_trade__not_clearinghouse__reverts(markets, perp, stranger):
    with ape.reverts("markets: not clearinghouse"):
        markets.on_trade(perp, WAD, 0, 0, 0, sender=stranger)


def test_settle__not_clearinghouse__reverts(markets, list_option, stranger):
    call = list_option(days=1)
    with ape.reverts("markets: not clearinghouse"):
        markets.settle(call, 0, WAD, sender=stranger)


def test_move_open_interest__not_clearinghouse__reverts(markets, perp, stranger):
    with ape.reverts("markets: not clearinghouse"):
        markets.move_open_interest([perp | (1 << 32)], sender=stranger)


def test_clearing_hooks__not_markets__revert(clearing, admin):
    """Even the clearinghouse's owner cannot list a perp or set its settings word there."""
    with ape.reverts("clearing: not markets"):
        clearing.open_linear(2, 99, 0, sender=admin)
    with ape.reverts("clearing: not markets"):
        clearing.set_settings(0, sender=admin)


# ------------------------------------------------------------------ wiring


def test_wiring__set_once__reverts(markets, clearing, engine, admin):
    with ape.reverts("markets: engine set"):
        markets.set_engine(engine, sender=admin)
    with ape.reverts("clearing: markets set"):
        clearing.set_markets(markets, sender=admin)


def test_wiring__fresh_contracts__owner_contract_and_copy(project, clearing, vault, router, engine, admin, stranger):
    fresh = stranger.deploy(project.Markets, clearing, router)
    fresh.transfer_ownership(admin, sender=stranger)
    fresh.accept_ownership(sender=admin)
    with ape.reverts("markets: no engine"):
        fresh.list_perp(1, WAD, sender=admin)
    with ape.reverts(NOT_OWNER):
        fresh.set_engine(engine, sender=stranger)
    with ape.reverts("markets: engine not a contract"):
        fresh.set_engine(stranger, sender=admin)
    receipt = fresh.set_engine(engine, sender=admin)
    assert [e.engine for e in receipt.decode_logs(fresh.EngineSet)] == [engine.address]
    moves = stranger.deploy(project.ClearingMoves, vault, router)
    house = stranger.deploy(project.Clearinghouse, vault, router, moves)
    with ape.reverts(NOT_OWNER):
        house.set_markets(fresh, sender=admin)
    with ape.reverts("clearing: markets not a contract"):
        house.set_markets(admin, sender=stranger)
    receipt = house.set_markets(fresh, sender=stranger)
    assert house.markets() == fresh.address
    assert [e.markets for e in receipt.decode_logs(house.MarketsSet)] == [fresh.address]
    # the settings word is copied: the funding parameters `positions` reports are the defaults
    positions = house.positions(1)
    assert (positions.funding_cap, positions.funding_interval) == (5 * 10**15, 8 * 3_600)


# ------------------------------------------------------------------ listing


def test_list_option__terms_read_back_unpacked(cm, markets, engine, admin, chain):
    expiry = chain.pending_timestamp + 30 * DAY
    count = markets.instrument_count()
    receipt = markets.list_option(1, False, to_wad(2500), expiry, to_wad(7), sender=admin)
    [listed] = receipt.decode_logs(markets.InstrumentListed)
    assert listed.instrument == count + 1 == markets.instrument_count()
    assert (listed.underlying, listed.kind, listed.strike, listed.expiry, listed.oi_cap) == (
        1,
        3,
        to_wad(2500),
        expiry,
        to_wad(7),
    )
    assert tuple(markets.instrument(listed.instrument)) == (3, 1, to_wad(2500), expiry, to_wad(7), 0, 0)
    assert markets.settlement_price(listed.instrument) == 0
    # the engine reads its instruments here
    assert engine.MARKETS() == markets.address
    assert tuple(markets.instrument(cm.markets.perp("ETH")))[:2] == (1, 1)


def test_list_option__strike_out_of_range__reverts(markets, admin, chain):
    expiry = chain.pending_timestamp + DAY
    with ape.reverts("markets: strike out of range"):
        markets.list_option(1, True, M128 + 1, expiry, WAD, sender=admin)
    markets.list_option(1, True, M128, expiry, WAD, sender=admin)


def test_oi_cap__beyond_128_bits__stored_as_the_largest(markets, admin, chain):
    expiry = chain.pending_timestamp + DAY
    receipt = markets.list_option(1, True, to_wad(3000), expiry, 2**256 - 1, sender=admin)
    [listed] = receipt.decode_logs(markets.InstrumentListed)
    assert listed.oi_cap == M128 == markets.instrument(listed.instrument).oi_cap
    receipt = markets.set_oi_cap(listed.instrument, 2**200, sender=admin)
    assert [e.oi_cap for e in receipt.decode_logs(markets.OiCapSet)] == [M128]
    receipt = markets.set_oi_cap(listed.instrument, WAD, sender=admin)
    assert [e.oi_cap for e in receipt.decode_logs(markets.OiCapSet)] == [WAD]
    assert markets.instrument(listed.instrument).oi_cap == WAD


def test_set_oi_cap__unknown_instrument_or_not_owner__reverts(markets, perp, admin, stranger):
    with ape.reverts("markets: unknown instrument"):
        markets.set_oi_cap(10**6, WAD, sender=admin)
    with ape.reverts(NOT_OWNER):
        markets.set_oi_cap(perp, WAD, sender=stranger)


# ------------------------------------------------------------------ parameters


def test_max_options__default_bounds_and_event(markets, admin, stranger):
    assert markets.max_options() == 64
    with ape.reverts(NOT_OWNER):
        markets.set_max_options(8, sender=stranger)
    for bad in (0, 129):
        with ape.reverts("markets: position cap out of bounds"):
            markets.set_max_options(bad, sender=admin)
    receipt = markets.set_max_options(128, sender=admin)
    assert markets.max_options() == 128
    assert [e.max_options for e in receipt.decode_logs(markets.MaxOptionsSet)] == [128]


def test_funding_params__bounds_event_and_the_clearinghouse_copy(markets, clearing, admin, stranger):
    with ape.reverts(NOT_OWNER):
        markets.set_funding_params(3_600, 0, 3_600, sender=stranger)
    with ape.reverts("markets: interval out of bounds"):
        markets.set_funding_params(86_401, 0, 3_600, sender=admin)
    with ape.reverts("markets: funding cap out of bounds"):
        markets.set_funding_params(3_600, 5 * 10**16 + 1, 3_600, sender=admin)
    for window in (59, 86_401):
        with ape.reverts("markets: ema window out of bounds"):
            markets.set_funding_params(3_600, 0, window, sender=admin)
    receipt = markets.set_funding_params(86_400, 5 * 10**16, 60, sender=admin)
    assert [(e.interval, e.cap, e.ema_window) for e in receipt.decode_logs(markets.FundingParamsSet)] == [
        (86_400, 5 * 10**16, 60)
    ]
    assert (markets.funding_interval(), markets.funding_cap(), markets.ema_window()) == (86_400, 5 * 10**16, 60)
    assert markets.max_options() == 64  # the rest of the word is untouched
    # the clearinghouse reads its copy
    positions = clearing.positions(1)
    assert (positions.funding_cap, positions.funding_interval) == (5 * 10**16, 86_400)


# ------------------------------------------------------------------ position cap (notional)


def test_set_position_cap__bounds_unknown_underlying_owner_and_event(markets, engine, admin, stranger):
    # the local config's default: 100,000,000 USD per underlying
    assert markets.position_cap(1) == markets.position_cap(2) == 100_000_000
    with ape.reverts(NOT_OWNER):
        markets.set_position_cap(1, 10**6, sender=stranger)
    for unknown in (0, engine.underlying_count() + 1):
        with ape.reverts("markets: unknown underlying"):
            markets.set_position_cap(unknown, 10**6, sender=admin)
    with ape.reverts("markets: position cap out of bounds"):
        markets.set_position_cap(1, 10**12 + 1, sender=admin)
    receipt = markets.set_position_cap(1, 10**12, sender=admin)
    assert [(e.underlying, e.usd) for e in receipt.decode_logs(markets.PositionCapSet)] == [(1, 10**12)]
    assert markets.position_cap(1) == 10**12
    receipt = markets.set_position_cap(1, 0, sender=admin)
    assert [(e.underlying, e.usd) for e in receipt.decode_logs(markets.PositionCapSet)] == [(1, 0)]
    assert markets.position_cap(1) == 0


def test_position_cap__fill_growing_past_it__reverts_reductions_pass(
    cm, markets, admin, maker, taker, trader, create_account, list_option, perp
):
    """ETH cap 30,000 USD (10 ETH at 3,000): a fill may grow a position up to it, not past
    it, on either side and for options as for perps; a fill that shrinks an over-cap
    position passes; cap 0 is no cap."""
    for actor in (maker, taker, trader):
        create_account(actor, {"USDC": "1000000"})
    markets.set_position_cap(1, 30_000, sender=admin)
    cm.trade(maker, taker, perp, "10", "3000")  # exactly at the cap, both sides
    with ape.reverts("markets: position notional cap"):
        cm.trade(maker, trader, perp, "0.001", "3000")  # the maker grows past it
    with ape.reverts("markets: position notional cap"):
        cm.trade(trader, taker, perp, "0.001", "3000")  # the taker grows past it (its short)
    # over the cap once it is lowered: reducing passes, growing again does not
    markets.set_position_cap(1, 15_000, sender=admin)
    cm.trade(maker, taker, perp, "-2", "3000")  # 10 -> 8 and -10 -> -8
    with ape.reverts("markets: position notional cap"):
        cm.trade(maker, taker, perp, "-17", "3000")  # 8 -> -9 (larger), -8 -> 9 (larger)
    with ape.reverts("markets: position notional cap"):
        cm.trade(maker, trader, perp, "-14", "3000")  # the maker shrinks (8 -> -6), the trader grows to 14
    cm.trade(maker, trader, perp, "-5", "3000")  # the maker 8 -> 3, the trader 0 -> 5 (exactly 15,000)
    # options: |size| x spot, the same rule
    call = list_option(strike="3000")
    with ape.reverts("markets: position notional cap"):
        cm.trade(maker, trader, call, "5.01", "100")
    cm.trade(maker, trader, call, "5", "100")
    # no cap
    markets.set_position_cap(1, 0, sender=admin)
    cm.trade(maker, trader, perp, "100", "3000")
    cm.trade(maker, trader, call, "100", "100")

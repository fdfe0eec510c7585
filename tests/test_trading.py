"""Trading through the exchange into the clearinghouse: positions, cash flows, fees, caps,
margin after a trade, the risk-reducing exception, pause, expiry settlement and funding."""

from decimal import Decimal

import ape
import pytest

from crossmargin.units import WAD, account_id, from_wad, to_wad

NOT_OWNER = "ownable: caller is not the owner"


@pytest.fixture
def books(create_account, maker, taker):
    """Maker and taker, each with 100k USDC."""
    create_account(maker, {"USDC": "100000"})
    create_account(taker, {"USDC": "100000"})
    return maker, taker


def cash(vault, owner, subaccount=0) -> int:
    return vault.cash_of(owner, subaccount)


# ------------------------------------------------------------------ perps


def test_perp_trade__positions_cost_fees_and_oi(markets, cm, vault, clearing, books, maker, taker, admin):
    perp = cm.markets.perp("ETH")
    receipt = cm.trade(maker, taker, perp, "2", "3010")  # maker buys 2 at 3010
    assert cm.clearing.perp_size(maker, "ETH") == 2
    assert cm.clearing.perp_size(taker, "ETH") == -2
    maker_position = clearing.perp_position(account_id(maker.address, 0), cm.manifest.underlyings["ETH"])
    assert maker_position.cost == to_wad("6020")
    # fees: 2 bps maker, 5 bps taker of 6020 notional; half to the insurance fund's vault
    # account, half to the fee recipient (the deployer)
    maker_fee, taker_fee = to_wad("1.204"), to_wad("3.01")
    assert cash(vault, maker) == to_wad(100000) - maker_fee
    assert cash(vault, taker) == to_wad(100000) - taker_fee
    assert cash(vault, cm.fund.address) == (maker_fee + taker_fee) // 2
    assert cash(vault, admin) == (maker_fee + taker_fee) - (maker_fee + taker_fee) // 2
    assert markets.instrument(perp).open_interest == to_wad(2)
    [traded] = receipt.decode_logs(clearing.Traded)
    assert (traded.size, traded.price) == (to_wad(2), to_wad(3010))


def test_perp_round_trip__cost_realized_into_cash(markets, cm, vault, clearing, books, maker, taker):
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "1", "3000")
    before = cash(vault, maker)
    cm.trade(maker, taker, perp, "-1", "3100")  # maker sells back 100 higher
    assert cm.clearing.perp_size(maker, "ETH") == 0
    maker_fee = to_wad("0.62")  # 2 bps of 3100
    assert cash(vault, maker) - before == to_wad(100) - maker_fee
    assert clearing.perp_mask(account_id(maker.address, 0)) == 0
    assert markets.instrument(perp).open_interest == 0


def test_perp__equity_marks_at_the_index(cm, books, maker, taker, admin):
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "1", "3000")
    equity = cm.engine.margin(maker).equity
    cm.oracle.push(admin, "ETH/USD", "3300")
    assert cm.engine.margin(maker).equity - equity == 300
    assert cm.engine.margin(taker).equity < 100000 - 299


def test_funding__premium_ema_accrues_and_settles_on_touch(cm, vault, clearing, books, maker, taker, chain, admin):
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    chain.mine(timestamp=chain.pending_timestamp + 3600)  # a full EMA window since listing
    # 1% over the index, 120,000 USD at the index (over the 100,000 funding notional): the
    # EMA jumps to it
    cm.trade(maker, taker, perp, "40", "3030")
    state = clearing.funding(u)
    assert state.premium_ema == to_wad("0.01")
    chain.mine(timestamp=state.updated_at + 8 * 3600)  # one funding interval
    cm.oracle.push(admin, "ETH/USD", "3000")  # keep the feeds fresh
    cm.oracle.push(admin, "ETH/IV", "0.6")
    # the longs owe min(1%, cap 0.5%) x 3000 per unit per interval, and the view shows it
    owed = Decimal("0.005") * 3000 * 40
    maker_equity = cm.engine.margin(maker).equity
    cash_before = cash(vault, maker)
    cm.trade(maker, taker, perp, "-1", "3000")  # touching settles funding into cash
    settled = cash_before - cash(vault, maker) - to_wad("0.6")  # less the maker fee on 3000
    assert from_wad(settled) >= owed  # a second or two more of funding accrued
    assert from_wad(settled) < owed * Decimal("1.001")
    assert maker_equity < 100000 - owed


def test_funding__a_premium_counts_at_most_100_percent(markets, cm, clearing, books, maker, taker, chain, admin):
    """A fill at three times the index moves the EMA to +100%, not +200%: the EMA stays in
    its 80 bits. (The funding notional is lowered to 100 USD so that this 120 USD fill
    carries full weight.)"""
    perp = cm.markets.perp("ETH")
    u = cm.manifest.underlyings["ETH"]
    markets.set_funding_notional(to_wad(100), sender=admin)
    chain.mine(timestamp=chain.pending_timestamp + 3600)  # a full EMA window since listing
    cm.trade(maker, taker, perp, "0.04", "9000")
    assert clearing.funding(u).premium_ema == WAD


# ------------------------------------------------------------------ options


def test_option_trade__premium_moves_buyer_pays_seller(markets, cm, vault, clearing, books, maker, taker, list_option):
    call = list_option("ETH", True, "3000", 30)
    cm.trade(maker, taker, call, "-1", "200")  # maker sells one call for 200
    assert cm.clearing.option_size(maker, call) == -1
    assert cm.clearing.option_size(taker, call) == 1
    maker_fee, taker_fee = to_wad("0.04"), to_wad("0.1")
    assert cash(vault, maker) == to_wad(100200) - maker_fee
    assert cash(vault, taker) == to_wad(99800) - taker_fee
    assert clearing.option_ids(account_id(maker.address, 0)) == [call]
    assert markets.instrument(call).open_interest == to_wad(1)


def test_option_trade__premium_rounding_favours_the_protocol(cm, vault, books, maker, taker, list_option, exchange):
    call = list_option()
    exchange.set_fees(0, 0, 0, sender=cm.exchange.contract.owner())
    size, price = 3, 10**18 // 3  # 3 wei of units at 1/3 USD: notional 0.99.. wei
    order = cm.exchange.make_order(maker, call, True, size_raw=size, price_raw=price)
    cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), size_raw=size)
    assert cash(vault, maker) == to_wad(100000) - 1  # the buyer pays ceil(0.99..) = 1 wei
    assert cash(vault, taker) == to_wad(100000)  # the seller gets floor = 0


def test_option_closing__removes_position(cm, clearing, books, maker, taker, list_option):
    put = list_option("ETH", False, "2800", 10)
    call = list_option("ETH", True, "3200", 10)
    cm.trade(maker, taker, put, "1", "50")
    cm.trade(maker, taker, call, "1", "50")
    cm.trade(maker, taker, put, "-1", "50")
    assert clearing.option_ids(account_id(maker.address, 0)) == [call]
    assert cm.clearing.option_size(maker, put) == 0


def test_trade__expired_option__reverts(cm, books, maker, taker, list_option, chain):
    call = list_option(days=1)
    chain.mine(timestamp=chain.pending_timestamp + 86_400 + 1)
    with ape.reverts("markets: instrument expired"):
        cm.trade(maker, taker, call, "1", "10")


def test_trade__unknown_instrument__reverts(cm, books, maker, taker):
    with ape.reverts("markets: unknown instrument"):
        cm.trade(maker, taker, 999, "1", "10")


def test_trade__open_interest_cap__reverts_and_closing_still_allowed(
    markets, cm, clearing, books, maker, taker, list_option
):
    call = list_option(oi_cap="2")
    cm.trade(maker, taker, call, "2", "200")
    with ape.reverts("markets: open interest cap"):
        cm.trade(maker, taker, call, "0.5", "200")
    cm.trade(maker, taker, call, "-1", "200")  # reducing open interest is always fine
    assert markets.instrument(call).open_interest == to_wad(1)


def test_trade__position_cap__reverts(markets, cm, clearing, books, maker, taker, list_option, admin):
    markets.set_max_options(1, sender=admin)
    first, second = list_option(strike="3000"), list_option(strike="3100")
    cm.trade(maker, taker, first, "1", "200")
    with ape.reverts("clearing: position cap"):
        cm.trade(maker, taker, second, "1", "150")


def test_trade__option_size_past_int80__reverts(cm, books, maker, taker, list_option, admin):
    """Options are stored two to a word with an int80 size: a size past it reverts before
    anything moves, whether in one trade or added to a position; the largest size that fits
    is stored and gets as far as the margin check (with no notional cap, which would stop
    these sizes first: `markets: position notional cap`)."""
    cm.markets.contract.set_position_cap(cm.manifest.underlyings["ETH"], 0, sender=admin)
    call = list_option()
    with ape.reverts("clearing: position out of range"):
        cm.trade(maker, taker, call, from_wad(2**79), "0.000001")
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, call, from_wad(2**79 - 1), "0.000001")  # the taker's short
    cm.trade(maker, taker, call, "1", "200")
    with ape.reverts("clearing: position out of range"):
        cm.trade(maker, taker, call, from_wad(2**79 - WAD), "0.000001")
    assert cm.clearing.option_size(maker, call) == 1


def test_trade__not_from_exchange__reverts(clearing, stranger):
    fill = (1, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0)
    with ape.reverts("clearing: not exchange"):
        clearing.trade(fill, sender=stranger)


# ------------------------------------------------------------------ margin after a trade


def test_trade__margin_too_low__reverts_and_changes_nothing(cm, vault, create_account, maker, taker, list_option):
    create_account(maker, {"USDC": "100000"})
    create_account(taker, {"USDC": "100"})
    call = list_option()
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, call, "1", "200")  # the taker would be short a call on 100 USDC
    assert cm.clearing.option_size(taker, call) == 0
    assert cash(vault, taker) == to_wad(100)


def test_trade__only_reducing_risk__allowed_below_initial_margin(cm, books, maker, taker, admin):
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "-100", "3000")  # maker short 100 ETH on 100k
    cm.oracle.push(admin, "ETH/USD", "3350")  # maker lost 35k: below IM, above MM
    m = cm.engine.margin(maker)
    assert m.initial_health < 0 < m.maintenance_health
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(maker, taker, perp, "-1", "3350")  # adding risk
    cm.trade(maker, taker, perp, "50", "3350")  # buying back half: lower MM, health not lower
    assert cm.clearing.perp_size(maker, "ETH") == -50
    assert cm.engine.margin(maker).maintenance < m.maintenance


def test_trade__paused__adding_risk_reverts_reducing_allowed(cm, vault, books, maker, taker, guardian):
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "1", "3000")
    vault.pause(sender=guardian)
    with ape.reverts("clearing: paused"):
        cm.trade(maker, taker, perp, "1", "3000")
    cm.trade(maker, taker, perp, "-1", "3000")  # both sides close: risk only falls
    assert cm.clearing.perp_size(maker, "ETH") == 0


def test_trade__paused_below_a_lowered_position_cap__closing_allowed(
    markets, cm, vault, clearing, books, maker, taker, list_option, admin, guardian
):
    """The risk-reducing check values the account as it was, its closed position put back:
    the position cap (lowered below what the account holds) does not stop that."""
    near, far = list_option(strike="3000"), list_option(strike="3200")
    cm.trade(maker, taker, near, "1", "200")
    cm.trade(maker, taker, far, "1", "130")
    markets.set_max_options(1, sender=admin)
    vault.pause(sender=guardian)  # every trade takes the risk-reducing path
    cm.trade(maker, taker, near, "-1", "200")  # both sides close one of two calls
    assert cm.clearing.option_size(maker, near) == 0 and cm.clearing.option_size(taker, near) == 0
    assert list(clearing.option_ids(account_id(maker.address, 0))) == [far]


def test_trade__settlement_asset_depegged__only_reducing_risk(cm, books, maker, taker, admin):
    perp = cm.markets.perp("ETH")
    cm.trade(maker, taker, perp, "1", "3000")
    cm.oracle.push(admin, "USDC/USD", "0.90")
    with ape.reverts("oracle: price out of bounds"):
        cm.trade(maker, taker, perp, "1", "3000")
    cm.trade(maker, taker, perp, "-1", "3000")
    assert cm.clearing.perp_size(taker, "ETH") == 0


# ------------------------------------------------------------------ expiry settlement


def test_settle__expired_call__pays_intrinsic_both_sides(
    markets, cm, vault, clearing, books, maker, taker, list_option, admin, chain, keeper
):
    call = list_option("ETH", True, "3000", 1)
    cm.trade(maker, taker, call, "2", "100")
    expiry = markets.instrument(call).expiry
    chain.mine(timestamp=expiry + 10)
    receipt = cm.oracle.push(admin, "ETH/USD", "3250")
    feed = cm.oracle.aggregator("ETH/USD")
    round_id = feed.latestRoundData()[0]
    maker_cash, taker_cash = cash(vault, maker), cash(vault, taker)
    first = cm.clearing.settle(keeper, maker, call, round_id)
    second = cm.clearing.settle(keeper, taker, call, 0)  # the price is stored: any hint will do
    assert [(e.instrument, e.price) for e in first.decode_logs(markets.SettlementPriceStored)] == [(call, to_wad(3250))]
    assert second.decode_logs(markets.SettlementPriceStored) == []
    assert markets.settlement_price(call) == to_wad(3250)
    assert cash(vault, maker) - maker_cash == to_wad(500)
    assert taker_cash - cash(vault, taker) == to_wad(500)
    assert markets.instrument(call).settlement_price == to_wad(3250)
    assert markets.instrument(call).open_interest == 0
    assert receipt.txn_hash  # the push happened after expiry


def test_settle__before_expiry_or_without_position__reverts(cm, books, maker, taker, list_option, keeper):
    call = list_option(days=1)
    cm.trade(maker, taker, call, "1", "100")
    with ape.reverts("markets: not expired"):
        cm.clearing.settle(keeper, maker, call, 1)
    with ape.reverts("markets: not dated"):
        cm.clearing.settle(keeper, maker, cm.markets.perp("ETH"), 1)


# ------------------------------------------------------------------ admin


def test_clearing_admin__not_owner_and_bounds__revert(markets, clearing, stranger, admin):
    with ape.reverts(NOT_OWNER):
        markets.list_option(1, True, WAD, 10**12, 1, sender=stranger)
    with ape.reverts(NOT_OWNER):
        markets.set_funding_params(3600, 0, 3600, sender=stranger)
    with ape.reverts("markets: position cap out of bounds"):
        markets.set_max_options(129, sender=admin)
    with ape.reverts("markets: funding cap out of bounds"):
        markets.set_funding_params(3600, 10**17, 3600, sender=admin)
    with ape.reverts("markets: interval out of bounds"):
        markets.set_funding_params(60, 0, 3600, sender=admin)
    with ape.reverts("markets: unknown underlying"):
        markets.list_option(9, True, WAD, 10**12, 1, sender=admin)
    with ape.reverts("markets: bad expiry"):
        markets.list_option(1, True, WAD, 1, 1, sender=admin)
    with ape.reverts("markets: zero strike"):
        markets.list_option(1, True, 0, 10**12, 1, sender=admin)
    with ape.reverts("markets: perp listed"):
        markets.list_perp(1, 1, sender=admin)


def test_withdraw__cash_won_beyond_net_deposits__total_floors_at_zero(
    cm, vault, create_account, maker, taker, stranger, list_option, usdc, admin
):
    """Cash moves between accounts, so a winner may withdraw more than the net deposits the
    settlement asset's `total` counts (here with a donation covering it): `total` stops at
    zero instead of wrapping, and deposits go on under the cap."""
    create_account(maker, {"WETH": "10"})
    create_account(taker, {"USDC": "100", "WETH": "1"})
    cm.trade(maker, taker, list_option(), "-1", "200")  # the maker receives the premium
    usdc.mint(admin, vault.address, "150")  # tokens the vault holds beyond any claim
    cm.vault.withdraw(maker, "USDC", "190")
    assert vault.assets(usdc.address).total == 0
    create_account(stranger, {"USDC": "10"})
    assert vault.assets(usdc.address).total == to_wad(10)

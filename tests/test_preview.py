"""Margin preview: the Lens's `preview` (the engine's `margin_with` on the positions a list of
trades would leave) equals the engine's margin after the same fills in the same block, to the
wei, leg by leg; it changes nothing; bad trades revert with the lens's reasons; the reference
model's twin (`crossmargin.model.clearing.apply_trades`) values the same book the same; the
SDK's preflight refuses a fill the clearinghouse would revert, sending nothing; and the
liquidation price estimate sits where the model's health crosses zero.

The clock is frozen (`anvil_setBlockTimestampInterval` 0) where a preview is compared with the
fills: every block then has the previewed block's timestamp, as the preview assumes.
"""

from __future__ import annotations

from decimal import Decimal

import ape
import pytest
from ape import chain
from test_model import push_all

from crossmargin.clients.errors import InsufficientMarginError, one_line, revert_reason
from crossmargin.clients.protocol import fill_fee, health_at_spot
from crossmargin.model import margin as model
from crossmargin.model.clearing import PreviewTrade
from crossmargin.units import account_id, to_wad

# the books are built per test: built once per module, ape's isolation left them in place
# for the modules that ran after this one (the trader's preview positions leaked into them)
pytestmark = pytest.mark.slow

DAY = 86_400


@pytest.fixture
def book(cm, admin, create_account, trader, maker, list_option):
    """`trader` (USDC and WETH): long 2 ETH calls, short 1 ETH put, long 1 ETH perp, short 1
    ETH future; `maker` is every trade's counterparty. Returns the instruments by name."""
    create_account(trader, {"USDC": "200000", "WETH": "10"})
    create_account(maker, {"USDC": "50000000"})
    names = {
        "call": list_option("ETH", True, "3200", 30),
        "put": list_option("ETH", False, "2800", 30),
        "new call": list_option("ETH", True, "3400", 45),
        "btc put": list_option("BTC", False, "55000", 20),
        "future": cm.markets.list_future(admin, "ETH", chain.pending_timestamp + 60 * DAY),
        "new future": cm.markets.list_future(admin, "BTC", chain.pending_timestamp + 90 * DAY),
        "perp": cm.markets.perp("ETH"),
        "btc perp": cm.markets.perp("BTC"),
    }
    cm.trade(trader, maker, names["call"], "2", "150")
    cm.trade(trader, maker, names["put"], "-1", "90")
    cm.trade(trader, maker, names["perp"], "1", "3000")
    cm.trade(trader, maker, names["future"], "-1", "3010")
    return names


def wad_trades(cm, trades: list[tuple]) -> list[PreviewTrade]:
    """Human (instrument, size, price) trades from `trader`'s side, as the maker of each
    fill, with the exchange's maker fee."""
    rate = cm.exchange.contract.maker_fee()
    return [
        PreviewTrade(i, to_wad(size), to_wad(price), fill_fee(abs(to_wad(size)), to_wad(price), rate))
        for i, size, price in trades
    ]


def margin_tuple(m) -> tuple[int, int, int]:
    return (m.equity, m.initial, m.maintenance)


def as_tuples(trades: list[PreviewTrade]) -> list[tuple]:
    return [(t.instrument, t.size, t.price, t.fee) for t in trades]


# ---------------------------------------------------------------- equal to the fills


def test_preview__several_legs__equals_margin_after_the_fills_to_the_wei(cm, trader, maker, book, frozen_clock):
    account = account_id(trader.address)
    trades = [
        (book["call"], "1", "160"),  # a held option grows
        (book["new call"], "-2", "120"),  # a new option (no stored array yet)
        (book["btc put"], "0.5", "900"),  # a new underlying through an option
        (book["perp"], "-0.5", "3050"),  # a held perp shrinks (funding settled, EMA moves)
        (book["btc perp"], "0.1", "60000"),  # a new perp
        (book["future"], "1", "2990"),  # a held future closes (realized)
        (book["new future"], "-0.2", "60500"),  # a new future
        (book["put"], "1", "85"),  # a held option closes (its word removed)
    ]
    raw = wad_trades(cm, trades)
    block = chain.blocks.head.number
    before = cm.engine.contract.margin(account)
    preview = cm.lens.preview(account, as_tuples(raw), block_id=block)

    assert margin_tuple(preview.before) == margin_tuple(before)
    after_each = []
    for instrument, size, price in trades:
        cm.trade(trader, maker, instrument, size, price, preflight=False)
        after_each.append(cm.engine.contract.margin(account))
    assert chain.blocks.head.timestamp == chain.blocks[block].timestamp
    assert margin_tuple(preview.after) == margin_tuple(after_each[-1])
    assert preview.health == after_each[-1].equity - after_each[-1].maintenance
    assert preview.initial_health == after_each[-1].equity - after_each[-1].initial
    initial = [before.initial] + [m.initial for m in after_each]
    assert list(preview.legs) == [b - a for a, b in zip(initial, initial[1:], strict=False)]


def test_preview__no_trades__after_is_before(cm, trader, book):
    account = account_id(trader.address)
    preview = cm.lens.preview(account, [])
    assert margin_tuple(preview.after) == margin_tuple(preview.before)
    assert margin_tuple(preview.before) == margin_tuple(cm.engine.contract.margin(account))
    assert preview.legs == [] and preview.cash == 0


def test_preview__changes_nothing(cm, trader, maker, book):
    account = account_id(trader.address)
    head = chain.blocks.head.number
    positions = cm.clearing.contract.positions(account)
    margin = cm.engine.contract.margin(account)
    nonces = (trader.nonce, maker.nonce)
    cm.preview(trader, [("ETH perp", "2", "3000"), (book["new call"], "1", "100")])
    assert chain.blocks.head.number == head
    assert cm.clearing.contract.positions(account) == positions
    assert margin_tuple(cm.engine.contract.margin(account)) == margin_tuple(margin)
    assert (trader.nonce, maker.nonce) == nonces


def test_preview__model_twin__values_the_trades_the_same(cm, trader, book):
    """`apply_trades` on the model's snapshot, valued by the model, equals the Lens."""
    account = account_id(trader.address)
    raw = wad_trades(
        cm,
        [(book["call"], "-2", "140"), (book["btc put"], "-1", "800"), (book["perp"], "2", "3100")],
    )
    block = chain.blocks.head.number
    preview = cm.lens.preview(account, as_tuples(raw), block_id=block)
    state, underlyings, params, now = cm.model_after(account, raw, block)
    assert tuple(model.margin(state, underlyings, params, now)) == margin_tuple(preview.after)


# ---------------------------------------------------------------- the SDK


def test_cm_preview__human_trades__typed_result(cm, trader, book):
    result = cm.preview(trader, [("ETH perp", "-0.5", "3050"), (book["btc put"], "1", "900")])
    raw = cm.lens.preview(account_id(trader.address), as_tuples(wad_trades(cm, [])))
    assert result.before.equity == raw.before.equity / Decimal(10**18)
    assert result.health == result.equity - result.maintenance
    assert [leg.name for leg in result.legs][0] == "ETH perp"
    assert result.legs[1].name.startswith("BTC put 55000")
    assert sum(leg.initial_added for leg in result.legs) == result.initial - result.before.initial
    assert result.allowed
    assert set(result.liquidation_prices) == {"ETH", "BTC"}


def test_cm_preview__instrument_name__resolved(cm, trader, book):
    by_id = cm.preview(trader, [(book["call"], "1", "150")], liquidation_prices=False)
    name = cm.preview(trader, [(by_id.legs[0].name, "1", "150")], liquidation_prices=False)
    assert name.after == by_id.after


def test_cm_preview__unknown_instrument_name__raises(cm, trader, book):
    with pytest.raises(KeyError, match="unknown instrument 'ETH call 1 2020-01-01'"):
        cm.preview(trader, [("ETH call 1 2020-01-01", "1", "1")])


def test_trade__below_initial_margin__raises_before_sending(cm, trader, maker, book):
    nonces = (trader.nonce, maker.nonce)
    with pytest.raises(InsufficientMarginError, match=r"insufficient margin: account 0x.*/0 needs IM [\d,]+\.\d\d USD"):
        cm.trade(trader, maker, book["perp"], "500", "3000")
    assert (trader.nonce, maker.nonce) == nonces


def test_trade__preflight_error__required_and_available(cm, trader, maker, book):
    preview = cm.preview(trader, [(book["perp"], "500", "3000")], maker=True, liquidation_prices=False)
    with pytest.raises(InsufficientMarginError) as error:
        cm.trade(trader, maker, book["perp"], "500", "3000")
    assert error.value.account == account_id(trader.address)
    assert error.value.required == preview.initial
    assert error.value.available == preview.equity
    assert error.value.required > error.value.available


def test_trade__preflight_error__one_line_and_the_revert_it_predicts(cm, trader, maker, book):
    with pytest.raises(InsufficientMarginError) as error:
        cm.trade(trader, maker, book["perp"], "500", "3000")
    assert one_line(error.value) == str(error.value)
    assert one_line(error.value).startswith("insufficient margin: account ")
    assert revert_reason(error.value) == "clearing: insufficient margin"
    with ape.reverts("clearing: insufficient margin"):  # code expecting the revert sees it
        cm.trade(trader, maker, book["perp"], "500", "3000")


def test_trade__new_risk_closed__preflight_predicts_the_oracle_revert(cm, admin, trader, maker, book):
    cm.oracle.push(admin, "USDC/USD", "0.90")  # the settlement asset off its peg
    nonce = maker.nonce
    with pytest.raises(InsufficientMarginError, match=r"only trades that reduce risk go through now") as error:
        cm.trade(trader, maker, book["perp"], "1", "3000")
    assert error.value.closed == revert_reason(error.value) == "oracle: price out of bounds"
    assert maker.nonce == nonce


def test_trade__preflight_off__reverts_on_chain(cm, trader, maker, book):
    """The preflight's verdict is the clearinghouse's."""
    with ape.reverts("clearing: insufficient margin"):
        cm.trade(trader, maker, book["perp"], "500", "3000", preflight=False)


def test_trade__reducing_below_margin__preflight_lets_it_through(cm, admin, create_account, operator, maker, book):
    """Below IM, a trade that only reduces risk passes the check, and so the preflight."""
    create_account(operator, {"USDC": "8000"})
    cm.trade(operator, maker, book["perp"], "10", "3000")
    cm.oracle.push(admin, "ETH/USD", "2500")
    preview = cm.preview(operator, [(book["perp"], "-5", "2500")], maker=True, liquidation_prices=False)
    assert preview.before.initial_health < 0
    assert preview.after.maintenance < preview.before.maintenance
    assert preview.allowed
    cm.trade(operator, maker, book["perp"], "-5", "2500")
    assert cm.clearing.perp_size(operator, "ETH") == 5


def test_fill__taker_below_margin__raises_before_sending(cm, trader, maker, book):
    """The exchange client's fill path previews the taker's side too."""
    order = cm.exchange.make_order(maker, book["perp"], False, "500", "3000")
    signature = cm.exchange.sign(maker, order)
    nonce = trader.nonce
    with pytest.raises(InsufficientMarginError, match="needs IM"):
        cm.exchange.fill(trader, order, signature, "500")
    assert trader.nonce == nonce


def test_fill__earlier_revert__that_reason_and_nothing_sent(cm, trader, maker, book):
    """A fill the preview shows failing margin that meets an earlier check first (here the
    order's deadline) raises that check's revert, still without sending."""
    order = cm.exchange.make_order(maker, book["perp"], False, "500", "3000", ttl=0)
    signature = cm.exchange.sign(maker, order)
    chain.mine(timestamp=chain.pending_timestamp + 10)
    nonce = trader.nonce
    with ape.reverts("exchange: expired"):
        cm.exchange.fill(trader, order, signature, "500")
    assert trader.nonce == nonce


# ---------------------------------------------------------------- liquidation price


@pytest.fixture
def leveraged(cm, create_account, operator, maker, book):
    """`operator`: 8,000 USDC, long 10 ETH perps at 3,000."""
    create_account(operator, {"USDC": "8000"})
    cm.trade(operator, maker, book["perp"], "10", "3000")
    return operator


def test_liquidation_price__health_crosses_zero_there(cm, leveraged, book):
    account = account_id(leveraged.address)
    block = chain.blocks.head.number
    raw = wad_trades(cm, [(book["perp"], "1", "3000")])
    result = cm.preview(leveraged, [(book["perp"], "1", "3000")], maker=True, block_id=block)
    eth = result.liquidation_prices["ETH"]
    assert eth.below is not None and eth.below < eth.spot
    assert eth.above is None  # long only: health grows with the spot
    assert eth.nearest == eth.below
    state, underlyings, params, now = cm.model_after(account, raw, block)
    u = cm.manifest.underlyings["ETH"]
    below = to_wad(eth.below)
    assert health_at_spot(state, underlyings, params, now, u, below) <= 0
    # a millionth of a percent above it (the bisection's last bracket is far narrower),
    # health is positive
    assert health_at_spot(state, underlyings, params, now, u, below + below // 10**8) > 0


def test_liquidation_price__liquidatable__at_the_spot(cm, admin, leveraged, book):
    cm.oracle.push(admin, "ETH/USD", "2400")
    result = cm.preview(leveraged, [(book["perp"], "-1", "2400")], maker=True)
    eth = result.liquidation_prices["ETH"]
    assert result.health < 0
    assert eth.below == eth.above == eth.spot == 2400


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("size", "price", "reason"),
    [
        (0, 10**18, "lens: zero size"),
        (10**18, 0, "lens: zero price"),
        (2**127, 10**18, "lens: size out of range"),
        (2**79, 1, "lens: position out of range"),
    ],
)
def test_preview__bad_trade__reverts(cm, trader, book, size, price, reason):
    with ape.reverts(reason):
        cm.lens.contract.preview(account_id(trader.address), [(book["call"], size, price, 0)])


def test_preview__unknown_instrument__reverts(cm, trader, book):
    with ape.reverts("lens: unknown instrument"):
        cm.lens.contract.preview(account_id(trader.address), [(10**6, 10**18, 10**18, 0)])


def test_preview__expired_instrument__reverts(cm, admin, trader, list_option, book):
    option = list_option("ETH", True, "3000", 1)
    chain.mine(timestamp=chain.pending_timestamp + 2 * DAY)
    push_all(cm, admin)
    with ape.reverts("lens: instrument expired"):
        cm.lens.contract.preview(account_id(trader.address), [(option, 10**18, 10**18, 0)])


def test_preview__too_many_trades__reverts(cm, trader, book):
    with ape.reverts("lens: too many trades"):
        cm.lens.contract.preview(account_id(trader.address), [(book["call"], 10**18, 10**18, 0)] * 17)


def test_preview__option_position_cap__reverts(cm, admin, trader, book):
    cm.markets.contract.set_max_options(2, sender=admin)  # `trader` holds two options
    with ape.reverts("lens: position cap"):
        cm.lens.contract.preview(account_id(trader.address), [(book["new call"], 10**18, 10**18, 0)])


def test_margin_with__not_canonical__reverts(cm, trader, book):
    """The engine reads the positions at the offsets the canonical encoding implies: the
    same positions one word further on (offset 128, a zero word before them) are refused."""
    engine = cm.engine.contract
    account = account_id(trader.address)
    p = cm.clearing.contract.positions(account)
    positions = (list(p.options), [tuple(line) for line in p.perps], list(p.futures), p.funding_cap, p.funding_interval)
    data = bytes(engine.margin_with.encode_input(account, positions, 0))
    assert tuple(engine.margin_with(account, positions, 0)) == margin_tuple(engine.margin(account))
    moved = data[:36] + (128).to_bytes(32, "big") + data[68:100] + bytes(32) + data[100:]
    tx = chain.provider.network.ecosystem.create_transaction(receiver=engine.address, data=moved)
    with ape.reverts("engine: positions not canonical"):
        chain.provider.send_call(tx)

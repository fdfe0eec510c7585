"""One unit convention across the SDK: human amounts (``Decimal``, ``str``, ``int`` of whole
units) in and out, raw WAD integers only through ``*_raw`` keywords and methods, sides from
the account's own point of view; floats, zero and negative amounts refused with a typed error."""

import re
from decimal import Decimal

import pytest

from crossmargin.clients.errors import CrossmarginError, InvalidAmountError, one_line
from crossmargin.units import WAD


@pytest.fixture
def perp(cm):
    return cm.markets.perp("ETH")


@pytest.mark.parametrize("size", ["3", Decimal("3"), 3])
def test_make_order__human_size__whole_units(cm, maker, perp, size):
    order = cm.exchange.make_order(maker, perp, True, size, "3000.5")
    assert (order.size, order.price) == (3 * WAD, 3000 * WAD + WAD // 2)


def test_make_order__size_raw__wad_integer(cm, maker, perp):
    order = cm.exchange.make_order(maker, perp, True, size_raw=3, price_raw=3000 * WAD)
    assert (order.size, order.price) == (3, 3000 * WAD)
    # out: human by default, raw through the `_raw` method
    assert cm.exchange.remaining(order) == Decimal("3E-18")
    assert cm.exchange.remaining_raw(order) == 3


def test_fill__human_size__trades_whole_units_from_each_side(cm, books, maker, taker, perp):
    order = cm.exchange.make_order(maker, perp, True, "3", "3000")  # the maker buys 3
    cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), "1.5")  # the taker sells 1.5
    assert cm.exchange.filled(order) == Decimal("1.5")
    assert cm.exchange.remaining(order) == Decimal("1.5")
    assert cm.exchange.filled_raw(order) == 3 * WAD // 2
    assert cm.clearing.perp_size(maker, "ETH") == Decimal("1.5")
    assert cm.clearing.perp_size(taker, "ETH") == Decimal("-1.5")


def test_fill__size_raw__trades_wad(cm, books, maker, taker, perp):
    order = cm.exchange.make_order(maker, perp, False, "1", "3000")  # the maker sells 1
    cm.exchange.fill(taker, order, cm.exchange.sign(maker, order), size_raw=WAD // 4)
    assert cm.clearing.perp_size(maker, "ETH") == Decimal("-0.25")
    assert cm.clearing.perp_size(taker, "ETH") == Decimal("0.25")


def test_trade__size__is_the_makers_side(cm, books, maker, taker, perp):
    cm.trade(maker, taker, perp, "-2", "3000")  # the maker sells 2 to the taker
    assert cm.clearing.perp_size(maker, "ETH") == -2
    assert cm.clearing.perp_size(taker, "ETH") == 2


@pytest.mark.parametrize(
    ("size", "price", "message"),
    [
        (3.0, "3000", "size must be a Decimal, str or int of whole units, not float 3.0 (pass '3.0')"),
        ("3", 3000.0, "price must be a Decimal, str or int of whole units, not float 3000.0 (pass '3000.0')"),
        (True, "3000", "size must be a Decimal, str or int of whole units, not bool True (pass 'True')"),
        ("0", "3000", "size must be positive, got 0"),
        ("-1", "3000", "size must be positive, got -1"),
        ("3", "0", "price must be positive, got 0"),
        ("3", "-3000", "price must be positive, got -3000"),
        ("abc", "3000", "size must be a number, got 'abc'"),
        ("1e-19", "3000", "size 1e-19 has more than 18 decimals"),
        (3 * WAD, "3000", "size 3000000000000000000 is 10**18 units or more: a WAD integer? pass it as size_raw="),
    ],
)
def test_make_order__bad_amount__typed_error(cm, maker, perp, size, price, message):
    with pytest.raises(InvalidAmountError) as raised:
        cm.exchange.make_order(maker, perp, True, size, price)
    assert isinstance(raised.value, CrossmarginError | ValueError)
    assert str(raised.value) == one_line(raised.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "3", "size_raw": 3}, "give size (human units) or size_raw= (WAD integer), not both"),
        ({}, "give size (human units) or size_raw= (WAD integer), one is required"),
        ({"size_raw": -3}, "size_raw must be a non-negative int (WAD), got -3"),
        ({"size_raw": 3.0}, "size_raw must be a non-negative int (WAD), got 3.0"),
        ({"size_raw": "3"}, "size_raw must be a non-negative int (WAD), got '3'"),
    ],
)
def test_make_order__size_and_size_raw__exactly_one(cm, maker, perp, kwargs, message):
    with pytest.raises(InvalidAmountError, match=f"^{re.escape(message)}$"):
        cm.exchange.make_order(maker, perp, True, price="3000", **kwargs)


@pytest.mark.parametrize(("size", "message"), [(1.5, "not float 1.5"), ("0", "size must be positive, got 0")])
def test_fill__bad_size__typed_error_nothing_sent(cm, books, maker, taker, perp, chain, size, message):
    order = cm.exchange.make_order(maker, perp, True, "3", "3000")
    signature = cm.exchange.sign(maker, order)
    nonce = taker.nonce
    with pytest.raises(InvalidAmountError, match=message):
        cm.exchange.fill(taker, order, signature, size)
    assert taker.nonce == nonce


@pytest.mark.parametrize(
    ("size", "price", "message"),
    [
        (2.0, "3000", "size must be a Decimal, str or int of whole units, not float 2.0 (pass '2.0')"),
        ("2", 3000.0, "price must be a Decimal, str or int of whole units, not float 3000.0 (pass '3000.0')"),
        ("0", "3000", "size must be a non-zero number, got 0"),
        ("-2", "-1", "price must be positive, got -1"),
    ],
)
def test_trade__bad_amount__typed_error(cm, books, maker, taker, perp, size, price, message):
    with pytest.raises(InvalidAmountError) as raised:
        cm.trade(maker, taker, perp, size, price)
    assert one_line(raised.value) == message


def test_deposit__float__typed_error(cm, trader):
    with pytest.raises(InvalidAmountError) as raised:
        cm.vault.deposit(trader, "USDC", 1000.0)
    assert (
        one_line(raised.value)
        == "amount must be a Decimal, str or int of whole units, not float 1000.0 (pass '1000.0')"
    )

"""Venue scale: books of 128 options on several underlyings, the position cap at its bounds,
the model against the engine on such a book, and its liquidation from start to sold out.

The book (`crossmargin.tools.scale_bench`) is the one `ape run gas` measures: 128 options (64 ETH,
64 BTC over 4 expiries, a long call and a short put of half a unit per strike) and two
perps, built by real fills between `maker` and `taker`.
"""

from __future__ import annotations

import ape
import pytest
from ape import chain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import examples
from test_model import assert_model_matches, push

from crossmargin.tools.scale_bench import BOOK, build_book, list_book, make_liquidatable, refresh_all
from crossmargin.units import account_id, to_wad

pytestmark = pytest.mark.slow

DEFAULT_CAP = 64
# A bid into an account of this size must fit well inside any chain's block (30M gas on L1).
BID_GAS_LIMIT = 10_000_000


@pytest.fixture(scope="module")
def listed(cm, admin):
    """BOOK + 1 options listed (the last one is the position past the cap)."""
    return list_book(cm, admin, BOOK + 1)


@pytest.fixture(scope="module")
def half_book(cm, admin, maker, taker, listed):
    """`maker` holds the first 64 options (the default cap) and the two perps."""
    return build_book(cm, admin, maker, taker, listed[:DEFAULT_CAP])


@pytest.fixture(scope="module")
def full_book(cm, admin, maker, taker, listed, half_book):
    """The cap raised to 128 and `maker` holding 128 options."""
    cm.markets.contract.set_max_options(BOOK, sender=admin)
    for n, (_, instrument) in enumerate(listed[DEFAULT_CAP:BOOK], DEFAULT_CAP):
        cm.trade(maker, taker, instrument, "0.5" if n % 2 == 0 else "-0.5", "100")
    return half_book


def option_count(clearing, account: int) -> int:
    return len(clearing.option_ids(account))


def test_position_cap__default_64__next_option_reverts(cm, clearing, markets, maker, taker, listed, half_book):
    assert markets.max_options() == DEFAULT_CAP
    assert option_count(clearing, half_book) == DEFAULT_CAP
    with ape.reverts("clearing: position cap"):
        cm.trade(maker, taker, listed[DEFAULT_CAP][1], "0.5", "100")


def test_position_cap__raised_to_128__129th_reverts_and_129_out_of_bounds(
    cm, clearing, markets, admin, maker, taker, listed, full_book
):
    assert option_count(clearing, full_book) == BOOK
    with ape.reverts("clearing: position cap"):
        cm.trade(maker, taker, listed[BOOK][1], "0.5", "100")
    with ape.reverts("markets: position cap out of bounds"):
        markets.set_max_options(BOOK + 1, sender=admin)


FEEDS = ("ETH/USD", "BTC/USD", "ETH/IV", "BTC/IV")


@given(moves=st.lists(st.tuples(st.sampled_from(FEEDS), st.integers(-80, 80)), min_size=1, max_size=3))
@settings(
    max_examples=examples(5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_model__128_option_book__equals_engine_views(cm, admin, maker, full_book, moves):
    """Margin, per-underlying risk and greeks of the 128-option book equal the model's to the
    wei after oracle moves (stale arrays valued in memory), and after a keeper refresh."""
    snapshot = chain.snapshot()
    try:
        for feed, move in moves:
            aggregator = cm.oracle.aggregator(feed)
            wad = aggregator.latestRoundData()[1] * 10 ** (18 - aggregator.decimals())
            push(cm, admin, feed, wad * (1000 + move) // 1000)
            assert_model_matches(cm, maker)
        refresh_all(cm, admin, [(None, i) for i in cm.clearing.contract.option_ids(full_book)])
        assert_model_matches(cm, maker)
    finally:
        chain.restore(snapshot)


def test_liquidation__128_option_book__started_bid_and_sold_out(
    cm, clearing, admin, maker, taker, keeper, listed, full_book
):
    """The whole path at full size: the keeper's hinted start, a 10% bid into a fresh account
    (every position moves, truncated toward zero), then, insolvent, the rest in four slices
    until nothing is left; no bid needs more than BID_GAS_LIMIT."""
    account = full_book
    book = listed[:BOOK]
    for subaccount in (1, 2):
        cm.token("USDC").mint(admin, keeper, "5000000")
        cm.vault.deposit(keeper, "USDC", "5000000", subaccount)
    make_liquidatable(cm, admin, account, taker, book)
    cm.liquidator.start(keeper, account, cm.engine.hint(account))
    assert cm.liquidator.auction(account).active

    sizes = {i: clearing.option_size(account, i) for _, i in book}
    chain.mine(timestamp=chain.pending_timestamp + 60)
    receipt = cm.liquidator.contract.bid(account, to_wad("0.1"), to_wad(10**7), 1, sender=keeper)
    assert receipt.gas_used < BID_GAS_LIMIT
    bidder = account_id(keeper.address, 1)
    assert option_count(clearing, bidder) == BOOK
    for _, instrument in book:
        size = sizes[instrument]
        moved = (abs(size) * to_wad("0.1") // to_wad(1)) * (1 if size > 0 else -1)  # toward zero
        assert clearing.option_size(bidder, instrument) == moved
        assert clearing.option_size(account, instrument) == sizes[instrument] - moved

    price = int(cm.oracle.price("BTC/USD"))
    while cm.engine.contract.margin(account).equity > 0:
        price -= 1200
        cm.oracle.push(admin, "BTC/USD", str(price))
    refresh_all(cm, taker, book)
    for fraction in ("0.25", "0.333333333333333333", "0.5", "1"):
        chain.mine(timestamp=chain.pending_timestamp + 60)
        receipt = cm.liquidator.contract.bid(account, to_wad(fraction), to_wad(10**7), 2, sender=keeper)
        assert receipt.gas_used < BID_GAS_LIMIT
    assert not cm.liquidator.auction(account).active
    assert option_count(clearing, account) == 0
    assert cm.clearing.perp_size(maker, "ETH") == cm.clearing.perp_size(maker, "BTC") == 0

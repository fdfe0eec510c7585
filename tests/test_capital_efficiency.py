"""Capital efficiency (issue 3): hedged books against the same legs in isolated subaccounts,
default grid, 30-day ATM ETH options at 60% vol. The table is printed (run with ``-s``) and
committed to the README by ``ape run efficiency``."""

from dataclasses import replace
from decimal import Decimal

import pytest

from crossmargin.model import margin as model
from crossmargin.tools.efficiency import markdown, measure_single_positions, measure_strategies, single_markdown
from crossmargin.units import account_id


@pytest.fixture(scope="module")
def rows(cm, admin, maker, taker):
    return {row.strategy: row for row in measure_strategies(cm, admin, maker, taker)}


@pytest.fixture(scope="module")
def singles(cm, admin, maker, taker, rows):
    return {row.position: row for row in measure_single_positions(cm, admin, maker, taker)}


def test_efficiency__table_printed(rows):
    print("\n" + markdown(list(rows.values())))
    assert len(rows) == 6


def test_efficiency__delta_hedged_long_call__at_most_30_percent(rows):
    row = rows["delta-hedged long call"]
    assert row.ratio <= Decimal("0.30"), row


def test_efficiency__delta_hedged_short_straddle__at_most_50_percent(rows):
    row = rows["delta-hedged short straddle"]
    assert row.ratio <= Decimal("0.50"), row


def test_efficiency__bear_call_spread__never_above_max_loss(rows):
    row = rows["bear call spread 3000/3200"]
    assert row.hedged_mm <= 200, row


def test_efficiency__covered_call__needs_nothing_beyond_the_eth(cm, rows, maker):
    row = rows["covered call (1 WETH + short call)"]
    assert row.hedged_mm < row.isolated_mm
    # the short call was sold from an account holding only 1 WETH: it passed the IM check
    assert "initial health with only the WETH: " in row.note
    assert Decimal(row.note.rsplit(": ", 1)[1].replace(",", "")) >= 0


def test_efficiency__calendar_spread__about_6_percent_of_its_legs(rows):
    """Long future, short perp, same size: both are marked to the index, so the grid sees no
    exposure and only the perp add-on (1% of each leg's notional) remains, against a 15%
    move plus the add-on for each leg alone: 2% / 32% = 6.25%."""
    row = rows["calendar spread (long 90-day future, short perp)"]
    assert row.hedged_mm == 60, row
    assert row.isolated_mm == 960, row
    assert row.ratio <= Decimal("0.07"), row


def test_single__table_printed(singles):
    print("\n" + single_markdown(list(singles.values())))
    assert len(singles) == 3


def test_single__naked_short_put_at_half_spot__tail_charges_at_least_3_percent(singles):
    """The -66% tail (spot x 0.34, vol up, weight 0.21): the put is 0.16 x spot in the money
    there, so its weighted loss is about 3.4% of spot; with the short-option add-on (1%) MM
    is 4.4% and IM (x 1.3) 5.75%. The old grid (down to -30% at weight 0.35) charged about
    1.2% (MM) and 1.6% (IM)."""
    row = singles["naked short put at 50% of spot"]
    assert row.im_share >= Decimal("0.03"), row
    assert row.mm_share < row.im_share


def test_single__naked_short_call_at_twice_spot__tail_charges_at_least_3_percent(singles):
    """The +200% tail (spot x 3, vol up, weight 0.0693): the call is 1 x spot in the money
    there, so its weighted loss is about 7% of spot, MM 8% with the add-on."""
    row = singles["naked short call at 200% of spot"]
    assert row.im_share >= Decimal("0.03"), row


def test_single__one_weth_alone__scenario_plus_its_contingency_haircut(singles):
    """WETH is shocked with ETH's spot in every scenario (-15%: 15% of its value) and keeps
    only its contingency haircut (3% / 5%): MM 18%, IM 1.3 x 15% + 5% = 24.5%."""
    row = singles["1 WETH alone (no position)"]
    assert row.mm_share <= Decimal("0.18"), row
    assert row.im_share <= Decimal("0.25"), row
    assert row.mm_share == Decimal("0.18") and row.im_share == Decimal("0.245"), row


def test_efficiency__concentrated_perp__at_least_150_percent_per_unit(rows):
    row = rows["concentrated perp (10,000 ETH against 10)"]
    assert row.ratio >= Decimal("1.5"), row


# ---------------------------------------------------------------- concentration (issue 14)


def test_concentration__default_config__large_perp_costs_1_5x_per_unit_small_ones_nothing_more(
    cm, admin, maker, taker, chain
):
    """Default ETH concentration (free 2,000,000 USD, depth 4,000,000 USD): a 10,000 ETH
    perp at 3,000 (worst loss L = 4.5M USD, add-on 4.5M · 2.5M / 4M) costs at least 1.5× per
    unit what a 10 ETH one does, IM and MM; a 100 ETH perp (L = 45,000 USD) exactly what it
    cost without the add-on. The model agrees to the wei, with and without it."""
    eth = cm.clearing.underlyings["ETH"]
    listing = cm.engine.contract.underlyings(eth)
    assert (listing.concentration_free, listing.concentration_depth) == (2_000, 4_000)
    perp = cm.markets.perp("ETH")
    cm.token("USDC").mint(admin, taker, "12000000")
    cm.vault.deposit(taker, "USDC", "12000000")
    sizes = {1: 10, 2: 100, 3: 10_000}
    for sub, size in sizes.items():
        funds = "11000000" if size > 100 else "100000"
        cm.token("USDC").mint(admin, maker, funds)
        cm.vault.deposit(maker, "USDC", funds, sub)
        cm.trade(maker, taker, perp, str(size), "3000", maker_subaccount=sub)
    block = chain.blocks.head.number
    per_unit = {}
    for sub, size in sizes.items():
        m = cm.engine.contract.margin(account_id(str(maker), sub), block_id=block)
        snap = model.snapshot(cm, maker, sub, block_id=block)
        assert tuple(m) == tuple(model.margin(*snap))
        state, underlyings, params, now = snap
        off = {u: replace(s, concentration_depth=0) for u, s in underlyings.items()}
        plain = model.margin(state, off, params, now)
        if size <= 100:
            assert tuple(m) == tuple(plain)
        else:
            assert m.maintenance > plain.maintenance and m.initial > plain.initial
        per_unit[size] = (Decimal(m.initial) / size, Decimal(m.maintenance) / size)
    for i in range(2):
        assert per_unit[10_000][i] >= Decimal("1.5") * per_unit[10][i], per_unit

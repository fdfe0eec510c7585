"""Capital efficiency (issue 3): hedged books against the same legs in isolated subaccounts,
default grid, 30-day ATM ETH options at 60% vol. The table is printed (run with ``-s``) and
committed to the README by ``ape run efficiency``."""

from decimal import Decimal

import pytest

from crossmargin.efficiency import markdown, measure_strategies


@pytest.fixture(scope="module")
def rows(cm, admin, maker, taker):
    return {row.strategy: row for row in measure_strategies(cm, admin, maker, taker)}


def test_efficiency__table_printed(rows):
    print("\n" + markdown(list(rows.values())))
    assert len(rows) == 5


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

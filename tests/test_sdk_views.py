"""Readable positions and risk in the SDK (issue 16): named instruments, sizes from the
account's own side, marks and PnL; the risk vector labelled by scenario and underlying."""

from datetime import UTC, datetime
from decimal import Decimal

from crossmargin.units import to_wad


def test_positions__named_signed_marked(cm, admin, books, maker, taker, chain):
    expiry = chain.pending_timestamp + 30 * 86_400
    day = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d")
    call = cm.markets.list_option(admin, "ETH", True, 3200, expiry)
    future = cm.markets.list_future(admin, "ETH", expiry)
    spot = cm.oracle.price("ETH/USD")
    cm.trade(maker, taker, cm.markets.perp("ETH"), "1", spot)  # the maker buys
    cm.trade(maker, taker, call, "2", "100")
    cm.trade(maker, taker, future, "-0.5", spot + 10)  # the maker sells
    mine = {p.name: p for p in cm.positions(maker)}
    theirs = {p.name: p for p in cm.positions(taker)}
    assert set(mine) == {"ETH perp", f"ETH call 3200 {day}", f"ETH future {day}"} == set(theirs)
    assert (mine["ETH perp"].size, theirs["ETH perp"].size) == (1, -1)
    assert (mine[f"ETH future {day}"].size, theirs[f"ETH future {day}"].size) == (Decimal("-0.5"), Decimal("0.5"))
    assert mine["ETH perp"].instrument == cm.markets.perp("ETH") and mine[f"ETH call 3200 {day}"].instrument == call
    # marks: the index for linear instruments, Black-Scholes for the option (both sides alike)
    option = mine[f"ETH call 3200 {day}"]
    assert mine["ETH perp"].mark == spot and option.mark > 0 and option.pnl is None
    assert option.value == 2 * option.mark and theirs[f"ETH call 3200 {day}"].value == -2 * option.mark
    # sold 0.5 at spot + 10, marked at spot: the maker is 5 USD up, the taker 5 down
    assert (mine[f"ETH future {day}"].pnl, theirs[f"ETH future {day}"].pnl) == (5, -5)
    # bought and sold at the index, funding of a block or two: zero-sum up to the rounding
    assert abs(mine["ETH perp"].pnl) < Decimal("0.01")
    assert -Decimal("1e-17") <= mine["ETH perp"].pnl + theirs["ETH perp"].pnl <= 0


def test_risk__labelled_by_underlying_and_scenario(cm, books, maker, taker):
    cm.trade(maker, taker, cm.markets.perp("ETH"), "-1", cm.oracle.price("ETH/USD"))
    [eth] = cm.engine.risk(maker)
    assert eth.name == "ETH" and len(eth.scenarios) == len(eth.pnl) == 23
    assert eth.scenarios[0] == "spot +0%, vol unchanged (weight 1)"
    assert eth.scenarios[7] == "spot -66%, vol up (weight 0.21)"
    assert eth.scenarios[8] == "spot +200%, vol up (weight 0.0693)"
    # a short perp loses most at +15% (the first of its three vol moves)
    assert eth.worst == "spot +15%, vol up (weight 1)"
    assert eth.labelled()["spot +15%, vol up (weight 1)"] == eth.pnl[eth.worst_scenario] < 0
    assert to_wad(eth.loss) == -to_wad(eth.pnl[eth.worst_scenario])

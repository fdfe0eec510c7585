"""Capital efficiency of portfolio margin: hedged books against their legs margined alone.

Each strategy is traded twice by one owner: all legs together in subaccount 0 (cross
margin) and each leg in its own subaccount (isolated margin), against a well-funded
counterparty. The maintenance requirements are then read from the margin engine. Used by
``tests/test_capital_efficiency.py`` (which asserts the spec's bounds) and by
``ape run efficiency`` (which prints the table committed to the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ape import chain

from crossmargin.clients.protocol import Protocol
from crossmargin.model.fixed import bs_greeks, bs_price
from crossmargin.units import WAD, from_wad, to_wad

DAYS = 30
VOL = Decimal("0.6")
SPOT = Decimal(3000)
# The concentrated-perp row: a small and a large long ETH perp (units).
CONCENTRATED = (Decimal(10), Decimal(10_000))


@dataclass(frozen=True)
class Leg:
    instrument: int
    size: Decimal  # positive = long
    price: Decimal  # trade price (premium or perp price)


@dataclass(frozen=True)
class EfficiencyRow:
    strategy: str
    hedged_mm: Decimal  # maintenance requirement of the whole book in one account
    isolated_mm: Decimal  # sum of the legs' requirements, each in its own subaccount
    bound: str  # what the spec expects
    note: str = ""

    @property
    def ratio(self) -> Decimal:
        return self.hedged_mm / self.isolated_mm if self.isolated_mm else Decimal(0)


def _premium(strike: Decimal, is_call: bool, tau: int) -> tuple[Decimal, Decimal]:
    """Black-Scholes premium and delta at the demo's spot and vol, rounded to cents / 1e-4."""
    args = (to_wad(SPOT), to_wad(strike), to_wad(VOL), tau, 0, is_call)
    price = from_wad(bs_price(*args)).quantize(Decimal("0.01"))
    delta = from_wad(bs_greeks(*args)[0]).quantize(Decimal("0.0001"))
    return price, delta


def _trade_legs(cm: Protocol, owner: Any, counterparty: Any, legs: list[Leg], subaccounts: list[int]) -> None:
    for leg, sub in zip(legs, subaccounts, strict=True):
        cm.trade(owner, counterparty, leg.instrument, leg.size, leg.price, maker_subaccount=sub)


def measure_strategies(cm: Protocol, admin: Any, owner: Any, counterparty: Any) -> list[EfficiencyRow]:
    """Lists 30-day ETH options at 3000/3200 and a 90-day future, trades five strategies,
    returns the table.

    ``owner`` needs nothing; it is funded here (100k USDC per subaccount, 1 WETH for the
    covered call). ``counterparty`` is funded with 10M USDC.
    """
    for symbol, amount in (("USDC", "10000000"),):
        cm.token(symbol).mint(admin, counterparty, amount)
        cm.vault.deposit(counterparty, symbol, amount)
    expiry = chain.pending_timestamp + DAYS * 86_400
    tau = DAYS * 86_400
    call = cm.markets.list_option(admin, "ETH", True, SPOT, expiry)
    put = cm.markets.list_option(admin, "ETH", False, SPOT, expiry)
    call_high = cm.markets.list_option(admin, "ETH", True, SPOT + 200, expiry)
    perp = cm.markets.perp("ETH")
    future = cm.markets.list_future(admin, "ETH", chain.pending_timestamp + 3 * DAYS * 86_400)
    call_px, call_delta = _premium(SPOT, True, tau)
    put_px, put_delta = _premium(SPOT, False, tau)
    high_px, _ = _premium(SPOT + 200, True, tau)

    strategies: list[tuple[str, list[Leg], str]] = [
        (
            "delta-hedged long call",
            [Leg(call, Decimal(1), call_px), Leg(perp, -call_delta, SPOT)],
            "<= 30%",
        ),
        (
            "delta-hedged short straddle",
            [Leg(call, Decimal(-1), call_px), Leg(put, Decimal(-1), put_px), Leg(perp, call_delta + put_delta, SPOT)],
            "<= 50%",
        ),
        (
            "bear call spread 3000/3200",
            [Leg(call, Decimal(-1), call_px), Leg(call_high, Decimal(1), high_px)],
            "hedged MM <= 200 (strike width)",
        ),
        (
            "calendar spread (long 90-day future, short perp)",
            [Leg(future, Decimal(1), SPOT), Leg(perp, Decimal(-1), SPOT)],
            "about 6% (perp add-on on both legs only)",
        ),
    ]
    rows = []
    next_sub = 1
    for name, legs, bound in strategies:
        hedged_sub = next_sub
        isolated = list(range(next_sub + 1, next_sub + 1 + len(legs)))
        next_sub += 1 + len(legs)
        for sub in (hedged_sub, *isolated):
            cm.token("USDC").mint(admin, owner, "100000")
            cm.vault.deposit(owner, "USDC", "100000", sub)
        _trade_legs(cm, owner, counterparty, legs, [hedged_sub] * len(legs))
        _trade_legs(cm, owner, counterparty, legs, isolated)
        hedged = cm.engine.margin(owner, hedged_sub).maintenance
        alone = sum((cm.engine.margin(owner, sub).maintenance for sub in isolated), Decimal(0))
        rows.append(EfficiencyRow(name, hedged, alone, bound))

    # covered call: 1 WETH and nothing else, then sell one call against it
    covered, naked = next_sub, next_sub + 1
    cm.token("WETH").mint(admin, owner, "1")
    cm.vault.deposit(owner, "WETH", "1", covered)
    _trade_legs(cm, owner, counterparty, [Leg(call, Decimal(-1), call_px)], [covered])
    margin = cm.engine.margin(owner, covered)
    cm.token("WETH").mint(admin, owner, "1")
    cm.vault.deposit(owner, "WETH", "1", naked)
    cm.token("USDC").mint(admin, owner, "100000")
    cm.vault.deposit(owner, "USDC", "100000", naked + 1)
    _trade_legs(cm, owner, counterparty, [Leg(call, Decimal(-1), call_px)], [naked + 1])
    alone = cm.engine.margin(owner, naked).maintenance + cm.engine.margin(owner, naked + 1).maintenance
    rows.append(
        EfficiencyRow(
            "covered call (1 WETH + short call)",
            margin.maintenance,
            alone,
            "no collateral beyond the WETH",
            note=f"initial health with only the WETH: {margin.initial_health:,.2f}",
        )
    )

    # concentrated perp: a long ETH perp of 10,000 against one of 10, each alone in its
    # subaccount; per unit, the large one pays the concentration add-on on top
    per_unit = []
    cm.token("USDC").mint(admin, counterparty, "12000000")
    cm.vault.deposit(counterparty, "USDC", "12000000")
    for sub, size, funds in ((naked + 2, CONCENTRATED[0], "100000"), (naked + 3, CONCENTRATED[1], "11000000")):
        cm.token("USDC").mint(admin, owner, funds)
        cm.vault.deposit(owner, "USDC", funds, sub)
        _trade_legs(cm, owner, counterparty, [Leg(perp, size, SPOT)], [sub])
        per_unit.append(cm.engine.margin(owner, sub).initial / size)
    rows.append(
        EfficiencyRow(
            f"concentrated perp ({CONCENTRATED[1]:,} ETH against {CONCENTRATED[0]:,})",
            per_unit[1],
            per_unit[0],
            ">= 150% per unit (concentration add-on)",
            note="IM per unit, large then small, not MM",
        )
    )
    return rows


@dataclass(frozen=True)
class SingleRow:
    """One position (or collateral) alone: its requirements against a basis (spot or value)."""

    position: str
    initial: Decimal  # IM of the account (WAD-free USD)
    maintenance: Decimal  # MM of the account
    basis: Decimal  # what the shares are of: the spot per unit, or the collateral's value
    bound: str  # what the spec expects

    @property
    def im_share(self) -> Decimal:
        return self.initial / self.basis

    @property
    def mm_share(self) -> Decimal:
        return self.maintenance / self.basis


def measure_single_positions(
    cm: Protocol, admin: Any, owner: Any, counterparty: Any, first_sub: int = 40
) -> list[SingleRow]:
    """The tail and collateral rows (issue 14): a naked short 30-day put at half the spot, a
    naked short 30-day call at twice the spot (one unit each, 100k USDC behind each), and
    1 WETH alone, each in its own subaccount of ``owner`` from ``first_sub``.
    ``counterparty`` must be funded (``measure_strategies`` does it)."""
    expiry = chain.pending_timestamp + DAYS * 86_400
    tau = DAYS * 86_400
    rows = []
    sub = first_sub
    for name, is_call, strike, bound in (
        ("naked short put at 50% of spot", False, SPOT / 2, "IM >= 3% of spot"),
        ("naked short call at 200% of spot", True, SPOT * 2, "IM >= 3% of spot"),
    ):
        instrument = cm.markets.list_option(admin, "ETH", is_call, strike, expiry)
        price = max(_premium(strike, is_call, tau)[0], Decimal("0.01"))
        cm.token("USDC").mint(admin, owner, "100000")
        cm.vault.deposit(owner, "USDC", "100000", sub)
        _trade_legs(cm, owner, counterparty, [Leg(instrument, Decimal(-1), price)], [sub])
        margin = cm.engine.margin(owner, sub)
        rows.append(SingleRow(name, margin.initial, margin.maintenance, SPOT, bound))
        sub += 1
    cm.token("WETH").mint(admin, owner, "1")
    cm.vault.deposit(owner, "WETH", "1", sub)
    margin = cm.engine.margin(owner, sub)
    rows.append(
        SingleRow(
            "1 WETH alone (no position)", margin.initial, margin.maintenance, SPOT, "MM <= 18%, IM <= 25% of its value"
        )
    )
    return rows


def single_markdown(rows: list[SingleRow]) -> str:
    lines = [
        "| position (30-day ETH options, 60% vol, spot 3000) | IM | MM | IM / basis | MM / basis | spec |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.position} | {row.initial:,.2f} | {row.maintenance:,.2f} "
            f"| {row.im_share:.2%} | {row.mm_share:.2%} | {row.bound} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: list[EfficiencyRow]) -> str:
    lines = [
        "| strategy (30-day ATM ETH options, 60% vol, spot 3000) | hedged MM | isolated legs MM | ratio | spec |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        note = f" ({row.note})" if row.note else ""
        lines.append(
            f"| {row.strategy} | {row.hedged_mm:,.2f} | {row.isolated_mm:,.2f} | {row.ratio:.1%} | {row.bound}{note} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "EfficiencyRow",
    "Leg",
    "SingleRow",
    "WAD",
    "markdown",
    "measure_single_positions",
    "measure_strategies",
    "single_markdown",
]

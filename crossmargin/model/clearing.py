"""Integer models of the clearinghouse's trade rules (``contracts/Clearinghouse.vy``).

Bit-exact where the contract computes a number (the premium EMA), and the same predicate
where it decides (the risk-reducing exception, the operator price band). Units as in the
contract: WAD fractions and WAD USD, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from crossmargin.model.auction import exit_charge
from crossmargin.model.margin import (
    FUTURE,
    PERP,
    WAD,
    AccountState,
    FuturePosition,
    OptionPosition,
    PerpPosition,
    ceil_div,
    floor_div,
    funding_now,
    mul_div,
)


def premium_ema_after(ema: int, price: int, spot: int, size: int, dt: int, window: int, reference: int) -> int:
    """``Clearinghouse._accrue_funding``: the premium EMA after a perp fill.

    The premium ``min(floor((price − spot) / spot), 100%)`` moves the EMA by
    ``min(dt, window) / window`` of the way, times ``min(n, reference) / reference`` with
    ``n = floor(|size| · spot)`` the fill's notional at the index.

    Args:
        ema: The EMA before the fill (WAD fraction, signed).
        price: The fill price (WAD USD per unit).
        spot: The index price (WAD USD per unit).
        size: The fill size (WAD units, signed; only its magnitude counts).
        dt: Seconds since the funding state was last written.
        window: The EMA window (s).
        reference: ``funding_notional`` (WAD USD).
    """
    premium = min(floor_div((price - spot) * WAD, spot), WAD)
    notional = min(abs(size) * spot // WAD, reference)
    return ema + floor_div((premium - ema) * min(dt, window) * notional, window * reference)


def ema_move_bound(notional: int, reference: int) -> int:
    """The most one fill of ``notional`` (WAD USD, at the index) moves the EMA (WAD):
    ``|premium − ema| <= 2`` and the weight is at most ``notional / reference``, plus one
    wei of floor rounding."""
    return 2 * WAD * min(notional, reference) // reference + 1


def risk_reducing_allowed(equity_before: int, mm_before: int, equity_after: int, mm_after: int) -> bool:
    """The risk-reducing exception of ``Clearinghouse._check_trade``: a trade that leaves an
    account below initial margin (or is made while new risk is closed) goes through only if

    - its maintenance margin falls (``MM' < MM``);
    - its health does not (``E' − MM' >= E − MM``);
    - its equity stays non-negative (``E' >= 0``);
    - its equity per unit of MM does not fall (``E' · MM >= E · MM'``).

    Below MM the last one binds: the account can hand out at most ``E · (1 − MM'/MM)``, the
    equity that backed the risk it removes, so it is left no thinner than before.
    """
    return (
        mm_after < mm_before
        and equity_after - mm_after >= equity_before - mm_before
        and equity_after >= 0
        and equity_after * mm_before >= equity_before * mm_after
    )


def future_trade(size: int, cost: int, fill: int, price: int) -> tuple[int, int, int]:
    """``Clearinghouse._trade_linear`` for a future (a perp's rule without funding).

    Args:
        size: The position's size before the fill (WAD units, signed).
        cost: Its cost (WAD USD, signed).
        fill: The fill's size on this side (WAD units, signed).
        price: The fill price (WAD USD per unit).

    Returns:
        ``(size, cost, cash)``: the position after the fill (``cost += ceil(fill · price)``)
        and the cash it realizes (``−cost`` once flat, when the cost resets to 0).
    """
    size += fill
    cost += ceil_div(fill * price, WAD)
    if size == 0:
        return 0, 0, -cost
    return size, cost, 0


def future_payoff(size: int, cost: int, settlement_price: int) -> int:
    """``Clearinghouse.settle`` for a future: ``floor(size · P) − cost`` (WAD USD, signed)."""
    return floor_div(size * settlement_price, WAD) - cost


def future_split(size: int, cost: int, held_size: int, held_cost: int, fraction: int) -> tuple[int, int, int, int, int]:
    """``Clearinghouse.transfer_fraction`` for one future (``_split``): ``trunc(size · f)``
    units move with their cost pro rata (rounded toward zero); a bidder's position that
    nets to zero realizes its cost.

    Returns:
        ``(size, cost, held_size, held_cost, target_cash)`` after the move.
    """
    moved = abs(size) * fraction // WAD * (1 if size > 0 else -1)
    if moved == 0:
        return size, cost, held_size, held_cost, 0
    part = abs(cost) * abs(moved) // abs(size) * (1 if cost >= 0 else -1)
    size, cost = size - moved, cost - part
    held_size, held_cost = held_size + moved, held_cost + part
    if held_size == 0:
        return size, cost, 0, 0, -held_cost
    return size, cost, held_size, held_cost, 0


@dataclass(frozen=True)
class PreviewTrade:
    """One trade of ``Lens.preview``, from the previewed account's side (WAD integers).

    Attributes:
        instrument: Instrument id.
        size: Signed size (WAD units): positive buys, negative sells.
        price: Price (WAD USD per unit).
        fee: Fee the account pays (WAD USD).
    """

    instrument: int
    size: int
    price: int
    fee: int = 0


@dataclass(frozen=True)
class Listing:
    """What applying a trade needs of its instrument (``Markets.instrument``), and for a
    perp its funding state (``Clearinghouse.funding``) and index price.

    Attributes:
        kind: ``PERP``, ``CALL``, ``PUT`` or ``FUTURE``.
        underlying: Underlying id.
        strike: Strike (WAD USD; options).
        expiry: Expiry (unix s; options and futures).
        settlement_price: Stored settlement price (WAD USD), 0 before the first settlement.
        array: An option's stored risk-array words (see ``margin.pack_array``).
        funding: A perp's ``(cumulative, premium_ema, updated_at)``.
        spot: A perp's index price (WAD USD).
        pending: A perp's or future's ``Clearinghouse.pending_charge`` word (longs per unit
            in bits 0..127, shorts above; 0 when no insolvent auction marked it).
    """

    kind: int
    underlying: int
    strike: int = 0
    expiry: int = 0
    settlement_price: int = 0
    array: tuple[int, ...] | None = None
    funding: tuple[int, int, int] = (0, 0, 0)
    spot: int = 0
    pending: int = 0


def _exit(listing: Listing, old: int, size: int) -> int:
    """The exit charge of a linear trade of ``size`` on a position of ``old``."""
    return exit_charge(old, size, listing.pending & (2**128 - 1), listing.pending >> 128)


def apply_trades(
    state: AccountState, trades: list[PreviewTrade], listings: dict[int, Listing], now: int
) -> tuple[AccountState, list[AccountState]]:
    """``Lens.preview``'s positions: ``state`` after each of ``trades``, applied as
    ``Clearinghouse.trade`` applies a fill to one side (options set as ``_with_size``: a
    position that nets to zero is removed, the last one taking its place; perps and futures
    as ``_trade_linear``, a perp's funding settled to the index accrued to ``now`` first,
    leaving a side with a pending charge paying its exit charge; the option premium paid
    rounded up, received rounded down; the fee paid).

    Returns:
        The state after every trade, and after each one in turn (its cash moved too).
    """
    steps = []
    for trade in trades:
        listing = listings[trade.instrument]
        cash = state.cash - trade.fee
        if listing.kind == PERP:
            lines = list(state.perps)
            slot = next((i for i, p in enumerate(lines) if p.underlying == listing.underlying), None)
            if slot is None:
                cumulative, ema, updated_at = listing.funding
                held = PerpPosition(listing.underlying, 0, 0, 0, cumulative, ema, updated_at)
            else:
                held = lines[slot]
            index = funding_now(
                held.cumulative,
                held.premium_ema,
                held.updated_at,
                listing.spot,
                state.funding_cap,
                state.funding_interval,
                now,
            )
            cash += floor_div(-held.size * (index - held.funding), WAD)
            cash -= _exit(listing, held.size, trade.size)
            size = held.size + trade.size
            cost = held.cost + ceil_div(trade.size * trade.price, WAD)
            if size == 0:
                cash -= cost
                if slot is not None:
                    last = lines.pop()
                    if slot < len(lines):
                        lines[slot] = last
            else:
                line = replace(held, size=size, cost=cost, funding=index)
                if slot is None:
                    lines.append(line)
                else:
                    lines[slot] = line
            state = replace(state, cash=cash, perps=tuple(lines))
        elif listing.kind == FUTURE:
            words = list(state.futures)
            slot = next((i for i, f in enumerate(words) if f.instrument == trade.instrument), None)
            held_size, held_cost = (0, 0) if slot is None else (words[slot].size, words[slot].cost)
            size, cost, realized = future_trade(held_size, held_cost, trade.size, trade.price)
            cash -= _exit(listing, held_size, trade.size)
            if size == 0:
                if slot is not None:
                    last = words.pop()
                    if slot < len(words):
                        words[slot] = last
            else:
                line = FuturePosition(trade.instrument, listing.underlying, size, cost, listing.expiry)
                if slot is None:
                    words.append(line)
                else:
                    words[slot] = line
            state = replace(state, cash=cash + realized, futures=tuple(words))
        else:
            options = list(state.options)
            slot = next((i for i, o in enumerate(options) if o.instrument == trade.instrument), None)
            size = trade.size + (0 if slot is None else options[slot].size)
            if size == 0:
                last = options.pop()
                if slot < len(options):
                    options[slot] = last
            elif slot is None:
                options.append(
                    OptionPosition(
                        trade.instrument,
                        listing.underlying,
                        listing.kind,
                        listing.strike,
                        listing.expiry,
                        size,
                        listing.array,
                        listing.settlement_price,
                    )
                )
            else:
                options[slot] = replace(options[slot], size=size)
            units = abs(trade.size)
            if trade.size > 0:
                cash -= mul_div(units, trade.price, WAD, True)
            else:
                cash += mul_div(units, trade.price, WAD, False)
            state = replace(state, cash=cash, options=tuple(options))
        steps.append(state)
    return state, steps

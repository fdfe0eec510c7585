"""Integer models of the clearinghouse's trade rules (``contracts/Clearinghouse.vy``).

Bit-exact where the contract computes a number (the premium EMA), and the same predicate
where it decides (the risk-reducing exception, the operator price band). Units as in the
contract: WAD fractions and WAD USD, seconds.
"""

from __future__ import annotations

from crossmargin.model.margin import WAD, ceil_div, floor_div


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

"""Integer models of the clearinghouse's trade rules (``contracts/Clearinghouse.vy``).

Bit-exact where the contract computes a number (the premium EMA), and the same predicate
where it decides (the risk-reducing exception, the operator price band). Units as in the
contract: WAD fractions and WAD USD, seconds.
"""

from __future__ import annotations

from crossmargin.model.margin import WAD, floor_div


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

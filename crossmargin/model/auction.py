"""Reference model of the liquidator's auction arithmetic (``contracts/Liquidator.vy``),
in the same integer WAD fixed point and rounding, so keepers can price a bid offline and
tests can check the chain to the wei.
"""

from __future__ import annotations

from dataclasses import dataclass

WAD = 10**18
CAP_SLACK = 10**15


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AuctionParams:
    """The liquidator's parameters (WAD fractions, seconds, WAD USD)."""

    start_multiplier: int = 95 * 10**16
    mid_multiplier: int = 70 * 10**16
    first_phase: int = 15 * 60
    second_phase: int = 12 * 3600
    insolvent_ramp: int = 3600
    buffer: int = 115 * 10**16
    liquidation_fee: int = 5 * 10**16
    keeper_tip: int = 5 * WAD
    small_account: int = 1000 * WAD
    standing_tip: int = WAD

    @classmethod
    def read(cls, liquidator) -> AuctionParams:
        """The parameters a deployed liquidator uses now."""
        return cls(**{name: int(getattr(liquidator, name)()) for name in cls.__dataclass_fields__})


TIP_SHARE = 5 * 10**16
TIP_UNIT = 10**14
OWED_MAX = 2**24 - 1


def tip_owed(maintenance: int, p: AuctionParams = AuctionParams()) -> int:
    """The most the starting keeper is tipped (WAD USD): 5% of the maintenance requirement
    the start proved, in 0.0001 USD, at most ``keeper_tip``."""
    return min(min(maintenance * TIP_SHARE // WAD // TIP_UNIT, OWED_MAX) * TIP_UNIT, p.keeper_tip)


def tip_paid(owed: int, fee: int) -> int:
    """What a solvent bid's ``fee`` pays the starter still owed ``owed`` (WAD USD): whole
    0.0001 USD, never more than either; the rest stays owed."""
    return min(owed // TIP_UNIT, fee // TIP_UNIT) * TIP_UNIT


def multiplier(elapsed: int, p: AuctionParams = AuctionParams()) -> int:
    """d(t) (WAD): start → mid over the first phase, mid → 0 over the second; each drop
    rounded up."""
    if elapsed < p.first_phase:
        return p.start_multiplier - _ceil_div((p.start_multiplier - p.mid_multiplier) * elapsed, p.first_phase)
    if elapsed < p.first_phase + p.second_phase:
        return p.mid_multiplier - _ceil_div(p.mid_multiplier * (elapsed - p.first_phase), p.second_phase)
    return 0


def cap(equity: int, maintenance: int, d: int, p: AuctionParams = AuctionParams()) -> int:
    """Largest fraction (WAD) a solvent bid may take: the one that restores the buffer."""
    target = _ceil_div(maintenance * p.buffer, WAD)
    if equity >= target:
        return 0
    kept = equity * (WAD - d + p.liquidation_fee) // WAD
    if kept >= target:
        return WAD
    return min(_ceil_div((target - equity) * WAD, target - kept) + CAP_SLACK, WAD)


@dataclass(frozen=True)
class BidTerms:
    fraction: int  # WAD, after the cap
    price: int  # WAD cash the bidder pays (negative: is paid)
    fee: int  # WAD to the insurance fund (before the keeper's tip)


def solvent_terms(
    equity: int, maintenance: int, fraction: int, elapsed: int, p: AuctionParams = AuctionParams()
) -> BidTerms:
    """What a solvent bid buys and costs (``equity > 0``); a fraction of 0 means the bid
    reverts (``liquidator: account above buffer``)."""
    d = multiplier(elapsed, p)
    c = cap(equity, maintenance, d, p)
    # at or above the buffer (c == 0) nothing is sold, whatever the size (the bid reverts)
    taken = fraction if equity < p.small_account and c != 0 else min(fraction, c)
    price = _ceil_div(taken * equity * d, WAD * WAD)
    fee = min(taken * equity * p.liquidation_fee // (WAD * WAD), price)
    return BidTerms(taken, price, fee)


def insolvent_terms(
    equity: int,
    maintenance: int,
    fraction: int,
    since_insolvent: int | None,
    p: AuctionParams = AuctionParams(),
    scale: int = 10**12,
) -> BidTerms:
    """What an insolvent bid (``equity <= 0``) pays the bidder, in whole units of the
    settlement token (``scale`` = 10**(18 - decimals)); ``since_insolvent`` is None before
    the auction was marked insolvent."""
    elapsed = 0 if since_insolvent is None else min(since_insolvent, p.insolvent_ramp)
    whole = -equity + maintenance * elapsed // p.insolvent_ramp
    return BidTerms(fraction, -(whole * fraction // WAD // scale * scale), 0)


def discount(equity: int, terms: BidTerms) -> int:
    """The bidder's gain at mark (WAD): the equity bought less the price paid."""
    return terms.fraction * equity // WAD - terms.price


# ---------------------------------------------------------------- standing bids


@dataclass(frozen=True)
class StandingBid:
    """A standing bid (``Liquidator.register``): WAD multiplier, fraction and cash per
    auction, underlyings mask (0 = any)."""

    multiplier: int
    fraction: int
    max_cash: int
    underlyings: int = 0


class StandingBidRefused(ValueError):
    """The execution reverts; ``args[0]`` is the contract's reason."""


def standing_terms(
    bid: StandingBid,
    used_fraction: int,
    used_cash: int,
    equity: int,
    maintenance: int,
    elapsed: int,
    since_insolvent: int | None = None,
    p: AuctionParams = AuctionParams(),
    scale: int = 10**12,
) -> BidTerms:
    """What ``Liquidator.execute`` buys and pays now, after the bid used ``used_fraction``
    and ``used_cash`` of this auction (the buyer's margin check aside: that one skips).
    Raises :class:`StandingBidRefused` with the revert reason, checked in the contract's
    order."""
    if used_fraction >= bid.fraction:
        raise StandingBidRefused("liquidator: standing bid used")
    left = bid.fraction - used_fraction
    if equity <= 0:
        # insolvent: executes at once, the bidder is paid (no cash used)
        return insolvent_terms(equity, maintenance, left, since_insolvent, p, scale)
    d = multiplier(elapsed, p)
    c = cap(equity, maintenance, d, p)
    if c == 0:
        raise StandingBidRefused("liquidator: account above buffer")
    taken = left if equity < p.small_account else min(left, c)
    if d > bid.multiplier:
        raise StandingBidRefused("liquidator: above standing multiplier")
    if d != 0:
        taken = min(taken, (bid.max_cash - used_cash) * WAD * WAD // (equity * d))
    if taken == 0:
        raise StandingBidRefused("liquidator: standing bid used")
    price = _ceil_div(taken * equity * d, WAD * WAD)
    if taken * equity // WAD < price + p.standing_tip:
        raise StandingBidRefused("liquidator: standing slice below tip")
    fee = min(taken * equity * p.liquidation_fee // (WAD * WAD), price)
    return BidTerms(taken, price, fee)


def due_elapsed(bid: StandingBid, p: AuctionParams = AuctionParams()) -> int:
    """The first second after an auction's start at which d(t) <= the bid's multiplier."""
    lo, hi = 0, p.first_phase + p.second_phase
    while lo < hi:
        mid = (lo + hi) // 2
        if multiplier(mid, p) <= bid.multiplier:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ------------------------------------------------------------------ the loss waterfall


@dataclass(frozen=True)
class LinearPosition:
    """A perp or future position as the clearinghouse reads it (cost with the loss index)."""

    instrument: int
    size: int  # WAD units, signed
    cost: int  # WAD USD, signed
    spot: int  # the underlying's index price (WAD USD)
    open_interest: int  # the instrument's long units (WAD)
    # a future at or past its expiry: left to the socialization (its holders settle in any
    # order, so its open interest no longer counts the side charged)
    expired: bool = False
    # what the side charged already has per unit: its loss index (`deleverage`) or pending
    # charge (`mark`); each stops at 2**128 - 1
    index: int = 0


M128 = 2**128 - 1


@dataclass(frozen=True)
class Charge:
    """One side of one instrument charged by deleveraging (``Clearinghouse.Deleveraged``) or
    marked with a pending charge (``Clearinghouse.ChargePending``, ``amount`` its share)."""

    instrument: int
    longs: bool
    amount: int
    per_unit: int
    open_interest: int
    from_exits: int = 0


def linear_loss(position: LinearPosition) -> int:
    """A position's loss at the index: max(0, cost − floor(size · spot))."""
    return max(position.cost - position.size * position.spot // WAD, 0)


def _losing(positions: list[LinearPosition]) -> tuple[list[tuple[LinearPosition, int]], int]:
    losses = [(p, linear_loss(p)) for p in positions if not p.expired]
    losses = [(p, loss) for p, loss in losses if loss]
    return losses, sum(loss for _, loss in losses)


def deleverage(
    positions: list[LinearPosition],
    amount: int,
    fraction: int,
    collected: dict[int, int] | None = None,
    exit_charges: int = 0,
) -> tuple[int, list[Charge]]:
    """``ClearingMoves.deleverage``: the charges for ``amount`` (WAD) of an insolvent slice
    ``fraction`` (WAD) over the account's perps (by underlying) then futures (as stored), and
    their total, at most ``amount``. Each side's share is paid first by the exit charges
    ``collected`` for its instrument (WAD, updated in place), at most ``exit_charges`` (WAD,
    what the vault holds) in all; the rest through the loss index."""
    collected = {} if collected is None else collected
    losses, total = _losing(positions)
    if total == 0:
        return 0, []
    spread = min(amount, total * fraction // WAD)
    charges = []
    for p, loss in losses:
        share = spread * loss // total
        paid = 0
        if collected.get(p.instrument) and share:
            paid = min(collected[p.instrument], share, exit_charges)
            collected[p.instrument] -= paid
            exit_charges -= paid
        rest = share - paid
        per_unit = charged = 0
        if p.open_interest and rest:
            per_unit = min(rest * WAD // p.open_interest, M128 - p.index)
            charged = per_unit * p.open_interest // WAD
        if charged or paid:
            open_interest = p.open_interest if charged else 0
            charges.append(Charge(p.instrument, p.size < 0, charged, per_unit, open_interest, paid))
    return sum(c.amount + c.from_exits for c in charges), charges


def mark(positions: list[LinearPosition], bound: int) -> list[Charge]:
    """``ClearingMoves.mark``: the pending charge per unit of each side an insolvent
    account's deleveraging may charge, for ``bound`` (WAD) the fund cannot cover: its share
    ceil(min(bound, Σ losses) · loss / Σ losses), per unit ceil(share / open interest)."""
    losses, total = _losing(positions)
    spread = min(bound, total)
    marks = []
    for p, loss in losses:
        if p.open_interest == 0:
            continue
        share = _ceil_div(spread * loss, total)
        per_unit = min(_ceil_div(share * WAD, p.open_interest), M128 - p.index)
        if per_unit:
            marks.append(Charge(p.instrument, p.size < 0, share, per_unit, p.open_interest))
    return marks


def exit_charge(old: int, size: int, longs_per_unit: int, shorts_per_unit: int) -> int:
    """``Clearinghouse`` exit charge: a trade of ``size`` on a position of ``old`` pays the
    pending charge per unit of the side it leaves for each unit it takes off, rounded up."""
    if old == 0 or (old > 0) == (size > 0):
        return 0
    per_unit = longs_per_unit if old > 0 else shorts_per_unit
    return _ceil_div(min(abs(size), abs(old)) * per_unit, WAD)


def owed_loss(size: int, per_unit: int, up: bool = True) -> int:
    """What a position of ``size`` owes at its side's loss index ``per_unit`` (WAD USD), rounded
    up as its cost is read (``up``) or down as it is stored (``Clearinghouse._owed_loss``)."""
    product = abs(size) * per_unit
    return _ceil_div(product, WAD) if up else product // WAD


def hold_back(amount: int, pending_loss: int, fund_assets: int, positive_cash: int) -> int:
    """``Vault._hold_back``: what ``amount`` (settlement token units) of positive cash leaving
    gives up while ``pending_loss`` (WAD) exceeds the fund's assets (WAD): its share of the
    excess over ``positive_cash`` (WAD), rounded up, at most ``amount``."""
    if pending_loss == 0 or fund_assets >= pending_loss or positive_cash == 0:
        return 0
    return min(amount, _ceil_div(amount * (pending_loss - fund_assets), positive_cash))

"""Who paid for the insolvent auctions: the loss waterfall read back from events.

Used by the demo (:mod:`crossmargin.tools.demo`) and the crash run (:mod:`crossmargin.tools.crash`).
Each insolvent slice logs ``Liquidator.LossCovered(account, loss, fund_payout, deleveraged,
socialized)`` with ``loss = fund_payout + deleveraged + socialized`` to the wei
(SPECIFICATION.md, Loss waterfall); the deleveraging step logs
``Clearinghouse.Deleveraged(instrument, longs, amount, per_unit, open_interest)`` per side it
charged, and the socialization ``Vault.LossSocialized(recipient, amount, cash_index,
positive_cash)``. From these:

- every covered slice (:class:`Covered`) and the totals;
- every charge of a loss index (:class:`Charge`) with the accounts on the charged side and
  what each owes for it, ``ceil(|size| · per_unit / 1e18)`` (the loss index's rounding,
  against the holder), from the sizes at the block before the charge;
- each account's share of the socialized losses: ``cash · (1 − I_after / I_before)`` of its
  positive cash before each socialization (the vault's cash index ``I``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ape import chain

from crossmargin.model.auction import AuctionParams, StandingBid, due_elapsed, multiplier
from crossmargin.model.margin import future_line
from crossmargin.units import SUB_BITS, WAD, from_wad

MASK96 = 2**SUB_BITS - 1


def _plain(value: Any) -> str:
    """A Decimal in plain notation (JSON carries amounts as exact strings)."""
    return f"{value:f}" if isinstance(value, Decimal) else str(value)


@dataclass(frozen=True)
class Covered:
    """One insolvent slice's loss and who paid it (USD)."""

    account: int
    block: int
    loss: Decimal
    fund: Decimal
    deleveraged: Decimal
    socialized: Decimal
    exact: bool  # loss == fund + deleveraged + socialized, to the wei


@dataclass
class Charge:
    """One side of one market charged by the deleveraging step."""

    instrument: int
    name: str
    longs: bool
    amount: Decimal  # USD charged to the side
    per_unit: Decimal  # USD per unit (the loss index's growth)
    open_interest: Decimal  # units on the side
    block: int
    payers: dict[int, Decimal] = field(default_factory=dict)  # account -> USD owed for it


@dataclass(frozen=True)
class StandingFill:
    """A standing bid executed by the keeper."""

    account: int
    bidder: int
    fraction: Decimal
    price: Decimal
    elapsed: int  # s from the auction's start to the execution's block
    due: int | None  # s from the start at which d(t) reached the bid (None: insolvent, due at once)

    @property
    def lag(self) -> int:
        """Seconds between the bid coming due and its execution."""
        return self.elapsed - (self.due or 0)


@dataclass
class Waterfall:
    covered: list[Covered] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    socialized_shares: dict[int, Decimal] = field(default_factory=dict)  # account -> USD
    standing: list[StandingFill] = field(default_factory=list)
    auctioned: list[int] = field(default_factory=list)  # accounts whose auction started, in order
    # the loss index of each charged market now (``Clearinghouse.loss_index``): USD per unit
    # its (longs, shorts) owe in all
    loss_index: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def sides(self) -> list[tuple[str, bool, int, Decimal, Decimal]]:
        """Each charged (market, side): name, longs, charges, USD charged in all, USD per unit
        in all (what its loss index grew by)."""
        out: dict[tuple[str, bool], list] = {}
        for c in self.charges:
            row = out.setdefault((c.name, c.longs), [0, Decimal(0), Decimal(0)])
            row[0] += 1
            row[1] += c.amount
            row[2] += c.per_unit
        return [(name, longs, n, amount, per_unit) for (name, longs), (n, amount, per_unit) in out.items()]

    def total(self, name: str) -> Decimal:
        return sum((getattr(c, name) for c in self.covered), Decimal(0))

    def by_account(self) -> dict[int, Covered]:
        """Each auctioned account's covered slices summed (block of the last one)."""
        out: dict[int, Covered] = {}
        for c in self.covered:
            was = out.get(c.account)
            if was is None:
                out[c.account] = c
            else:
                out[c.account] = Covered(
                    c.account,
                    c.block,
                    was.loss + c.loss,
                    was.fund + c.fund,
                    was.deleveraged + c.deleveraged,
                    was.socialized + c.socialized,
                    was.exact and c.exact,
                )
        return out

    def deleveraging_paid(self) -> dict[int, Decimal]:
        """USD each account owes for all the charges of its side."""
        out: dict[int, Decimal] = {}
        for charge in self.charges:
            for account, paid in charge.payers.items():
                out[account] = out.get(account, Decimal(0)) + paid
        return out

    def to_json(self, name) -> dict[str, Any]:
        return {
            "totals": {k: _plain(self.total(k)) for k in ("loss", "fund", "deleveraged", "socialized")},
            "slices": [
                {
                    "account": name(c.account),
                    "block": c.block,
                    "loss": _plain(c.loss),
                    "fund": _plain(c.fund),
                    "deleveraged": _plain(c.deleveraged),
                    "socialized": _plain(c.socialized),
                    "exact": c.exact,
                }
                for c in self.covered
            ],
            "charges": [
                {
                    "instrument": c.name,
                    "side": "longs" if c.longs else "shorts",
                    "amount": _plain(c.amount),
                    "per_unit": _plain(c.per_unit),
                    "open_interest": _plain(c.open_interest),
                    "payers": {name(a): _plain(v) for a, v in c.payers.items()},
                }
                for c in self.charges
            ],
            "loss_index": {
                _plain(i): {"longs": _plain(longs), "shorts": _plain(shorts)}
                for i, (longs, shorts) in self.loss_index.items()
            },
            "socialized_shares": {name(a): _plain(v) for a, v in self.socialized_shares.items() if v},
            "standing": [
                {
                    "account": name(s.account),
                    "bidder": name(s.bidder),
                    "fraction": _plain(s.fraction),
                    "price": _plain(s.price),
                    "elapsed": s.elapsed,
                    "due": s.due,
                }
                for s in self.standing
            ],
        }


def instrument_names(cm: Any) -> dict[int, tuple[str, int | None]]:
    """Perp instrument id -> (``"ETH perp"``, underlying id)."""
    return {pid: (f"{name} perp", cm.manifest.underlyings[name]) for name, pid in cm.manifest.perps.items()}


def _side_size(cm: Any, account: int, instrument: int, perps: dict, block: int) -> int:
    """The account's signed size (WAD) in a perp or future at ``block``."""
    clearing = cm.clearing.contract
    if instrument in perps:
        return int(clearing.perp_position(account, perps[instrument][1], block_id=block).size)
    for word in clearing.positions(account, block_id=block).futures:
        line = future_line(int(word))
        if line.instrument == instrument:
            return line.size
    return 0


def collect(cm: Any, first_block: int, accounts: list[int], names: dict[int, str] | None = None) -> Waterfall:
    """The waterfall since ``first_block``; ``accounts``: whose deleveraging payments and
    socialized shares to compute (the others are not read)."""
    liquidator, clearing, vault = cm.liquidator.contract, cm.clearing.contract, cm.vault.contract
    head = chain.blocks.head.number
    out = Waterfall()
    starts: dict[int, int] = {}
    for log in liquidator.AuctionStarted.range(first_block, head + 1):
        starts[log.account] = chain.blocks[log.block_number].timestamp
        out.auctioned.append(log.account)
    for log in liquidator.LossCovered.range(first_block, head + 1):
        parts = (log.loss, log.fund_payout, log.deleveraged, log.socialized)
        out.covered.append(
            Covered(
                log.account,
                log.block_number,
                *(from_wad(p) for p in parts),
                exact=log.loss == log.fund_payout + log.deleveraged + log.socialized,
            )
        )
    perps = instrument_names(cm)
    names = names or {}
    for log in clearing.Deleveraged.range(first_block, head + 1):
        label = perps[log.instrument][0] if log.instrument in perps else names.get(log.instrument, f"#{log.instrument}")
        charge = Charge(
            log.instrument,
            label,
            log.longs,
            from_wad(log.amount),
            from_wad(log.per_unit),
            from_wad(log.open_interest),
            log.block_number,
        )
        for account in accounts:
            size = _side_size(cm, account, log.instrument, perps, log.block_number - 1)
            if size != 0 and (size > 0) == log.longs:
                charge.payers[account] = from_wad(-(-abs(size) * log.per_unit // WAD))
        out.charges.append(charge)
        if log.instrument not in out.loss_index:
            word = int(clearing.loss_index(log.instrument))
            out.loss_index[log.instrument] = (from_wad(word & (2**128 - 1)), from_wad(word >> 128))
    for log in vault.LossSocialized.range(first_block, head + 1):
        before = int(vault.cash_index(block_id=log.block_number - 1))
        after = int(log.cash_index)
        for account in accounts:
            owner = "0x" + f"{account >> SUB_BITS:040x}"
            cash = int(vault.cash_of(owner, account & MASK96, block_id=log.block_number - 1))
            if cash > 0 and before > after:
                share = from_wad(cash - cash * after // before)
                out.socialized_shares[account] = out.socialized_shares.get(account, Decimal(0)) + share
    executed = list(liquidator.StandingBidExecuted.range(first_block, head + 1))
    if executed:
        bids = {(b.block_number, b.account, b.bidder): b for b in liquidator.Bid.range(first_block, head + 1)}
        params = None
        for log in executed:
            bid = bids.get((log.block_number, log.account, log.bidder))
            if bid is None:
                continue
            elapsed = chain.blocks[log.block_number].timestamp - starts.get(log.account, 0)
            due = None
            if bid.price > 0:  # solvent: due once d(t) reached the bid's multiplier
                params = params or AuctionParams.read(liquidator)
                m, f, c, mask = liquidator.standing_bid(log.bidder, block_id=log.block_number)
                due = due_elapsed(StandingBid(m, f, c, mask), params)
                assert multiplier(due, params) <= m
            out.standing.append(
                StandingFill(log.account, log.bidder, from_wad(bid.fraction), from_wad(bid.price), elapsed, due)
            )
    return out

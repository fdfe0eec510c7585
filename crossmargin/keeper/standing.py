"""Standing bids for the keeper (``Liquidator.register`` / ``execute``, SPECIFICATION.md
§ Liquidator): which bids are due on which running auction, their execution in the sweep
(before the keeper's own bids) and the one-line summary ``ape run status`` prints.

The keeper learns bidders from ``StandingBidSet`` / ``StandingBidCancelled`` (its state's
``standing`` set) and reads their bids on chain when it sweeps. A bid is due on a solvent
auction once d(t) at the next block is at or below its multiplier, on an insolvent one at
once, while it has fraction left in that auction (``standing_used``); the contract's
preflight settles the rest (underlyings, cash left, the buffer). An execution the contract
would skip (its buyer would end under initial margin: no tip) is not sent, and reported
``skipped``, as is one mined and skipped after all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ape import chain
from ape.exceptions import ContractLogicError

from crossmargin.clients.sender import Call
from crossmargin.keeper.reports import Action
from crossmargin.keeper.state import describe_account
from crossmargin.model.auction import StandingBid, multiplier
from crossmargin.units import WAD, from_wad

if TYPE_CHECKING:
    from crossmargin.keeper import Keeper
    from crossmargin.keeper.reports import LiquidationReport

# Reverts of an execution that only mean "not now" (reported as skipped, not rejected).
NOT_NOW = frozenset(
    {
        "liquidator: above standing multiplier",
        "liquidator: standing bid used",
        "liquidator: underlying not in bid",
        "liquidator: bidder in auction",
        "liquidator: bidder is liquidated",
        "liquidator: no standing bid",
        "liquidator: no auction",
        "liquidator: account above buffer",
    }
)


@dataclass(frozen=True)
class DueBid:
    """A standing bid the keeper would execute against a running auction."""

    account: int
    bidder: int
    bid: StandingBid
    used_fraction: int  # WAD, of this auction


def standing_bids(keeper: Keeper) -> dict[int, StandingBid]:
    """The registered standing bids of every bidder the keeper knows (cancelled ones dropped
    from its state)."""
    liquidator = keeper.cm.liquidator.contract
    out: dict[int, StandingBid] = {}
    for bidder in sorted(keeper.state.standing):
        m, f, cash, mask = keeper._read(lambda b=bidder: liquidator.standing_bid(b))
        if f == 0:
            keeper.state.standing.discard(bidder)
            continue
        out[bidder] = StandingBid(m, f, cash, mask)
    return out


def due_bids(
    keeper: Keeper,
    auctions: dict[int, tuple[str, int, int]],
    equities: dict[int, int],
    bids: dict[int, StandingBid] | None = None,
    at: int | None = None,
) -> list[DueBid]:
    """Standing bids due at time ``at`` (default: the next block's) on ``auctions``
    (account -> (keeper, started_at, insolvent_at)), ``equities`` the accounts' equity (WAD):
    the solvent ones by d(t), the insolvent ones at once; each with fraction left."""
    bids = standing_bids(keeper) if bids is None else bids
    if not bids:
        return []
    now = chain.pending_timestamp if at is None else at
    liquidator = keeper.cm.liquidator.contract
    out = []
    for account, (_keeper, started_at, _insolvent_at) in sorted(auctions.items()):
        equity = equities.get(account)
        if equity is None:
            continue
        d = multiplier(max(0, now - started_at), keeper.auction_params)
        for bidder, bid in bids.items():
            if bidder == account or (equity > 0 and d > bid.multiplier):
                continue
            used, _cash = keeper._read(lambda a=account, b=bidder: liquidator.standing_used(a, b))
            if used < bid.fraction:
                out.append(DueBid(account, bidder, bid, used))
    return out


def execute_standing(
    keeper: Keeper, report: LiquidationReport, auctions: dict[int, tuple[str, int, int]], equities: dict[int, int]
) -> None:
    """Executes every due standing bid (the sweep runs this before its own bids) and
    records one ``standing`` action each: ``sent`` (executed: the fraction and price in the
    detail), ``skipped`` (not due after all, or mined and skipped by the contract: its
    buyer would end under initial margin) or the sender's status."""
    liquidator = keeper.cm.liquidator.contract
    due = []
    for d in due_bids(keeper, auctions, equities):
        # a skip costs the keeper gas and pays no tip: one it would be is not sent
        if _would_skip(keeper, d):
            target = f"{describe_account(d.account)} by {describe_account(d.bidder)}"
            report.actions.append(Action("standing", target, "skipped", "bidder under margin (preflight)"))
        else:
            due.append(d)
    if not due:
        return
    stamp = int(time.time() * 1000)
    calls = [
        Call(
            liquidator.execute,
            (d.account, d.bidder),
            f"standing:{d.account:#x}:{d.bidder:#x}:{stamp}",
            f"standing bid of {describe_account(d.bidder)} on {describe_account(d.account)}",
        )
        for d in due
    ]
    targets = [f"{describe_account(d.account)} by {describe_account(d.bidder)}" for d in due]
    first = len(report.actions)
    results = {r.key: r for r in keeper._act(report, "standing", calls, targets)}
    key_of = {target: call.key for target, call in zip(targets, calls, strict=True)}
    for action in report.actions[first:]:
        result = results.get(key_of.get(action.target, ""))
        if result is None:  # in flight: already reported as skipped
            continue
        if action.status == "rejected" and result.reason in NOT_NOW:
            action.status = "skipped"
        elif action.status == "sent" and result.tx:
            action.detail = _outcome(keeper, result.tx)
            if action.detail.startswith("skipped"):
                action.status = "skipped"


def _would_skip(keeper: Keeper, due: DueBid) -> bool:
    """Whether the execution would be skipped now (``execute`` through ``eth_call`` returns
    a zero fraction); a revert is left to the sender's preflight, which reports it."""
    liquidator = keeper.cm.liquidator.contract
    sender = keeper.sender_account
    try:
        if sender is None:
            taken, _price = keeper._read(lambda: liquidator.execute.call(due.account, due.bidder))
        else:
            taken, _price = keeper._read(lambda: liquidator.execute.call(due.account, due.bidder, sender=sender))
    except ContractLogicError:
        return False
    return taken == 0


def _outcome(keeper: Keeper, tx: str) -> str:
    """``executed <fraction> at <price>`` or ``skipped: <reason>`` from a mined execution."""
    liquidator = keeper.cm.liquidator.contract
    receipt = keeper._read(lambda: chain.provider.get_receipt(tx))
    for event in receipt.decode_logs(liquidator.StandingBidSkipped):
        return f"skipped: {event.reason}"
    for event in receipt.decode_logs(liquidator.Bid):
        return f"executed {from_wad(event.fraction):.4f} at {from_wad(event.price):,.2f}"
    return "executed"


def summary(keeper: Keeper, account: int, started_at: int, bids: dict[int, StandingBid], now: int) -> str:
    """The standing bids on one auction for ``ape run status``: each as ``<bidder> <= d
    (<fraction left>)``, a ``*`` when d(t) has reached it; "" when none."""
    liquidator = keeper.cm.liquidator.contract
    d = multiplier(max(0, now - started_at), keeper.auction_params)
    parts = []
    for bidder, bid in sorted(bids.items(), key=lambda item: -item[1].multiplier):
        if bidder == account:
            continue
        used, _cash = keeper._read(lambda b=bidder: liquidator.standing_used(account, b))
        left = Decimal(bid.fraction - used) / WAD
        mark = "*" if d <= bid.multiplier else ""
        parts.append(f"{describe_account(bidder)} ≤{from_wad(bid.multiplier):.2f}{mark} ({left:.2f} left)")
    return ", ".join(parts)

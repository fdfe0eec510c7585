"""What each task returns: a small typed report of the actions it took (or, in a dry run,
would take), and the views ``ape run status`` shows (margins, auctions, distances)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class Action:
    """One chain action of a task.

    ``status``: ``sent`` (mined and succeeded), ``would-send`` (dry run), ``skipped`` (not
    needed: already done, in flight, or a :data:`NOTHING_TO_DO` revert), ``rejected``
    (preflight revert for another reason, not sent), ``reverted`` (mined, reverted) or
    ``error`` (node failure).
    """

    kind: str
    target: str
    status: str
    detail: str = ""
    tx: str | None = None
    gas_used: int | None = None


@dataclass
class TaskReport:
    """What one task did. ``errors`` holds task-level failures (after retries)."""

    task: str
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str | None = None, kind: str | None = None) -> int:
        return sum(
            1 for a in self.actions if (status is None or a.status == status) and (kind is None or a.kind == kind)
        )

    @property
    def ok(self) -> bool:
        return not self.errors and not any(a.status in ("reverted", "error") for a in self.actions)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[f"{a.kind} {a.status}"] = counts.get(f"{a.kind} {a.status}", 0) + 1
        parts = [f"{n} {k}" for k, n in sorted(counts.items())] or ["nothing to do"]
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): {self.errors[-1]}")
        return f"{self.task}: " + ", ".join(parts) + f" ({self.seconds:.2f} s)"

    def metrics(self) -> dict[str, int | float]:
        """Scalar metrics (Silverback records a handler's returned dict)."""
        out: dict[str, int | float] = {"seconds": round(self.seconds, 3), "errors": len(self.errors)}
        for status in ("sent", "would-send", "skipped", "rejected", "reverted", "error"):
            out[status.replace("-", "_")] = self.count(status)
        return out


@dataclass
class DiscoveryReport(TaskReport):
    from_block: int = 0
    to_block: int = -1
    new_accounts: list[int] = field(default_factory=list)
    known: int = 0

    def summary(self) -> str:
        base = f"discover: blocks {self.from_block}..{self.to_block}, {len(self.new_accounts)} new, {self.known} known"
        if self.errors:
            base += f", error: {self.errors[-1]}"
        return base + f" ({self.seconds:.2f} s)"

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "new_accounts": len(self.new_accounts), "known": self.known}


@dataclass(frozen=True)
class AccountHealth:
    """An account's margin as the engine values it now (WAD)."""

    account: int
    equity: int
    initial: int
    maintenance: int

    @property
    def health(self) -> int:
        """``equity − MM`` (WAD); negative: liquidatable."""
        return self.equity - self.maintenance

    @property
    def liquidatable(self) -> bool:
        return self.equity < self.maintenance

    @property
    def ratio(self) -> float:
        """``equity / MM`` (inf without a requirement): below 1 is liquidatable."""
        return math.inf if self.maintenance == 0 else self.equity / self.maintenance


@dataclass
class LiquidationReport(TaskReport):
    screened: int = 0
    # the oracle's reason when a feed is broken for every valuation (stale, out of bounds):
    # the sweep then screened with the liquidation reads the contracts use (SPECIFICATION.md,
    # liquidation reads), so auctions still start
    degraded: str | None = None
    due: list[int] = field(default_factory=list)
    auctions: int = 0
    nearest: list[AccountHealth] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: screen, and each step of the starts

    def summary(self) -> str:
        return (
            f"liquidate: {self.screened} screened, {len(self.due)} due, {self.auctions} in auction; "
            + super().summary().split(": ", 1)[1]
        )

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "screened": self.screened, "due": len(self.due), "auctions": self.auctions}


@dataclass
class SettlementReport(TaskReport):
    expired: int = 0  # expired options with possible holders
    waiting: list[int] = field(default_factory=list)  # expired, no oracle round after expiry yet


@dataclass
class RefreshReport(TaskReport):
    checked: int = 0
    stale: list[int] = field(default_factory=list)
    stored: int = 0  # arrays found current after the refresh

    def metrics(self) -> dict[str, int | float]:
        return {**super().metrics(), "checked": self.checked, "stale": len(self.stale), "stored": self.stored}


@dataclass
class PriceReport(TaskReport):
    prices: dict[str, Decimal] = field(default_factory=dict)  # feed key -> new answer (human)


@dataclass(frozen=True)
class AuctionStatus:
    """A live auction as a bidder sees it now."""

    account: int
    keeper: str  # starter still owed its tip
    started_at: int
    insolvent_at: int
    elapsed: int  # s since start
    multiplier: Decimal  # d(t) of a solvent bid
    ramp: Decimal | None  # insolvent: share of MM added to the payment so far (0..1)
    equity: Decimal
    maintenance: Decimal
    fraction: Decimal  # what a bid for everything would take (after the buffer cap)
    price: Decimal  # and its price (negative: the bidder is paid)


@dataclass(frozen=True)
class Distance:
    """The smallest spot move of one underlying (others fixed) that makes the account
    liquidatable, from the reference model; ``move`` None when none within the bound."""

    account: int
    underlying: str
    move: Decimal | None

"""The end-to-end crash demo behind ``ape run demo`` (README's main command).

Deploys the stack, funds the insurance fund, opens hedged and unhedged books, crashes ETH
in steps while the keeper (:mod:`crossmargin.keeper`) liquidates, then reports what the
auctions sold, at what discount, what the fund paid and what was socialized, and draws the
auction price curve and every account's health over the crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ape import chain

from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.model.auction import AuctionParams, multiplier
from crossmargin.protocol import Protocol
from crossmargin.units import WAD, account_id, from_wad

# ETH spot after each step of the crash (USD) and the implied vol the market moves to; then
# BTC gaps down 25% in one step, faster than any keeper, leaving an account insolvent.
CRASH = (3000, 2850, 2700, 2550, 2400, 2250, 2100, 1950)
CRASH_VOL = "0.9"
BTC_GAP = 42000
STEP_SECONDS = 600  # time between crash steps: running auctions fall along their curve


@dataclass
class Book:
    name: str
    owner: Any
    story: str

    @property
    def account(self) -> int:
        return account_id(str(self.owner), 0)


@dataclass
class AuctionRecord:
    account: int
    started_spot: int
    equity: Decimal
    maintenance: Decimal
    fraction: Decimal = Decimal(0)
    paid: Decimal = Decimal(0)  # by bidders (negative: paid to them)
    discount: Decimal = Decimal(0)  # bidders' gain at mark
    fund_payout: Decimal = Decimal(0)
    socialized: Decimal = Decimal(0)
    bids: list[tuple[int, Decimal]] = field(default_factory=list)  # (seconds after start, d)
    ended: bool = False


@dataclass
class DemoReport:
    books: list[Book]
    steps: list[str]  # label of each step
    health: dict[str, list[Decimal]]  # book name -> maintenance health after each step
    auctions: dict[int, AuctionRecord]
    fund_before: Decimal
    fund_after: Decimal
    socialized: Decimal
    final: dict[str, tuple[Decimal, Decimal, Decimal]]  # name -> (equity, MM, health)
    sweeps: int


def open_books(cm: Protocol, admin: Any, maker: Any, actors: dict[str, Any], lp: Any, bidder: Any) -> list[Book]:
    """Funds everyone and opens the books the demo crashes."""
    mint = cm.token
    for who, symbol, amount in (
        (maker, "USDC", "5000000"),
        (bidder, "USDC", "2000000"),
        (actors["alice"], "USDC", "8000"),
        (actors["bob"], "USDC", "15000"),
        (actors["carol"], "WETH", "10"),
        (actors["dave"], "USDC", "12000"),
        (actors["erin"], "USDC", "20000"),
        (actors["frank"], "USDC", "30000"),
    ):
        mint(symbol).mint(admin, who, amount)
        cm.vault.deposit(who, symbol, amount)
    mint("USDC").mint(admin, lp, "50000")
    cm.fund.deposit(lp, "50000")

    expiry = chain.pending_timestamp + 30 * 86_400
    call_3000 = cm.markets.list_option(admin, "ETH", True, 3000, expiry)
    call_3300 = cm.markets.list_option(admin, "ETH", True, 3300, expiry)
    put_3000 = cm.markets.list_option(admin, "ETH", False, 3000, expiry)
    put_2700 = cm.markets.list_option(admin, "ETH", False, 2700, expiry)
    perp = cm.markets.perp("ETH")
    trade = cm.trade
    # the maker takes the other side of everything (size is the maker's side)
    trade(maker, actors["alice"], call_3000, "-20", "200")  # alice: long 20 calls...
    trade(maker, actors["alice"], perp, "10", "3000")  # ...hedged with 10 short perps
    trade(maker, actors["bob"], perp, "-20", "3000")  # bob: 20 long perps, unhedged
    trade(maker, actors["carol"], call_3300, "10", "90")  # carol: covered call on 10 WETH
    trade(maker, actors["dave"], call_3000, "10", "200")  # dave: short straddle...
    trade(maker, actors["dave"], put_3000, "10", "200")
    trade(maker, actors["erin"], perp, "-30", "3000")  # erin: 30 long perps...
    trade(maker, actors["erin"], put_2700, "-30", "80")  # ...with 30 protective puts
    trade(maker, actors["frank"], cm.markets.perp("BTC"), "-2", "60000")  # frank: 2 long BTC perps
    return [
        Book("alice", actors["alice"], "delta-hedged long call"),
        Book("bob", actors["bob"], "unhedged long perp"),
        Book("carol", actors["carol"], "covered call (WETH)"),
        Book("dave", actors["dave"], "short straddle"),
        Book("erin", actors["erin"], "long perp + puts"),
        Book("frank", actors["frank"], "long BTC perp (gapped)"),
    ]


def run_demo(
    cm: Protocol,
    admin: Any,
    maker: Any,
    actors: dict[str, Any],
    lp: Any,
    bidder: Any,
    progress: Callable[[str], None] = lambda _s: None,
) -> DemoReport:
    first_block = chain.blocks.head.number + 1
    progress("opening books")
    books = open_books(cm, admin, maker, actors, lp, bidder)
    keeper = Keeper(cm, bidder, KeeperConfig(bid_threshold=Decimal("0.02"), start_block=first_block))
    fund_before = cm.fund.total_assets()
    health: dict[str, list[Decimal]] = {b.name: [] for b in books}
    steps: list[str] = []
    sweeps = 0
    moves = [(f"ETH {spot:,}", spot, 60000) for spot in CRASH] + [(f"BTC {BTC_GAP:,}", CRASH[-1], BTC_GAP)]
    for label, eth, btc in moves:
        progress(f"{label}: keeper sweep")
        chain.mine(timestamp=chain.pending_timestamp + STEP_SECONDS)
        cm.oracle.push(admin, "ETH/USD", str(eth))
        cm.oracle.push(admin, "ETH/IV", CRASH_VOL if eth < CRASH[0] else "0.6")
        cm.oracle.push(admin, "BTC/USD", str(btc))
        cm.oracle.push(admin, "BTC/IV", "0.5")
        cm.oracle.push(admin, "USDC/USD", "1")
        keeper.discover()
        keeper.liquidate()
        sweeps += 1
        steps.append(label)
        for b in books:
            health[b.name].append(cm.engine.margin(b.owner).maintenance_health)
    # after the crash: sweep until nothing is due and no auction runs
    for _ in range(10):
        report = keeper.liquidate()
        sweeps += 1
        if not report.due and report.auctions == 0:
            break
        chain.mine(timestamp=chain.pending_timestamp + STEP_SECONDS)
    auctions = collect_auctions(cm, first_block)
    final = {}
    for b in books:
        m = cm.engine.margin(b.owner)
        final[b.name] = (m.equity, m.maintenance, m.maintenance_health)
    return DemoReport(
        books=books,
        steps=steps,
        health=health,
        auctions=auctions,
        fund_before=fund_before,
        fund_after=cm.fund.total_assets(),
        socialized=from_wad(cm.vault.contract.socialized_loss()),
        final=final,
        sweeps=sweeps,
    )


def collect_auctions(cm: Protocol, first_block: int) -> dict[int, AuctionRecord]:
    """Every auction since ``first_block``, from the liquidator's events."""
    liquidator = cm.liquidator.contract
    head = chain.blocks.head.number
    records: dict[int, AuctionRecord] = {}
    starts: dict[int, int] = {}
    for log in liquidator.AuctionStarted.range(first_block, head + 1):
        spot = int(cm.oracle.contract.price(b"ETH/USD".ljust(32, b"\0"), block_id=log.block_number)) // WAD
        records[log.account] = AuctionRecord(log.account, spot, from_wad(log.equity), from_wad(log.maintenance))
        starts[log.account] = chain.blocks[log.block_number].timestamp
    for log in liquidator.Bid.range(first_block, head + 1):
        record = records[log.account]
        record.fraction += (1 - record.fraction) * from_wad(log.fraction)
        record.paid += from_wad(log.price)
        bought = from_wad(log.fraction) * from_wad(log.equity)
        record.discount += bought - from_wad(log.price)
        if log.price > 0:  # solvent bids sit on the d(t) curve
            elapsed = chain.blocks[log.block_number].timestamp - starts[log.account]
            record.bids.append((elapsed, from_wad(multiplier(elapsed))))
    for log in liquidator.LossCovered.range(first_block, head + 1):
        records[log.account].fund_payout += from_wad(log.fund_payout)
        records[log.account].socialized += from_wad(log.socialized)
    for log in liquidator.AuctionEnded.range(first_block, head + 1):
        records[log.account].ended = True
    return records


def draw_chart(report: DemoReport, path: Path, params: AuctionParams | None = None) -> Path:
    """Left: the auction price curve d(t) with the solvent bids on it; right: each account's
    maintenance health over the crash."""
    params = params or AuctionParams()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    horizon = params.first_phase + params.second_phase + 1800
    ts = list(range(0, horizon, 60))
    left.plot([t / 3600 for t in ts], [multiplier(t, params) / WAD for t in ts], label="d(t): price / equity")
    for record in report.auctions.values():
        if record.bids:
            left.scatter([t / 3600 for t, _ in record.bids], [float(d) for _, d in record.bids], zorder=3)
    left.set_xlabel("hours since the auction started")
    left.set_ylabel("price multiplier d(t)")
    left.set_title("Dutch auction price curve (dots: the demo's solvent bids)")
    left.grid(alpha=0.3)
    xs = list(range(len(report.steps)))
    for name, values in report.health.items():
        right.plot(xs, [float(v) for v in values], marker="o", label=name)
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(xs, report.steps, rotation=45, ha="right")
    right.set_xlabel("crash step (spot after it)")
    right.set_ylabel("equity − maintenance margin (USD)")
    right.set_title("account health over the crash (after each keeper sweep)")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

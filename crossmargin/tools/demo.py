"""The end-to-end crash demo behind ``ape run demo`` (README's main command).

Deploys the stack, funds the insurance fund with a small deposit, opens hedged and unhedged
books, registers two standing bids (``Liquidator.register``), crashes ETH in steps while the
keeper (:mod:`crossmargin.keeper`) sweeps every two minutes of chain time (starting auctions,
executing the standing bids as d(t) reaches them, bidding itself only at a deeper discount),
then gaps BTC down 30% in one step, faster than any keeper: a long BTC perp goes insolvent by
more than the fund holds, and the loss waterfall (SPECIFICATION.md, Loss waterfall) charges
the rest to the BTC perp's shorts, two ordinary accounts, through its loss index. Reports what
the auctions sold, at what discount and to whom, and who paid each insolvent slice (fund /
deleveraged / socialized, and which accounts the deleveraging charged), and draws the auction
price curve zoomed to the bids, every account's health after each step's sweeps, and the split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ape import chain

from crossmargin.clients.orders import Order, sign_order
from crossmargin.clients.protocol import Protocol
from crossmargin.keeper import Keeper, KeeperConfig, describe_account
from crossmargin.model.auction import AuctionParams, multiplier
from crossmargin.tools.losses import Waterfall, collect
from crossmargin.units import WAD, account_id, from_wad, to_units, to_wad

# ETH spot after each step of the crash (USD) and the implied vol the market moves to; then
# BTC gaps down 30% in one step, faster than any keeper, leaving an account insolvent.
CRASH = (3000, 2850, 2700, 2550, 2400, 2250, 2100, 1950)
CRASH_VOL = "0.9"
BTC_START = 60000
BTC_GAP = 42000
STEP_SECONDS = 600  # chain time between crash steps
SWEEP_SECONDS = 120  # chain time between keeper sweeps (five a step)
# The insurance fund's deposit: too small for the BTC gap, so the deficit reaches deleveraging.
FUND_DEPOSIT = "5000"
# The keeper's own bids wait for a 20% discount (d(t) <= 0.80): the standing bids come first.
KEEPER_THRESHOLD = Decimal("0.20")
# Standing bids: name -> (multiplier, fraction, max cash USD per auction, deposit USDC).
STANDING = {"grace": ("0.90", "0.5", "100000", "150000"), "heidi": ("0.85", "1", "200000", "300000")}


@dataclass
class Book:
    name: str
    owner: Any
    story: str
    sub: int = 0

    @property
    def account(self) -> int:
        return account_id(str(self.owner), self.sub)


@dataclass
class AuctionRecord:
    account: int
    block: int  # of its start
    started_spot: int
    equity: Decimal
    maintenance: Decimal
    fraction: Decimal = Decimal(0)
    paid: Decimal = Decimal(0)  # by bidders (negative: paid to them)
    discount: Decimal = Decimal(0)  # bidders' gain at mark
    fund_payout: Decimal = Decimal(0)
    deleveraged: Decimal = Decimal(0)
    socialized: Decimal = Decimal(0)
    # (seconds after start, d, bidder) of each solvent bid, on the d(t) curve
    bids: list[tuple[int, Decimal, int]] = field(default_factory=list)
    standing: list[int] = field(default_factory=list)  # bidders whose standing bids filled it
    insolvent: bool = False
    ended: bool = False


@dataclass
class DemoReport:
    books: list[Book]
    standing: dict[int, str]  # standing bidder account -> name
    steps: list[str]  # label of each health point
    health: dict[str, list[Decimal]]  # book name -> maintenance health after each step's sweeps
    auctions: list[AuctionRecord]
    waterfall: Waterfall
    fund_before: Decimal
    fund_after: Decimal
    final: dict[str, tuple[Decimal, Decimal, Decimal]]  # name -> (equity, MM, health)
    sweeps: int
    seconds: float = 0.0

    def name(self, account: int) -> str:
        for b in self.books:
            if b.account == account:
                return b.name
        return self.standing.get(account, f"{account >> 96:#x}/{account & (2**96 - 1)}")


def _deposit(cm: Protocol, admin: Any, who: Any, symbol: str, amount: str, sub: int = 0) -> None:
    """Mints ``amount`` of the mock ``symbol`` to ``who`` and deposits it into ``(who, sub)``."""
    token = cm.token(symbol).contract
    units = to_units(amount, int(token.decimals()))
    token.mint(who, units, sender=admin)
    token.approve(cm.vault.address, units, sender=who)
    cm.vault.contract.deposit(token.address, units, sub, who, sender=who)


def _trade(cm: Protocol, buyer: Book | Any, seller: Book | Any, instrument: int, size: str, price: str) -> None:
    """``buyer`` buys ``size`` of ``instrument`` from ``seller`` at ``price`` (USD): the
    seller signs the order, the buyer fills it."""
    b_owner, b_sub = (buyer.owner, buyer.sub) if isinstance(buyer, Book) else (buyer, 0)
    s_owner, s_sub = (seller.owner, seller.sub) if isinstance(seller, Book) else (seller, 0)
    exchange = cm.exchange.contract
    order = Order(
        s_owner.address,
        s_sub,
        instrument,
        False,
        to_wad(size),
        to_wad(price),
        chain.pending_timestamp + 3600,
        time.time_ns() // 1000,
    )
    signature = sign_order(s_owner, order, exchange.address, chain.chain_id)
    exchange.fill(order.as_tuple(), s_owner.address, signature, to_wad(size), b_sub, b_owner.address, sender=b_owner)


def open_books(
    cm: Protocol, admin: Any, maker: Any, actors: dict[str, Any], lp: Any, bidder: Any
) -> tuple[list[Book], dict[int, str]]:
    """Funds everyone, opens the books the demo crashes and registers the standing bids
    (the lp's subaccounts 1 and 2); returns the books and the standing bidders."""
    books = [
        Book("alice", actors["alice"], "delta-hedged long call"),
        Book("bob", actors["bob"], "unhedged long perp"),
        Book("carol", actors["carol"], "covered call (WETH)"),
        Book("dave", actors["dave"], "short straddle"),
        Book("erin", actors["erin"], "long perp + puts"),
        Book("frank", actors["frank"], "long BTC perp (gapped)"),
        Book("ivan", lp, "short BTC perp", 3),
        Book("judy", lp, "WBTC hedged by a short perp", 4),
    ]
    by = {b.name: b for b in books}
    for book, symbol, amount in (
        (Book("maker", maker, ""), "USDC", "5000000"),
        (Book("bidder", bidder, ""), "USDC", "2000000"),
        (by["alice"], "USDC", "8000"),
        (by["bob"], "USDC", "15000"),
        (by["carol"], "WETH", "10"),
        (by["dave"], "USDC", "12000"),
        (by["erin"], "USDC", "20000"),
        (by["frank"], "USDC", "40000"),
        (by["ivan"], "USDC", "30000"),
        (by["judy"], "WBTC", "1.5"),
    ):
        _deposit(cm, admin, book.owner, symbol, amount, book.sub)
    cm.token("USDC").contract.mint(lp, to_units(FUND_DEPOSIT, 6), sender=admin)
    cm.fund.deposit(lp, FUND_DEPOSIT)

    expiry = chain.pending_timestamp + 30 * 86_400
    call_3000 = cm.markets.list_option(admin, "ETH", True, 3000, expiry)
    call_3300 = cm.markets.list_option(admin, "ETH", True, 3300, expiry)
    put_3000 = cm.markets.list_option(admin, "ETH", False, 3000, expiry)
    put_2700 = cm.markets.list_option(admin, "ETH", False, 2700, expiry)
    perp, btc = cm.markets.perp("ETH"), cm.markets.perp("BTC")
    _trade(cm, by["alice"], maker, call_3000, "20", "200")  # alice: long 20 calls...
    _trade(cm, maker, by["alice"], perp, "10", "3000")  # ...hedged with 10 short perps
    _trade(cm, by["bob"], maker, perp, "20", "3000")  # bob: 20 long perps, unhedged
    _trade(cm, maker, by["carol"], call_3300, "10", "90")  # carol: covered call on 10 WETH
    _trade(cm, maker, by["dave"], call_3000, "10", "200")  # dave: short straddle...
    _trade(cm, maker, by["dave"], put_3000, "10", "200")
    _trade(cm, by["erin"], maker, perp, "30", "3000")  # erin: 30 long perps...
    _trade(cm, by["erin"], maker, put_2700, "30", "80")  # ...with 30 protective puts
    # frank: 3 long BTC perps, sold by two ordinary accounts (the side deleveraging charges)
    _trade(cm, by["frank"], by["ivan"], btc, "1.5", str(BTC_START))
    _trade(cm, by["frank"], by["judy"], btc, "1.5", str(BTC_START))

    standing: dict[int, str] = {}
    for sub, (name, (m, f, cash, deposit)) in enumerate(STANDING.items(), start=1):
        _deposit(cm, admin, lp, "USDC", deposit, sub)
        cm.liquidator.contract.register(sub, to_wad(m), to_wad(f), to_wad(cash), 0, sender=lp)
        standing[account_id(str(lp), sub)] = name
    return books, standing


def run_demo(
    cm: Protocol,
    admin: Any,
    maker: Any,
    actors: dict[str, Any],
    lp: Any,
    bidder: Any,
    progress: Callable[[str], None] = lambda _s: None,
) -> DemoReport:
    began = time.monotonic()
    first_block = chain.blocks.head.number + 1
    progress("opening the books and registering the standing bids")
    books, standing = open_books(cm, admin, maker, actors, lp, bidder)
    keeper = Keeper(cm, bidder, KeeperConfig(bid_threshold=KEEPER_THRESHOLD, start_block=first_block))
    engine = cm.engine.contract
    fund_before = cm.fund.total_assets()
    health: dict[str, list[Decimal]] = {b.name: [] for b in books}
    steps: list[str] = []
    sweeps = 0
    names = {b.account: b.name for b in books} | standing

    def push(eth: int, btc: int) -> None:
        cm.oracle.push(admin, "ETH/USD", str(eth))
        cm.oracle.push(admin, "ETH/IV", CRASH_VOL if eth < CRASH[0] else "0.6")
        cm.oracle.push(admin, "BTC/USD", str(btc))
        cm.oracle.push(admin, "BTC/IV", "0.5")
        cm.oracle.push(admin, "USDC/USD", "1")

    def sweep(label: str) -> Any:
        nonlocal sweeps
        keeper.discover()
        report = keeper.liquidate()
        sweeps += 1
        done = [
            f"{a.kind} {a.target.split(' by ')[0]}"
            for a in report.actions
            if a.status == "sent" and a.kind in ("start", "standing", "bid", "terminate", "mark_insolvent")
        ]
        if done:
            progress(f"{label}: " + ", ".join(_named(line, names) for line in done))
        return report

    def record(label: str) -> None:
        steps.append(label)
        for b in books:
            m = engine.margin(b.account)
            health[b.name].append(from_wad(m.equity - m.maintenance))

    moves = [(f"ETH {spot:,}", spot, BTC_START) for spot in CRASH] + [(f"BTC {BTC_GAP:,}", CRASH[-1], BTC_GAP)]
    eth = btc = 0
    for label, eth, btc in moves:
        progress(f"{label}: keeper sweeps")
        chain.mine(timestamp=chain.pending_timestamp + SWEEP_SECONDS)
        push(eth, btc)
        for _ in range(STEP_SECONDS // SWEEP_SECONDS):
            sweep(label)
            chain.mine(timestamp=chain.pending_timestamp + SWEEP_SECONDS)
        record(label)  # after the step's sweeps: its bids included
    # after the crash: sweep until nothing is due and no auction runs
    pushed = chain.pending_timestamp
    for _ in range(30):
        report = sweep("after the crash")
        if not report.due and report.auctions == 0:
            break
        chain.mine(timestamp=chain.pending_timestamp + SWEEP_SECONDS)
        if chain.pending_timestamp - pushed >= STEP_SECONDS:  # keep the feeds fresh
            pushed = chain.pending_timestamp
            push(eth, btc)
    record("after")
    progress("reading the auctions and the loss waterfall back from events")
    ids = [b.account for b in books] + list(standing) + [keeper.bidder, account_id(str(maker), 0)]
    waterfall = collect(cm, first_block, ids)
    auctions = collect_auctions(cm, first_block, waterfall)
    final = {b.name: (*(from_wad(v) for v in _margin(engine, b.account)),) for b in books}
    final = {n: (e, mm, e - mm) for n, (e, mm) in final.items()}
    return DemoReport(
        books=books,
        standing=standing,
        steps=steps,
        health=health,
        auctions=auctions,
        waterfall=waterfall,
        fund_before=fund_before,
        fund_after=cm.fund.total_assets(),
        final=final,
        sweeps=sweeps,
        seconds=time.monotonic() - began,
    )


def _margin(engine: Any, account: int) -> tuple[int, int]:
    m = engine.margin(account)
    return m.equity, m.maintenance


def _named(line: str, names: dict[int, str]) -> str:
    """A keeper action (``start <account>``) with the account by its book's name."""
    kind, _, target = line.partition(" ")
    for account, name in names.items():
        if target == describe_account(account):
            return f"{kind} {name}"
    return line


def collect_auctions(cm: Protocol, first_block: int, waterfall: Waterfall) -> list[AuctionRecord]:
    """Every auction since ``first_block`` (an account may be auctioned more than once), from
    the liquidator's events, with its waterfall split."""
    liquidator = cm.liquidator.contract
    head = chain.blocks.head.number
    records: list[AuctionRecord] = []
    starts: dict[int, int] = {}

    def of(account: int, block: int) -> AuctionRecord:
        return max((r for r in records if r.account == account and r.block <= block), key=lambda r: r.block)

    for log in liquidator.AuctionStarted.range(first_block, head + 1):
        spot = int(cm.oracle.contract.price(b"ETH/USD".ljust(32, b"\0"), block_id=log.block_number)) // WAD
        records.append(
            AuctionRecord(log.account, log.block_number, spot, from_wad(log.equity), from_wad(log.maintenance))
        )
        starts[log.block_number] = chain.blocks[log.block_number].timestamp
    standing = {(s.account, s.bidder) for s in waterfall.standing}
    executed = {
        (log.block_number, log.account, log.bidder)
        for log in liquidator.StandingBidExecuted.range(first_block, head + 1)
    }
    for log in liquidator.Bid.range(first_block, head + 1):
        record = of(log.account, log.block_number)
        record.fraction += (1 - record.fraction) * from_wad(log.fraction)
        record.paid += from_wad(log.price)
        bought = from_wad(log.fraction) * from_wad(log.equity)
        record.discount += bought - from_wad(log.price)
        if (log.block_number, log.account, log.bidder) in executed and (log.account, log.bidder) in standing:
            record.standing.append(log.bidder)
        if log.price > 0:  # solvent bids sit on the d(t) curve
            elapsed = chain.blocks[log.block_number].timestamp - starts[record.block]
            record.bids.append((elapsed, from_wad(multiplier(elapsed)), log.bidder))
        else:
            record.insolvent = True
    for c in waterfall.covered:
        record = of(c.account, c.block)
        record.fund_payout += c.fund
        record.deleveraged += c.deleveraged
        record.socialized += c.socialized
    for log in liquidator.AuctionEnded.range(first_block, head + 1):
        of(log.account, log.block_number).ended = True
    return records


def draw_chart(report: DemoReport, path: Path, params: AuctionParams | None = None) -> Path:
    """Left: the auction price curve d(t), zoomed to the bids, with the solvent bids on it
    (stars: standing bids) and the standing bids' multipliers; middle: each account's
    maintenance health after each step's keeper sweeps; right: who paid each insolvent
    auction's loss (insurance fund, deleveraging, socialization)."""
    params = params or AuctionParams()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(19, 5.5), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    last = max((t for r in report.auctions for t, _d, _b in r.bids), default=params.first_phase)
    horizon = max(params.first_phase, int(last * 1.25) + 60)
    ts = list(range(0, horizon + 1, 10))
    left.plot([t / 60 for t in ts], [multiplier(t, params) / WAD for t in ts], color="black", label="d(t)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, name in enumerate(report.standing.values()):
        m = STANDING.get(name, (None,))[0]
        if m is not None:
            left.axhline(
                float(m), color=colors[k + 2], linestyle="--", linewidth=0.8, label=f"{name}'s standing bid ≤ {m}"
            )
    standing_pts = [(t, d) for r in report.auctions for t, d, b in r.bids if b in report.standing]
    keeper_pts = [(t, d) for r in report.auctions for t, d, b in r.bids if b not in report.standing]
    if standing_pts:
        left.scatter(
            [t / 60 for t, _ in standing_pts],
            [float(d) for _, d in standing_pts],
            marker="*",
            s=120,
            zorder=3,
            label=f"standing bids executed by the keeper ({len(standing_pts)})",
        )
    if keeper_pts:
        left.scatter(
            [t / 60 for t, _ in keeper_pts],
            [float(d) for _, d in keeper_pts],
            zorder=3,
            label=f"the keeper's own bids ({len(keeper_pts)})",
        )
    left.set_xlim(0, horizon / 60)
    left.set_xlabel("minutes since the auction started")
    left.set_ylabel("price multiplier d(t)")
    left.set_title("Dutch auction price curve and the solvent bids")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    xs = list(range(len(report.steps)))
    for name, values in report.health.items():
        middle.plot(xs, [float(v) for v in values], marker="o", label=name)
    middle.axhline(0, color="black", linewidth=0.8)
    middle.set_yscale("symlog", linthresh=1000)  # the hedged books sit far above the others
    middle.set_xticks(xs, report.steps, rotation=45, ha="right")
    middle.set_xlabel("crash step (after its keeper sweeps)")
    middle.set_ylabel("equity − maintenance margin (USD)")
    middle.set_title("account health over the crash")
    middle.legend(fontsize=8, ncol=2)
    middle.grid(alpha=0.3)

    insolvent = [r for r in report.auctions if r.fund_payout or r.deleveraged or r.socialized]
    labels = [report.name(r.account) for r in insolvent] + ["total"]
    w = report.waterfall
    fund = [float(r.fund_payout) for r in insolvent] + [float(w.total("fund"))]
    delev = [float(r.deleveraged) for r in insolvent] + [float(w.total("deleveraged"))]
    social = [float(r.socialized) for r in insolvent] + [float(w.total("socialized"))]
    right.bar(labels, fund, label="insurance fund")
    right.bar(labels, delev, bottom=fund, label="deleveraged (the other side)")
    right.bar(labels, social, bottom=[a + b for a, b in zip(fund, delev, strict=True)], label="socialized")
    payers = ", ".join(f"{report.name(a)} {v:,.0f}" for a, v in w.deleveraging_paid().items())
    right.set_title(
        "who paid the insolvent auctions' losses" + (f"\n(deleveraging charged {payers})" if payers else "")
    )
    right.set_ylabel("USD")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

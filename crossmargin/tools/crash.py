"""The crash run behind ``ape run crash``: one oracle round of a market crash on a mixed book,
and who pays for it through the loss waterfall (SPECIFICATION.md, Loss waterfall; issue 15).

The book (:func:`plan_book`): ``accounts`` subaccounts of one owner on ETH and BTC, built from
pairs of accounts that take each other's other side, so every market's both sides are held by
ordinary accounts: leveraged perp longs against shorts (ETH and BTC), dated futures (ETH and
BTC), delta-hedged short puts against delta-hedged long puts, delta-hedged long calls against
calls written over a long perp; plus passive USDC-only depositors and a few standing bidders
(``Liquidator.register``) with deep vault cash. Leverage is drawn at random (``seed``) so the
crash leaves a mix of healthy, liquidatable and insolvent accounts. The set-up is sent through
the keeper's pipelined :class:`crossmargin.clients.sender.TxSender` (a batch per leg), so a
50-account book takes well under a minute.

The crash (:func:`run_crash`): the insurance fund holds ``fund`` USDC; one oracle round moves
ETH by ``eth_move``, BTC by ``btc_move`` and both implied vols by ``vol_factor``; then the
keeper (:class:`crossmargin.keeper.Keeper`) sweeps every ``step_seconds`` of chain time,
starting auctions, executing the standing bids as they come due, and bidding itself at a
discount of at least ``keeper_threshold``, until nothing is liquidatable and no auction runs.

The report (:class:`CrashReport`): accounts auctioned, the losses of their insolvent slices and
their split (fund / deleveraged / socialized, from the events; :mod:`crossmargin.tools.losses`),
which accounts paid the deleveraging, and what the passive depositors and the accounts that
stayed healthy lost to socialization.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ape import chain

from crossmargin.clients.orders import Order, sign_order
from crossmargin.clients.sender import Call, TxSender
from crossmargin.keeper import Keeper, KeeperConfig
from crossmargin.tools.losses import Waterfall, collect
from crossmargin.units import SUB_BITS, WAD, from_wad, to_wad

SPOT = {"ETH": 3000, "BTC": 60000}
VOL = {"ETH": 0.6, "BTC": 0.5}
DAYS = 30  # expiry of the options and futures the book trades
# Pair templates, in the order the book cycles through them (linear ones first, so a small
# book is mostly perps and futures).
PAIRS = ("eth_perp", "btc_perp", "eth_future", "call_writer", "eth_perp", "btc_future", "put_writer", "btc_perp")
# Standing bids: (multiplier, fraction, max cash USD, ETH only)
STANDING = ((Decimal("0.90"), Decimal("0.5"), 60_000, False), (Decimal("0.85"), Decimal(1), 150_000, False))
STANDING += ((Decimal("0.80"), Decimal(1), 80_000, True),)


@dataclass(frozen=True)
class CrashConfig:
    """The crash run's settings (the command's options).

    Attributes:
        accounts: Subaccounts in the book (at least 8): passive depositors, standing bidders
            and pairs of traders.
        fund: USDC the insurance fund holds before the crash.
        eth_move, btc_move: Spot moves of the one oracle round (fractions, −0.35 = −35%).
        vol_factor: Factor on both implied vols.
        seed: Random seed of the book's sizes and leverage.
        step_seconds: Chain time between keeper sweeps.
        keeper_threshold: The keeper's own bid threshold (discount); above the standing
            bids' so they fill first.
        max_sweeps: Sweeps before giving up.
    """

    accounts: int = 50
    fund: Decimal = Decimal(20_000)
    eth_move: Decimal = Decimal("-0.35")
    btc_move: Decimal = Decimal("-0.25")
    vol_factor: Decimal = Decimal(2)
    seed: int = 15
    step_seconds: int = 120
    keeper_threshold: Decimal = Decimal("0.20")
    max_sweeps: int = 60


@dataclass
class BookAccount:
    sub: int
    role: str
    deposit: Decimal  # USDC deposited (after the trades: net of what it withdrew)
    # equity kept after the trades, in multiples of the account's initial margin (None: keeps
    # its deposit): the rest is withdrawn, so each trader runs at a chosen leverage
    headroom: float | None = None


@dataclass(frozen=True)
class Leg:
    """``buyer`` buys ``size`` of ``what`` from ``seller`` at ``price`` (USD)."""

    batch: int
    buyer: int  # subaccount
    seller: int
    what: str  # "ETH perp", "BTC future", "ETH put", "ETH call"
    size: Decimal
    price: Decimal


@dataclass
class Book:
    accounts: dict[int, BookAccount]
    legs: list[Leg]
    standing: dict[int, tuple[Decimal, Decimal, int, bool]]  # sub -> standing bid
    strikes: dict[str, Decimal]  # "ETH put"/"ETH call" -> strike

    def subs(self, role_prefix: str) -> list[int]:
        return [s for s, a in self.accounts.items() if a.role.startswith(role_prefix)]


@dataclass
class CrashReport:
    config: CrashConfig
    book: Book
    owner: str
    waterfall: Waterfall
    auctioned: list[int]  # subaccounts
    final_cash: dict[int, Decimal]  # sub -> vault cash after the run
    fund_before: Decimal
    fund_after: Decimal
    sweeps: int
    seconds: dict[str, float] = field(default_factory=dict)
    liquidatable_left: int = 0

    def name(self, account: int) -> str:
        sub = account & (2**SUB_BITS - 1)
        if account >> SUB_BITS == int(self.owner, 16) and sub in self.book.accounts:
            return f"#{sub} {self.book.accounts[sub].role}"
        return f"{account >> SUB_BITS:#x}/{sub}"

    def sub_of(self, account: int) -> int | None:
        return account & (2**SUB_BITS - 1) if account >> SUB_BITS == int(self.owner, 16) else None

    @property
    def passive_loss(self) -> Decimal:
        return sum((self.book.accounts[s].deposit - self.final_cash[s] for s in self.book.subs("passive")), Decimal(0))

    @property
    def healthy_socialized(self) -> Decimal:
        """Socialized losses paid by accounts never auctioned (passive ones included)."""
        auctioned = set(self.waterfall.auctioned)
        return sum((v for a, v in self.waterfall.socialized_shares.items() if a not in auctioned), Decimal(0))

    def summary(self) -> dict[str, Any]:
        w = self.waterfall
        deleveraging = w.deleveraging_paid()
        return {
            "accounts": len(self.book.accounts),
            "passive_depositors": len(self.book.subs("passive")),
            "standing_bidders": len(self.book.standing),
            "accounts_auctioned": len(set(w.auctioned)),
            "insolvent_accounts": len(w.by_account()),
            "losses": w.total("loss"),
            "fund_paid": w.total("fund"),
            "deleveraged": w.total("deleveraged"),
            "socialized": w.total("socialized"),
            "every_slice_exact": all(c.exact for c in w.covered),
            "accounts_charged_by_deleveraging": len(deleveraging),
            "socialized_from_healthy_accounts": self.healthy_socialized,
            "passive_deposits": sum((self.book.accounts[s].deposit for s in self.book.subs("passive")), Decimal(0)),
            "passive_depositors_lost": self.passive_loss,
            "standing_bids_executed": len(w.standing),
            "standing_bid_max_lag_s": max((s.lag for s in w.standing), default=0),
            "fund_before": self.fund_before,
            "fund_after": self.fund_after,
            "keeper_sweeps": self.sweeps,
            "liquidatable_left": self.liquidatable_left,
        }


# ---------------------------------------------------------------- the book


def _bs(spot: float, strike: float, vol: float, days: float, call: bool) -> tuple[float, float]:
    """Black-Scholes price and delta (rate 0)."""
    t = days / 365
    d1 = (math.log(spot / strike) + vol * vol * t / 2) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    n = lambda x: (1 + math.erf(x / math.sqrt(2))) / 2  # noqa: E731
    if call:
        return spot * n(d1) - strike * n(d2), n(d1)
    return strike * n(-d2) - spot * n(-d1), n(d1) - 1


def _usd(x: float, step: int = 1) -> Decimal:
    return Decimal(int(round(x / step)) * step)


def plan_book(config: CrashConfig) -> Book:
    """The accounts (subaccounts 1..accounts), their deposits and the legs they trade."""
    if config.accounts < 8:
        raise ValueError("the crash book needs at least 8 accounts")
    rng = random.Random(config.seed)
    accounts: dict[int, BookAccount] = {}
    legs: list[Leg] = []
    standing: dict[int, tuple[Decimal, Decimal, int, bool]] = {}
    next_sub = 1

    def add(role: str, deposit: float, headroom: tuple[float, float] | None = None) -> int:
        nonlocal next_sub
        sub = next_sub
        next_sub += 1
        k = None if headroom is None else round(rng.uniform(*headroom), 2)
        accounts[sub] = BookAccount(sub, role, _usd(deposit, 100), k)
        return sub

    passive = max(2, config.accounts // 8)
    bidders = min(len(STANDING), max(1, config.accounts // 16))
    for _ in range(passive):
        add("passive USDC", rng.choice((5_000, 10_000, 20_000, 30_000)))
    for k in range(bidders):
        sub = add("standing bidder", 400_000)
        standing[sub] = STANDING[k]
    put_strike = _usd(SPOT["ETH"] * 0.9, 100)
    call_strike = _usd(SPOT["ETH"] * 1.1, 100)
    put, put_delta = _bs(SPOT["ETH"], float(put_strike), VOL["ETH"], DAYS, False)
    call, call_delta = _bs(SPOT["ETH"], float(call_strike), VOL["ETH"], DAYS, True)
    k = 0
    while config.accounts - len(accounts) >= 2:
        kind = PAIRS[k % len(PAIRS)]
        k += 1
        if kind in ("eth_perp", "btc_perp", "eth_future", "btc_future"):
            u = "ETH" if kind.startswith("eth") else "BTC"
            what = f"{u} {'perp' if kind.endswith('perp') else 'future'}"
            size = Decimal(rng.randint(20, 80)) if u == "ETH" else Decimal(rng.randint(4, 20)) / 4
            notional = float(size) * SPOT[u]
            # longs at 1.02-2.4x IM (ETH; BTC, that falls less, 1.02-1.8x): the crash leaves
            # some insolvent, some liquidatable, some healthy; shorts gain
            long_sub = add(f"long {what}", notional * 0.6, (1.02, 2.4 if u == "ETH" else 1.8))
            short_sub = add(f"short {what}", notional * 0.6, (1.3, 3.0))
            legs.append(Leg(0, long_sub, short_sub, what, size, Decimal(SPOT[u])))
        elif kind == "put_writer":
            # a delta-hedged short put (short perp) against a delta-hedged long put (long perp)
            q = Decimal(rng.randint(40, 120))
            hedge = (q * Decimal(str(round(-put_delta, 2)))).quantize(Decimal("0.1"))
            writer = add("short puts + short perp", float(q) * SPOT["ETH"] * 0.4, (1.02, 1.5))
            buyer = add("long puts + long perp", float(q) * SPOT["ETH"] * 0.4, (1.3, 3.0))
            legs.append(Leg(0, buyer, writer, "ETH perp", hedge, Decimal(SPOT["ETH"])))
            legs.append(Leg(1, buyer, writer, "ETH put", q, _usd(put)))
        else:  # call_writer
            # calls written over a long perp (delta-hedged short calls, a linear loss in a crash)
            # against delta-hedged long calls (short perp)
            q = Decimal(rng.randint(40, 120))
            hedge = (q * Decimal(str(round(call_delta, 2)))).quantize(Decimal("0.1"))
            writer = add("short calls + long perp", float(q) * SPOT["ETH"] * 0.4, (1.02, 1.8))
            buyer = add("long calls + short perp", float(q) * SPOT["ETH"] * 0.4, (1.3, 3.0))
            legs.append(Leg(0, writer, buyer, "ETH perp", hedge, Decimal(SPOT["ETH"])))
            legs.append(Leg(1, buyer, writer, "ETH call", q, _usd(call)))
    while len(accounts) < config.accounts:
        add("passive USDC", rng.choice((5_000, 10_000, 20_000)))
    return Book(accounts, legs, standing, {"ETH put": put_strike, "ETH call": call_strike})


# ---------------------------------------------------------------- set-up and run


def _send(sender: TxSender, calls: list[Call], what: str, log: Callable[[str], None]) -> None:
    began = time.monotonic()
    results = sender.execute(calls)
    failed = [r for r in results if r.status != "sent"]
    if failed:
        raise RuntimeError(f"{what}: {len(failed)} of {len(calls)} failed, first: {failed[0].label} {failed[0].reason}")
    log(f"{what}: {len(results)} transactions in {time.monotonic() - began:.1f} s")


def set_up(
    cm: Any, admin: Any, owner: Any, keeper_account: Any, lp: Any, book: Book, config: CrashConfig, log
) -> dict[str, int]:
    """Lists the instruments, funds the fund, the keeper and every account, trades the legs
    and registers the standing bids; returns the instrument ids by name."""
    expiry = chain.pending_timestamp + DAYS * 86_400
    instruments = {f"{u} perp": cm.markets.perp(u) for u in ("ETH", "BTC")}
    instruments["ETH future"] = cm.markets.list_future(admin, "ETH", expiry)
    instruments["BTC future"] = cm.markets.list_future(admin, "BTC", expiry)
    instruments["ETH put"] = cm.markets.list_option(admin, "ETH", False, book.strikes["ETH put"], expiry)
    instruments["ETH call"] = cm.markets.list_option(admin, "ETH", True, book.strikes["ETH call"], expiry)
    log("listed the dated futures and options")

    usdc = cm.token("USDC")
    vault = cm.vault.contract
    keeper_cash = Decimal(2_000_000)
    total = sum((a.deposit for a in book.accounts.values()), Decimal(0)) + keeper_cash
    usdc.mint(admin, admin, total)
    cm.vault.approve(admin, "USDC")
    usdc.mint(admin, lp, config.fund)
    cm.fund.deposit(lp, config.fund)
    deposits = [
        Call(vault.deposit, (usdc.address, usdc.units(a.deposit), a.sub, owner.address), f"deposit:{a.sub}")
        for a in book.accounts.values()
    ]
    deposits.append(Call(vault.deposit, (usdc.address, usdc.units(keeper_cash), 0, keeper_account.address), "keeper"))
    _send(TxSender(admin), deposits, "deposits", log)

    exchange = cm.exchange.contract
    sender = TxSender(owner)
    deadline = chain.pending_timestamp + 86_400
    nonce = time.time_ns() // 1000
    for batch in sorted({leg.batch for leg in book.legs}):
        calls = []
        for leg in (leg for leg in book.legs if leg.batch == batch):
            nonce += 1
            # the seller signs (maker), the buyer fills (taker): both subaccounts of `owner`
            order = Order(
                owner.address,
                leg.seller,
                instruments[leg.what],
                False,
                to_wad(leg.size),
                to_wad(leg.price),
                deadline,
                nonce,
            )
            signature = sign_order(owner, order, exchange.address, chain.chain_id)
            calls.append(
                Call(
                    exchange.fill,
                    (order.as_tuple(), owner.address, signature, to_wad(leg.size), leg.buyer, owner.address),
                    f"fill:{nonce}",
                    f"#{leg.buyer} buys {leg.size} {leg.what} from #{leg.seller}",
                )
            )
        _send(sender, calls, f"trades, leg {batch + 1}", log)
    # each trader withdraws down to its headroom over initial margin
    engine = cm.engine.contract
    withdrawals = []
    own = int(owner.address, 16) << SUB_BITS
    for a in book.accounts.values():
        if a.headroom is None:
            continue
        m = engine.margin(own | a.sub)
        cash = int(vault.cash_of(owner.address, a.sub))
        free = min(m.equity - int(m.initial * Decimal(str(a.headroom))), cash)
        units = max(free, 0) // 10**12
        if units > 0:
            withdrawals.append(
                Call(vault.withdraw, (usdc.address, units, a.sub, owner.address), f"withdraw:{a.sub}", f"#{a.sub}")
            )
            a.deposit -= Decimal(units) / 10**6
    _send(sender, withdrawals, "withdrawals to each trader's leverage", log)
    liquidator = cm.liquidator.contract
    eth_only = 1 << cm.manifest.underlyings["ETH"]
    registers = [
        Call(
            liquidator.register,
            (sub, to_wad(m), to_wad(f), to_wad(cash), eth_only if eth else 0),
            f"register:{sub}",
        )
        for sub, (m, f, cash, eth) in book.standing.items()
    ]
    if registers:
        _send(sender, registers, "standing bids", log)
    return instruments


def crash_prices(config: CrashConfig) -> dict[str, str]:
    """The one oracle round of the crash (feed key -> answer)."""
    return {
        "ETH/USD": str(Decimal(SPOT["ETH"]) * (1 + config.eth_move)),
        "BTC/USD": str(Decimal(SPOT["BTC"]) * (1 + config.btc_move)),
        "ETH/IV": str(Decimal(str(VOL["ETH"])) * config.vol_factor),
        "BTC/IV": str(Decimal(str(VOL["BTC"])) * config.vol_factor),
        "USDC/USD": "1",
    }


def run_crash(
    cm: Any,
    admin: Any,
    owner: Any,
    keeper_account: Any,
    lp: Any,
    config: CrashConfig | None = None,
    log: Callable[[str], None] = lambda _s: None,
) -> CrashReport:
    """Builds the book, crashes it and sweeps with the keeper until nothing is liquidatable."""
    config = config or CrashConfig()
    seconds: dict[str, float] = {}
    began = time.monotonic()
    book = plan_book(config)
    first_block = chain.blocks.head.number + 1
    instruments = set_up(cm, admin, owner, keeper_account, lp, book, config, log)
    seconds["set-up"] = time.monotonic() - began

    began = time.monotonic()
    keeper = Keeper(
        cm, keeper_account, KeeperConfig(bid_threshold=config.keeper_threshold, start_block=first_block, workers=2)
    )
    fund_before = cm.fund.total_assets()
    prices = crash_prices(config)
    pushed_at = chain.pending_timestamp
    for key, answer in prices.items():
        cm.oracle.push(admin, key, answer)
    log(
        f"crash: ETH {prices['ETH/USD']}, BTC {prices['BTC/USD']}, "
        f"IV {prices['ETH/IV']} / {prices['BTC/IV']}; fund {fund_before:,.2f} USDC"
    )
    sweeps = 0
    report = None
    while sweeps < config.max_sweeps:
        keeper.discover()
        report = keeper.liquidate()
        sweeps += 1
        standing = report.count("sent", "standing")
        log(
            f"sweep {sweeps}: {len(report.due)} due, {report.auctions} in auction, "
            f"{report.count('sent', 'start')} started, {standing} standing bids, {report.count('sent', 'bid')} bids"
        )
        if not report.due and report.auctions == 0:
            break
        chain.mine(timestamp=chain.pending_timestamp + config.step_seconds)
        if chain.pending_timestamp - pushed_at > 1800:  # keep the feeds fresh (same answers)
            pushed_at = chain.pending_timestamp
            for key, answer in prices.items():
                cm.oracle.push(admin, key, answer)
    seconds["sweeps"] = time.monotonic() - began

    began = time.monotonic()
    own = int(owner.address, 16) << SUB_BITS
    ids = [own | sub for sub in book.accounts]
    names = {i: w for w, i in instruments.items()}
    waterfall = collect(cm, first_block, ids, names)
    vault = cm.vault.contract
    final_cash = {sub: from_wad(vault.cash_of(owner.address, sub)) for sub in book.accounts}
    left = sum(1 for h in keeper.screen() if h.liquidatable)
    seconds["report"] = time.monotonic() - began
    return CrashReport(
        config=config,
        book=book,
        owner=owner.address,
        waterfall=waterfall,
        auctioned=[a & (2**SUB_BITS - 1) for a in waterfall.auctioned if a >> SUB_BITS == int(owner.address, 16)],
        final_cash=final_cash,
        fund_before=fund_before,
        fund_after=cm.fund.total_assets(),
        sweeps=sweeps,
        seconds=seconds,
        liquidatable_left=left,
    )


__all__ = ["CrashConfig", "CrashReport", "plan_book", "run_crash", "WAD"]

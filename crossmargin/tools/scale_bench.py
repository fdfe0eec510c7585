"""Gas of liquidating a book at full size (``ape run gas``): an account holding 128 options
(64 ETH, 64 BTC, 4 expiries) and 2 perps is started (with the keeper's hint), bid on for 10%
into a fresh account and again into the same bidder, terminated once cured (measured on a
snapshot, then undone), and sold to the end in slices. Arrays are current for the oracle
round (the keeper refreshes them in batches first, as the bots do)."""

from __future__ import annotations

from ape import chain

from crossmargin.clients.protocol import Protocol
from crossmargin.tools.gas import GasRow, measure, measure_call
from crossmargin.units import account_id, to_wad

BOOK = 128  # option positions (MAX_OPTIONS)
REFRESH_BATCH = 64  # ids per keeper `refresh` (the engine's MAX_BATCH)


def list_book(cm: Protocol, admin, size: int = BOOK) -> list[tuple[str, int]]:
    """Lists ``size`` options, alternating 16 ETH and 16 BTC (8 strikes from 80% to 115% of
    spot, a call and a put each) per 30-day expiry; returns (underlying, id) pairs."""
    options = []
    for batch in range((size + 31) // 32):
        expiry = chain.pending_timestamp + 30 * (batch + 1) * 86_400
        for underlying, spot in (("ETH", 3000), ("BTC", 60000)):
            for i in range(8):
                strike = spot * (80 + 5 * i) // 100
                for is_call in (True, False):
                    options.append((underlying, cm.markets.list_option(admin, underlying, is_call, strike, expiry)))
    return options[:size]


def build_book(cm: Protocol, admin, owner, counterparty, options, subaccount: int = 0) -> int:
    """The account of ``owner`` holds every option of ``options`` (long and short in turn, half
    a unit each: a long call and a short put per strike, a synthetic long) and is short 10 ETH
    and long 0.1 BTC perps; returns its id. The cash is set so that a fall of the BTC price
    makes it liquidatable."""
    cm.token("USDC").mint(admin, owner, "500000")
    cm.vault.deposit(owner, "USDC", "500000", subaccount)
    cm.token("USDC").mint(admin, counterparty, "10000000")
    cm.vault.deposit(counterparty, "USDC", "10000000", subaccount)
    sides = {"maker_subaccount": subaccount, "taker_subaccount": subaccount}
    cm.trade(owner, counterparty, cm.markets.perp("ETH"), "-10", "3000", **sides)
    cm.trade(owner, counterparty, cm.markets.perp("BTC"), "0.1", "60000", **sides)
    for n, (_, instrument) in enumerate(options):
        cm.trade(owner, counterparty, instrument, "0.5" if n % 2 == 0 else "-0.5", "100", **sides)
    return account_id(str(owner), subaccount)


def make_liquidatable(cm: Protocol, admin, account: int, keeper, options) -> int:
    """Lowers the BTC price in 2% steps until the account is below maintenance margin, then
    refreshes every array for the round in keeper-sized batches; returns the BTC price."""
    engine = cm.engine.contract
    price = 60000
    while True:
        price -= 1200
        cm.oracle.push(admin, "BTC/USD", str(price))
        m = engine.margin(account)
        if m.equity < m.maintenance:
            break
    refresh_all(cm, keeper, options)
    return price


def refresh_all(cm: Protocol, keeper, options):
    """Every array current for the round, in keeper-sized batches (as the bots leave them)."""
    ids = [i for _, i in options]
    for start in range(0, len(ids), REFRESH_BATCH):
        cm.engine.contract.refresh(ids[start : start + REFRESH_BATCH], sender=keeper)


def liquidation_at_size_benchmark(cm: Protocol, admin, owner, counterparty, bidder) -> list[GasRow]:
    cm.markets.contract.set_max_options(BOOK, sender=admin)
    options = list_book(cm, admin)
    account = build_book(cm, admin, owner, counterparty, options, subaccount=1)
    for subaccount in (1, 2):
        cm.token("USDC").mint(admin, bidder, "5000000")
        cm.vault.deposit(bidder, "USDC", "5000000", subaccount)
    make_liquidatable(cm, admin, account, counterparty, options)
    liquidator = cm.liquidator.contract
    hint = cm.engine.hint(account)
    rows = [
        measure_call(
            f"liquidation start, {BOOK} options + 2 perps, keeper's hint",
            bidder,
            liquidator.start,
            account,
            hint,
        )
    ]
    chain.mine(timestamp=chain.pending_timestamp + 60)
    rows.append(
        measure_call(
            f"bid 10% of a {BOOK}-option account (fresh bidder account)",
            bidder,
            liquidator.bid,
            account,
            to_wad("0.1"),
            to_wad(10**7),
            1,
            note="target <= 3,000,000",
        )
    )
    chain.mine(timestamp=chain.pending_timestamp + 60)
    rows.append(
        measure_call(
            f"bid 10% again ({BOOK} options, bidder already holds the positions)",
            bidder,
            liquidator.bid,
            account,
            to_wad("0.1"),
            to_wad(10**7),
            1,
        )
    )
    # terminate, measured on a snapshot: the owner cures the account, the auction ends
    snapshot = chain.snapshot()
    cm.token("USDC").mint(admin, owner, "1000000")
    cm.vault.deposit(owner, "USDC", "1000000", 1)
    rows.append(measure_call(f"liquidation terminate, {BOOK} options", bidder, liquidator.terminate, account))
    chain.restore(snapshot)
    # the whole account in four equal slices (a quarter of the book each: 1/4, 1/3, 1/2 and
    # all of what is left) into a second account of the bidder, after the BTC price fell so
    # far that it is insolvent, so that no cap stops a bid before the book is sold out
    price = int(cm.oracle.price("BTC/USD"))
    while cm.engine.contract.margin(account).equity > 0:
        price -= 1200
        cm.oracle.push(admin, "BTC/USD", str(price))
    refresh_all(cm, counterparty, options)
    slices = []
    for fraction in ("0.25", "0.333333333333333333", "0.5", "1"):
        chain.mine(timestamp=chain.pending_timestamp + 60)
        slices.append(liquidator.bid(account, to_wad(fraction), to_wad(10**7), 2, sender=bidder))
    assert not cm.liquidator.auction(account).active
    largest = max(slices, key=lambda r: r.gas_used)
    rows.append(
        measure(
            f"whole {BOOK}-option account in 4 slices (insolvent), the largest bid",
            largest,
            note=f"bids {', '.join(f'{r.gas_used:,}' for r in slices)} total gas; target < 10,000,000 each",
        )
    )
    return rows

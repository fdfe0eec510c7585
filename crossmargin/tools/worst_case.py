"""The largest account the protocol lets exist, liquidated with every array stale: the bound
behind "no account can become unliquidatable" (SPECIFICATION.md, limits).

A venue deployment lists 16 underlyings (ETH, BTC and 14 more on mock feeds), each with a
perpetual and a dated future, a tracking collateral token (as many as the vault lists: 16 assets with the
settlement asset) and a custom 32-scenario grid (3 array words per option, the most). The
account holds the position cap's bound of options (128, each on its own expiry, so no two
share a Black-Scholes intermediate), a perp and a future on every underlying and every
collateral. A new
round of every feed comes before the start and again before the bid, so both price and store
every array inside the transaction, and the bid goes into a fresh bidder account (every
position slot new). ``ape run gas`` prints its rows; ``tests/test_worst_case.py`` asserts them
against ``BLOCK_GAS_LIMIT`` (and the keeper's refresh batch against ``TX_GAS_CAP``).
"""

from __future__ import annotations

from decimal import Decimal

from ape import chain

from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import FeedConfig, MockFeed, NetworkConfig, TokenConfig, UnderlyingConfig
from crossmargin.ops.deploy import deploy
from crossmargin.tools.gas import GasRow, measure
from crossmargin.units import account_id, to_wad

# The block gas limit every liquidation step of any account must fit in, every array stale
# inside the transaction: 30M, the smallest of the major L2s' (Arbitrum caps a transaction
# at 32M). Ethereum caps a transaction at 2**24 since Fusaka (EIP-7825): there a keeper
# first refreshes the arrays in `refresh` batches, each of which fits that cap, and starts
# or bids with them current (SPECIFICATION.md, limits).
BLOCK_GAS_LIMIT = 30_000_000
TX_GAS_CAP = 2**24
UNDERLYINGS = 16
ASSETS = 16  # the vault's MAX_ASSETS, the settlement asset included
EXTRA_PRICE = 100  # USD, spot of every added underlying
REFRESH_BATCH = 64  # the engine's MAX_BATCH


def extra_names(base: NetworkConfig) -> list[str]:
    return [f"X{n}" for n in range(len(base.underlyings) + 1, UNDERLYINGS + 1)]


def venue_config(base: NetworkConfig) -> NetworkConfig:
    """``base`` with underlyings up to 16 (mock spot and vol feeds, a perp each) and collateral
    tokens tracking them up to the vault's 16 assets."""
    names = extra_names(base)
    feeds = list(base.feeds)
    assets = list(base.assets)
    underlyings = list(base.underlyings)
    for name in names:
        feeds.append(
            FeedConfig(
                key=f"{name}/USD", heartbeat=3600, min=Decimal(1), max=Decimal(10**6), mock=MockFeed(answer=EXTRA_PRICE)
            )
        )
        feeds.append(
            FeedConfig(
                key=f"{name}/IV", heartbeat=3600, min=Decimal("0.05"), max=Decimal(5), mock=MockFeed(answer="0.6")
            )
        )
        underlyings.append(
            UnderlyingConfig(name=name, spot=f"{name}/USD", vol=f"{name}/IV", perp_oi_cap=Decimal(10**6))
        )
        if len(assets) + 1 < ASSETS:
            assets.append(
                TokenConfig(
                    symbol=f"W{name}",
                    decimals=18,
                    cap=Decimal(10**9),
                    feed=f"{name}/USD",
                    underlying=name,
                    mm_haircut=Decimal("0.1"),
                    im_haircut=Decimal("0.15"),
                )
            )
    return base.model_copy(
        update={"name": f"{base.name}-venue", "feeds": feeds, "assets": assets, "underlyings": underlyings}
    )


def widest_grid() -> tuple[list[int], list[int], list[int]]:
    """The costliest grid to price: 32 scenarios (the most a grid holds) on 10 spot levels (the
    most, `MAX_SPOT_LEVELS`): the base, then ±5% to ±25% in 5% steps, each under vol down,
    unchanged and up, and the unshocked spot under vol down and up (no level of its own);
    every weight 1e6."""
    shocks, moves = [0], [1]
    for level in (sign * step * 50_000 for step in range(1, 6) for sign in (-1, 1)):
        for move in range(3):
            shocks.append(level)
            moves.append(move)
    shocks += [0]
    moves += [0]
    assert len(shocks) == 32
    return shocks, moves, [10**6] * 32


def build_worst_case(cm: Protocol, admin, owner, counterparty, count: int) -> tuple[int, list[int]]:
    """The account of ``owner``: every collateral, a short perp and future on every underlying and
    ``count`` options (spread over the underlyings, each on its own expiry, calls and puts,
    long and short in turn), the position cap set to ``count``. Returns its id and the
    option ids."""
    risk_model = cm.engine.risk_model
    shocks, moves, weights = widest_grid()
    names = list(cm.manifest.underlyings)
    for name in names:
        risk_model.set_grid(cm.manifest.underlyings[name], shocks, moves, weights, sender=admin)
    cm.markets.contract.set_max_options(count, sender=admin)
    cm.token("USDC").mint(admin, counterparty, "20000000")
    cm.vault.deposit(counterparty, "USDC", "20000000")
    cm.token("USDC").mint(admin, owner, "2000")
    cm.vault.deposit(owner, "USDC", "2000")
    for symbol in cm.tokens:
        if symbol != cm.manifest.settlement:
            cm.token(symbol).mint(admin, owner, "1")
            cm.vault.deposit(owner, symbol, "1")
    spots = {name: int(cm.oracle.price(f"{name}/USD")) for name in names}
    for name in names:
        units = Decimal(3000) / spots[name]  # 3,000 USD of notional each
        cm.trade(owner, counterparty, cm.markets.perp(name), str(-units.quantize(Decimal("0.0001"))), str(spots[name]))
    day = 86_400
    start = chain.pending_timestamp
    # a dated future on every underlying (the most an account holds, MAX_FUTURES = 16)
    for n, name in enumerate(names):
        future = cm.markets.list_future(admin, name, start + (200 + n) * day)
        units = Decimal(3000) / spots[name]
        cm.trade(owner, counterparty, future, str(-units.quantize(Decimal("0.0001"))), str(spots[name]))
    options = []
    for k in range(count):
        name = names[k % len(names)]
        spot = spots[name]
        strike = spot * (90 + k % 20) // 100 or 1
        expiry = start + (7 + k) * day
        instrument = cm.markets.list_option(admin, name, k % 2 == 0, strike, expiry)
        options.append(instrument)
        units = Decimal(300) / spot  # 300 USD of notional each
        size = units.quantize(Decimal("0.0001")) * (1 if (k // 2) % 2 == 0 else -1)
        cm.trade(owner, counterparty, instrument, str(size), str(max(spot // 20, 1)))
    return account_id(str(owner), 0), options


def new_round_everywhere(cm: Protocol, admin):
    """A new round of every feed at its last answer: every array of every underlying is stale."""
    for feed in cm.manifest.feeds:
        aggregator = cm.oracle.aggregator(feed)
        aggregator.push(aggregator.latestRoundData()[1], sender=admin)


def worst_case_benchmark(base: NetworkConfig, admin, owner, counterparty, bidder, count: int = 128) -> list[GasRow]:
    """Deploys the venue stack, builds the account, raises every spot but BTC's (the account
    is short a perp and a future on each, against one unit of collateral) in 5% steps until
    it is liquidatable, and measures the start and a 10% bid into a fresh account, then, once
    it is insolvent, a 10% insolvent bid into another, each after a new round of every feed."""
    cm = Protocol(deploy(venue_config(base), admin).manifest)
    account, options = build_worst_case(cm, admin, owner, counterparty, count)
    limit = BLOCK_GAS_LIMIT
    cm.token("USDC").mint(admin, bidder, "20000000")
    cm.vault.deposit(bidder, "USDC", "10000000", 7)
    cm.vault.deposit(bidder, "USDC", "10000000", 8)
    engine = cm.engine.contract
    rising = [name for name in cm.manifest.underlyings if name != "BTC"]
    while True:
        for name in rising:
            feed = f"{name}/USD"
            cm.oracle.push(admin, feed, str(cm.oracle.price(feed) * Decimal("1.05")))
        m = engine.margin(account)
        if m.equity < m.maintenance:
            break
    # a keeper's refresh batch of the most ids one call takes, every array stale
    new_round_everywhere(cm, admin)
    snapshot = chain.snapshot()
    batch = cm.engine.contract.refresh(options[:REFRESH_BATCH], sender=bidder, gas_limit=TX_GAS_CAP)
    chain.restore(snapshot)
    liquidator = cm.liquidator.contract
    # sent with the block's gas, measured from the receipt (no access-list preflight)
    receipt = liquidator.start(account, 0, sender=bidder, gas_limit=limit)
    rows = [
        measure(
            f"worst case: start, {count} options / {UNDERLYINGS} underlyings / 32 scenarios, every array stale",
            receipt,
            note=f"limit {limit:,}",
        )
    ]
    chain.mine(timestamp=chain.pending_timestamp + 60)
    new_round_everywhere(cm, admin)
    receipt = liquidator.bid(account, to_wad("0.1"), to_wad(10**8), 7, sender=bidder, gas_limit=limit)
    rows.append(
        measure(
            f"worst case: bid 10% of it into a fresh account ({count} options), every array stale again",
            receipt,
            note=f"limit {limit:,}",
        )
    )
    # insolvent: every spot but BTC's up until equity <= 0, the ramp started, then a 10% bid
    # into another fresh account: the fund pays, then deleveraging charges the other side of
    # every perp and future (31 loss-index words written for the first time), then the rest
    # is socialized
    while engine.margin(account).equity > 0:
        for name in rising:
            feed = f"{name}/USD"
            cm.oracle.push(admin, feed, str((cm.oracle.price(feed) * Decimal("1.05")).quantize(Decimal("0.0001"))))
    receipt = liquidator.mark_insolvent(account, sender=bidder, gas_limit=limit)
    rows.append(
        measure(
            f"worst case: mark insolvent ({count} options), every array stale, every perp and future side marked",
            receipt,
            note=f"limit {limit:,}",
        )
    )
    chain.mine(timestamp=chain.pending_timestamp + 60)
    new_round_everywhere(cm, admin)
    # measured above the limit (the node's block gas limit raised for it, then undone), so
    # the row states what it needs; the test asserts it against the limit
    snapshot = chain.snapshot()
    chain.provider.set_block_gas_limit(2 * limit)
    receipt = liquidator.bid(account, to_wad("0.1"), to_wad(10**8), 8, sender=bidder, gas_limit=2 * limit)
    chain.restore(snapshot)
    rows.append(
        measure(
            f"worst case: insolvent bid 10% into a fresh account ({count} options), every array stale,"
            " every perp and future deleveraged",
            receipt,
            note=f"limit {limit:,}",
        )
    )
    # the same bid as a keeper makes it on a chain whose transactions are capped: the stale
    # arrays refreshed first in batches (each under the per-transaction cap), then the bid
    for first in range(0, len(options), REFRESH_BATCH):
        engine.refresh(options[first : first + REFRESH_BATCH], sender=bidder, gas_limit=TX_GAS_CAP)
    receipt = liquidator.bid(account, to_wad("0.1"), to_wad(10**8), 8, sender=bidder, gas_limit=limit)
    rows.append(
        measure(
            f"worst case: the same insolvent bid after the keeper's refresh batches ({count} options)",
            receipt,
            note=f"limit {limit:,}; each refresh batch under {TX_GAS_CAP:,}",
        )
    )
    rows.append(
        measure(
            f"worst case: keeper refresh of {REFRESH_BATCH} stale arrays, 32-scenario grid, own expiries",
            batch,
            note=f"per transaction cap {TX_GAS_CAP:,} (EIP-7825)",
        )
    )
    return rows

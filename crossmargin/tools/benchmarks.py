"""Gas benchmark of the margin check, fills and risk-array refreshes (``ape run gas``).

Builds one account with 3 collaterals, 2 perps and 1, 4, 16, 32, 64, then 128 options, and
measures `check_initial` with its arrays current for the oracle round and (up to 32 options)
stale (a new round), next to the cold-read floor (2,100 gas per storage slot the call touches,
from `eth_createAccessList`). A second account holding one underlying is checked with 2, then
16 underlyings listed.
"""

from __future__ import annotations

from dataclasses import replace

from ape import accounts, chain

from crossmargin.clients.protocol import Protocol
from crossmargin.tools.gas import GasRow, measure_call
from crossmargin.units import account_id, to_wad

# Portfolio sizes measured: the first 32 options are 16 ETH then 16 BTC (30-day expiry),
# the next 96 alternate 16 ETH and 16 BTC at later expiries (128 = MAX_OPTIONS).
SIZES = (1, 4, 16, 32, 64, 128)
# Up to this size the arrays-stale check is measured too (each stale array costs ~170k).
STALE_UP_TO = 32


def margin_benchmark(cm: Protocol, admin, owner, counterparty) -> list[GasRow]:
    """IM checks against portfolio size, fills, array refreshes (see docs/gas.md)."""
    engine = cm.engine.contract
    for actor, deposits in (
        (owner, (("USDC", "1000000"), ("WETH", "100"), ("WBTC", "5"))),
        (counterparty, (("USDC", "50000000"),)),
    ):
        for symbol, amount in deposits:
            cm.token(symbol).mint(admin, actor, amount)
            cm.vault.deposit(actor, symbol, amount)
    cm.markets.contract.set_max_options(SIZES[-1], sender=admin)
    options = []
    for batch in range((SIZES[-1] + 31) // 32):
        expiry = chain.pending_timestamp + 30 * (batch + 1) * 86_400
        for underlying, spot in (("ETH", 3000), ("BTC", 60000)):
            for i in range(8):
                strike = spot * (80 + 5 * i) // 100
                options.append((underlying, spot, cm.markets.list_option(admin, underlying, True, strike, expiry)))
                options.append((underlying, spot, cm.markets.list_option(admin, underlying, False, strike, expiry)))
    cm.trade(owner, counterparty, cm.markets.perp("ETH"), "5", "3100")
    cm.trade(owner, counterparty, cm.markets.perp("BTC"), "-0.2", "60000")
    account = account_id(str(owner), 0)
    rows: list[GasRow] = []
    held = 0
    per_size = {}
    for target in SIZES:
        while held < target:
            underlying, spot, instrument = options[held]
            cm.trade(owner, counterparty, instrument, "1", str(spot // 10))
            held += 1
        warm = measure_call(
            f"IM check, {target} options + 2 perps + 3 collaterals, arrays current",
            owner,
            engine.check_initial,
            account,
        )
        per_size[target] = warm.execution
        rows.append(warm)
        if target == 16:
            # the same account valued before and after one more unit of an option it holds
            # (`Lens.preview`, sent as a transaction to be measured; it changes nothing)
            _, spot, held = options[0]
            rows.append(
                measure_call(
                    "margin preview at 16 options (1 trade on a held option), arrays current",
                    owner,
                    cm.lens.contract.preview.transact,
                    account,
                    [(held, to_wad(1), to_wad(spot // 10), 0)],
                )
            )
        if target > STALE_UP_TO:
            continue
        cm.oracle.push(admin, "ETH/USD", "3100")  # new rounds: every array is stale
        cm.oracle.push(admin, "BTC/USD", "60000")
        rows.append(
            measure_call(
                f"IM check, {target} options, arrays stale (computes and stores them)",
                owner,
                engine.check_initial,
                account,
            )
        )
    for low, high in ((4, 16), (16, 32), (32, 128)):
        if low not in per_size or high not in per_size:
            continue
        extra = (per_size[high] - per_size[low]) // (high - low)
        rows.append(GasRow(f"per extra option held ({low} -> {high}, arrays current)", extra, extra, "target <= 8,000"))

    # refresh after a new round, as the keeper sends it (by expiry, strike, kind): one
    # instrument (it opens the epoch), a call and put of one strike and expiry, then 16 more
    # of another expiry (8 strikes, a call and a put each); every array was stored before
    later = chain.pending_timestamp + 60 * 86_400
    more = []
    for i in range(8):
        strike = 3000 * (80 + 5 * i) // 100
        more.append(cm.markets.list_option(admin, "ETH", True, strike, later))
        more.append(cm.markets.list_option(admin, "ETH", False, strike, later))
    engine.refresh(more, sender=counterparty)  # stored once: a round overwrites existing arrays
    cm.oracle.push(admin, "ETH/USD", "3000")
    eth_ids = [i for u, _, i in options if u == "ETH"][:16]
    rows.append(measure_call("risk-array refresh, 1 instrument", counterparty, engine.refresh, eth_ids[:1]))
    pair = measure_call(
        "risk-array refresh, call+put pair (one strike and expiry)", counterparty, engine.refresh, eth_ids[2:4]
    )
    rows.append(pair)
    rows.append(
        GasRow(
            "risk-array refresh, per instrument of a pair",
            pair.execution // 2,
            pair.execution // 2,
            "target <= 100,000",
        )
    )
    batch = measure_call(
        "risk-array refresh, 16 more instruments (8 pairs, one expiry)", counterparty, engine.refresh, more
    )
    rows.append(batch)
    rows.append(
        GasRow(
            "risk-array refresh, per instrument of the 16",
            batch.execution // 16,
            batch.execution // 16,
            "target <= 100,000",
        )
    )

    # a fill between two accounts holding 8 positions each, arrays current
    maker, taker = accounts.test_accounts[5], accounts.test_accounts[6]
    for actor in (maker, taker):
        cm.token("USDC").mint(admin, actor, "1000000")
        cm.vault.deposit(actor, "USDC", "1000000")
    for _, spot, instrument in options[:8]:
        cm.trade(maker, taker, instrument, "1", str(spot // 10))

    def fill_row(action: str, instrument: int, price: int, note: str = "") -> GasRow:
        order = cm.exchange.make_order(maker, instrument, True, 1, price)
        signature = cm.exchange.sign(maker, order)
        args = (order.as_tuple(), order.owner, signature, to_wad(1), 0, taker.address)
        return measure_call(action, taker, cm.exchange.contract.fill, *args, note=note)

    _, spot, instrument = options[0]
    rows.append(
        fill_row("fill, 8 option positions per side, both checked", instrument, spot // 10, "target <= 450,000")
    )
    rows.append(fill_row("fill perp, 8 option positions per side", cm.markets.perp("ETH"), 3000))
    future = cm.markets.list_future(admin, "ETH", chain.pending_timestamp + 90 * 86_400)
    rows.append(fill_row("fill future (new position), 8 option positions per side", future, 3000))
    rows.append(fill_row("fill future (existing position), 8 option positions per side", future, 3000))
    return rows


def listing_benchmark(cm: Protocol, admin, owner, counterparty) -> list[GasRow]:
    """The IM check of an account holding one underlying (8 ETH options, an ETH perp, WETH)
    with the deployment's underlyings listed, then with MAX_UNDERLYINGS (16) listed: a check
    reads only what the account holds, so the two rows differ only by the loops' empty ids."""
    engine = cm.engine.contract
    for actor, symbol, amount in ((owner, "WETH", "100"), (counterparty, "USDC", "10000000")):
        cm.token(symbol).mint(admin, actor, amount)
        cm.vault.deposit(actor, symbol, amount)
    expiry = chain.pending_timestamp + 30 * 86_400
    cm.trade(owner, counterparty, cm.markets.perp("ETH"), "-5", "3000")
    for i in range(4):
        strike = 2700 + 200 * i
        for is_call in (True, False):
            instrument = cm.markets.list_option(admin, "ETH", is_call, strike, expiry)
            cm.trade(owner, counterparty, instrument, "1", "100")
    account = account_id(str(owner), 0)
    listed = engine.underlying_count()
    rows = [
        measure_call(
            f"IM check, 1 underlying held (8 options, perp, WETH), {listed} listed",
            owner,
            engine.check_initial,
            account,
        )
    ]
    for n in range(listed, 16):
        cm.engine.list_underlying(admin, f"X{n}", f"X{n}/USD", f"X{n}/IV")
    wide = measure_call("IM check, 1 underlying held, 16 listed", owner, engine.check_initial, account)
    change = 100 * (wide.execution - rows[0].execution) / rows[0].execution
    rows.append(replace(wide, note=f"{change:+.1f}% vs {listed} listed (target within 5%)"))
    return rows

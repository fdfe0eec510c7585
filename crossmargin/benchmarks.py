"""Gas benchmark of the margin check, fills and risk-array refreshes (``ape run gas``).

Builds one account with 3 collaterals, 2 perps and 1, 4, 16, then 32 options, and measures
`check_initial` with its arrays current for the oracle round and stale (a new round), next to
the cold-read floor (2,100 gas per storage slot the call touches, from `eth_createAccessList`).
"""

from __future__ import annotations

from ape import accounts, chain

from crossmargin.gas import GasRow, measure_call
from crossmargin.protocol import Protocol
from crossmargin.units import account_id, to_wad

# Portfolio sizes measured (32 is the most an account may hold: 16 ETH and 16 BTC options).
SIZES = (1, 4, 16, 32)


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
    expiry = chain.pending_timestamp + 30 * 86_400
    options = []
    for underlying, spot in (("ETH", 3000), ("BTC", 60000)):
        for i in range(8):
            strike = spot * (80 + 5 * i) // 100
            options.append((underlying, spot, cm.clearing.list_option(admin, underlying, True, strike, expiry)))
            options.append((underlying, spot, cm.clearing.list_option(admin, underlying, False, strike, expiry)))
    cm.trade(owner, counterparty, cm.clearing.perp("ETH"), "5", "3100")
    cm.trade(owner, counterparty, cm.clearing.perp("BTC"), "-0.2", "60000")
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
    for low, high in ((4, 16), (16, 32)):
        extra = (per_size[high] - per_size[low]) // (high - low)
        rows.append(
            GasRow(f"per extra option held ({low} -> {high}, arrays current)", extra, extra, "target <= 15,000")
        )

    # refresh after a new round, as the keeper sends it (by expiry, strike, kind): one
    # instrument (it opens the epoch), a call and put of one strike and expiry, then 16 more
    # of another expiry (8 strikes, a call and a put each); every array was stored before
    later = chain.pending_timestamp + 60 * 86_400
    more = []
    for i in range(8):
        strike = 3000 * (80 + 5 * i) // 100
        more.append(cm.clearing.list_option(admin, "ETH", True, strike, later))
        more.append(cm.clearing.list_option(admin, "ETH", False, strike, later))
    engine.refresh(more, sender=counterparty)  # stored once: a round overwrites existing arrays
    cm.oracle.push(admin, "ETH/USD", "3000")
    eth_ids = [i for u, _, i in options if u == "ETH"]
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
        order = cm.exchange.make_order(maker, instrument, True, to_wad(1), to_wad(price))
        signature = cm.exchange.sign(maker, order)
        args = (order.as_tuple(), order.owner, signature, to_wad(1), 0, taker.address)
        return measure_call(action, taker, cm.exchange.contract.fill, *args, note=note)

    _, spot, instrument = options[0]
    rows.append(
        fill_row("fill, 8 option positions per side, both checked", instrument, spot // 10, "target <= 450,000")
    )
    rows.append(fill_row("fill perp, 8 option positions per side", cm.clearing.perp("ETH"), 3000))
    return rows

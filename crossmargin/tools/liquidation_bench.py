"""Gas of the liquidation entry points (``ape run gas``): start (with the keeper's scenario
hint, and without), bid and terminate on a 10-position account (8 ETH options, 2 perps),
with the risk arrays current for the oracle round (a keeper's `refresh` ran after the price
move, as the bots do), and a minute between steps so that every bid settles perp funding."""

from __future__ import annotations

from ape import chain

from crossmargin.clients.protocol import Protocol
from crossmargin.tools.gas import GasRow, measure_call
from crossmargin.units import account_id, to_wad


def liquidation_benchmark(cm: Protocol, admin, owner, counterparty, bidder) -> list[GasRow]:
    for actor, amount in ((owner, "9000"), (counterparty, "5000000"), (bidder, "1000000")):
        cm.token("USDC").mint(admin, actor, amount)
        cm.vault.deposit(actor, "USDC", amount)
    expiry = chain.pending_timestamp + 30 * 86_400
    options = []
    for i in range(4):
        strike = 2700 + 200 * i
        options.append(cm.markets.list_option(admin, "ETH", True, strike, expiry))
        options.append(cm.markets.list_option(admin, "ETH", False, strike, expiry))
    cm.trade(owner, counterparty, cm.markets.perp("ETH"), "-10", "3000")
    cm.trade(owner, counterparty, cm.markets.perp("BTC"), "0.1", "60000")
    for n, instrument in enumerate(options):
        size = "0.5" if n % 2 == 0 else "-0.5"
        cm.trade(owner, counterparty, instrument, size, "100")
    account = account_id(str(owner), 0)
    engine = cm.engine.contract
    liquidator = cm.liquidator.contract
    for price in range(3100, 4000, 50):
        cm.oracle.push(admin, "ETH/USD", str(price))
        m = engine.margin(account)
        if m.equity < m.maintenance:
            break
    cm.oracle.push(admin, "ETH/IV", "0.6")
    engine.refresh(options, sender=counterparty)  # arrays current for the round, as a keeper leaves them
    # the same start without a hint (every scenario valued), then undone
    snapshot = chain.snapshot()
    unhinted = measure_call("liquidation start, 10 positions, no hint", bidder, liquidator.start, account, 0)
    chain.restore(snapshot)
    # as the keeper starts it: each underlying's worst scenario named (the `risk` view)
    hint = cm.engine.hint(account)
    rows = [
        measure_call(
            "liquidation start, 10 positions, keeper's hint",
            bidder,
            liquidator.start,
            account,
            hint,
            note="target <= 200,000",
        ),
        unhinted,
    ]
    # a minute between steps, as between real bids: the perps' funding has moved, so each
    # bid settles it into both accounts (without it a bid in the same second skips that)
    chain.mine(timestamp=chain.pending_timestamp + 60)
    rows.append(
        measure_call(
            "bid 10% of a 10-position account (fresh bidder account)",
            bidder,
            liquidator.bid,
            account,
            to_wad("0.1"),
            to_wad(10**6),
            0,
            note="writes 9 fresh slots (4 option pairs, 2 perps of 2, the mask) at 20,000 each",
        )
    )
    # the same second bid made through a standing bid of the bidder's account, executed by
    # the counterparty for the tip: from the same state, a minute later each
    liquidator.register(0, liquidator.start_multiplier(), to_wad("0.1"), to_wad(10**6), 0, sender=bidder)
    at = chain.pending_timestamp + 60
    snapshot = chain.snapshot()
    chain.mine(timestamp=at)
    direct = measure_call(
        "bid 10% again (bidder already holds the positions)",
        bidder,
        liquidator.bid,
        account,
        to_wad("0.1"),
        to_wad(10**6),
        0,
        note="target <= 500,000",
    )
    chain.restore(snapshot)
    chain.mine(timestamp=at)
    standing = measure_call(
        "the same bid as a standing bid, executed by a keeper",
        counterparty,
        liquidator.execute,
        account,
        account_id(str(bidder), 0),
        note="{:+,} over the direct bid; target <= +40,000",
    )
    extra = standing.execution - direct.execution
    rows += [direct, GasRow(standing.action, standing.total, standing.execution, standing.note.format(extra))]
    # insolvent (then undone): ETH up until equity <= 0 and the ramp started; a 10% bid is
    # paid by the fund (empty here), then by deleveraging the ETH perp's longs (the loss
    # index written for the first time) and releases its share of the pending loss; a
    # withdrawal meanwhile gives up its share of that loss (the hold-back)
    snapshot = chain.snapshot()
    for price in range(4000, 9000, 250):
        cm.oracle.push(admin, "ETH/USD", str(price))
        if engine.margin(account).equity <= 0:
            break
    cm.oracle.push(admin, "ETH/IV", "0.6")
    engine.refresh(options, sender=counterparty)
    rows.append(
        measure_call(
            "mark insolvent: the loss reserved, 1 perp side's pending charge",
            bidder,
            liquidator.mark_insolvent,
            account,
        )
    )
    chain.mine(timestamp=chain.pending_timestamp + 60)
    rows.append(
        measure_call(
            "withdraw 100 USDC while an insolvent loss is pending (hold-back)",
            counterparty,
            cm.vault.contract.withdraw,
            cm.token("USDC").address,
            100 * 10**6,
            0,
            str(counterparty),
        )
    )
    rows.append(
        measure_call(
            "insolvent bid 10%: fund, then deleveraging (1 perp side charged)",
            bidder,
            liquidator.bid,
            account,
            to_wad("0.1"),
            to_wad(10**6),
            0,
        )
    )
    # the auction is still open: the counterparty's long on the marked side sells 1 ETH to
    # the bidder (closing 1 of its shorts) and pays the exit charge on the way out
    paid = cm.clearing.contract.collected(cm.markets.perp("ETH"))
    order = cm.exchange.make_order(counterparty, cm.markets.perp("ETH"), False, 1, price)
    signature = cm.exchange.sign(counterparty, order)
    rows.append(
        measure_call(
            "fill perp taking 1 unit off a marked side (exit charge)",
            bidder,
            cm.exchange.contract.fill,
            order.as_tuple(),
            order.owner,
            signature,
            to_wad(1),
            0,
            str(bidder),
        )
    )
    assert cm.clearing.contract.collected(cm.markets.perp("ETH")) > paid, "the fill paid no exit charge"
    chain.restore(snapshot)
    cm.token("USDC").mint(admin, owner, "100000")
    cm.vault.deposit(owner, "USDC", "100000")  # cures it
    rows.append(measure_call("liquidation terminate, 10 positions", bidder, liquidator.terminate, account))
    return rows

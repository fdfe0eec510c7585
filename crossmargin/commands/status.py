"""``crossmargin status`` (or ``ape run status``): accounts nearest to liquidation, live
auctions, the insurance fund.

Reads the keeper's state file (``--state-file``, default ``.keeper/<network>.json``) when
there is one and discovers from its cursor, so it is quick on a long chain; it never writes
the file. The "liquidatable at" column is the reference model's what-if: the smallest spot
move of one underlying that takes the account below maintenance. Each listed account is read
in one call (the Lens's snapshot), whatever the size of its book or the underlyings it
touches; the "book" column sums it up.

``--json`` prints the same as one JSON document on stdout (amounts as decimal strings in
USD, accounts as ``0xowner/sub``), and nothing else there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import click
from ape import chain, networks
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import account_label, console, emit_json, friendly_errors, json_option
from crossmargin.clients.protocol import Protocol
from crossmargin.keeper import Keeper, KeeperConfig, standing
from crossmargin.keeper.state import FUTURE
from crossmargin.units import from_wad

INDEX_ONE = 10**36  # the vault's cash index at launch


def usd(value: Decimal) -> str:
    return f"{value:,.2f}"


def book(snapshot: tuple, names: dict[int, str], shown: int = 4) -> str:
    """An account's book in a few words: options, perps and the underlyings it touches (the
    first ``shown`` by name, then how many more), e.g. ``128 opt · 2 perp · ETH BTC``."""
    state, underlyings, _params, _now = snapshot
    held = [names.get(u, str(u)) for u in underlyings]
    more = f" +{len(held) - shown}" if len(held) > shown else ""
    return f"{len(state.options)} opt · {len(state.perps)} perp · {' '.join(held[:shown])}{more}"


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.option("--top", type=int, default=10, show_default=True, help="Accounts listed.")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keeper state to start from (default .keeper/<network>.json).",
)
@click.option("--no-model", is_flag=True, help="Skip the model's liquidation-distance column.")
@json_option("Print one JSON document on stdout instead of the tables (logs on stderr).")
@friendly_errors
def cli(top, state_file, no_model, as_json):
    network = networks.provider.network.name
    cm = Protocol.load()
    path = state_file or Path(".keeper") / f"{network}.json"
    keeper = Keeper(cm, None, KeeperConfig(dry_run=True, state_file=path, persist=False))
    discovery = keeper.discover()
    if discovery.errors:
        raise click.ClickException(discovery.errors[-1])
    head = chain.blocks.head
    status = collect(cm, keeper, head, top, no_model)
    status["network"] = network
    if as_json:
        emit_json(status)
    else:
        render(status)


def collect(cm: Protocol, keeper: Keeper, head, top: int, no_model: bool) -> dict:
    """Everything the command shows, as plain values (Decimals in USD or units)."""
    healths = [h for h in keeper.screen() if h.maintenance > 0]
    nearest = sorted(healths, key=lambda h: h.ratio)[:top]
    # one snapshot per listed account (a Lens call each, whatever its book's size)
    snapshots = keeper.snapshots([h.account for h in nearest], head.number) if nearest else {}
    names = {u: n for n, u in cm.manifest.underlyings.items()}
    distances: dict[int, tuple[str, Decimal]] = {}
    if not no_model and nearest:
        for d in keeper.liquidation_distance([h.account for h in nearest], snapshots=snapshots):
            if d.move is None:
                continue
            old = distances.get(d.account)
            if old is None or abs(d.move) < abs(old[1]):
                distances[d.account] = (d.underlying, d.move)
    accounts = []
    for h in nearest:
        distance = distances.get(h.account)
        accounts.append(
            {
                "account": account_label(h.account),
                "book": book(snapshots[h.account], names),
                "equity": from_wad(h.equity),
                "maintenance": from_wad(h.maintenance),
                "health": from_wad(h.health),
                "ratio": round(h.ratio, 6),
                "liquidatable": h.liquidatable,
                "in_auction": h.account in keeper.state.auctions,
                "liquidatable_at": None if distance is None else {"underlying": distance[0], "move": distance[1]},
            }
        )
    statuses = keeper.auction_statuses()
    bids = standing.standing_bids(keeper) if statuses else {}
    auctions = [
        {
            "account": account_label(a.account),
            "elapsed_s": a.elapsed,
            "multiplier": a.multiplier if a.equity > 0 else None,
            "insolvent_ramp": a.ramp,
            "equity": a.equity,
            "maintenance": a.maintenance,
            "fraction": a.fraction,
            "quote": a.price,
            "tip_owed_to": None if int(a.keeper, 16) == 0 else a.keeper,
            "standing_bids": standing.summary(keeper, a.account, a.started_at, bids, head.timestamp),
        }
        for a in statuses
    ]
    futures = []
    for i, listing in sorted((i, o) for i, o in keeper.state.options.items() if o.kind == FUTURE):
        instrument = cm.markets.instrument(i)
        price = instrument.settlement_price
        futures.append(
            {
                "instrument": i,
                "underlying": names.get(listing.underlying, str(listing.underlying)),
                "expiry": listing.expiry,
                "expired": listing.expiry <= head.timestamp,
                "open_interest": from_wad(instrument.open_interest),
                "settlement_price": from_wad(price) if price else None,
            }
        )
    vault, fund = cm.vault.contract, cm.fund
    return {
        "block": head.number,
        "with_positions": len(healths),
        "known_accounts": len(keeper.state.accounts),
        "accounts": accounts,
        "auctions": auctions,
        "standing_bids": len(bids),
        "futures": futures,
        "fund": {
            "total_assets": fund.total_assets(),
            "shares": fund.total_shares(),
            "share_price": fund.share_price(),
            "pending_income": fund.pending_income(),
            "socialized_loss": from_wad(vault.socialized_loss()),
            "pending_loss": from_wad(vault.pending_loss()),
            "exit_pool": from_wad(vault.exit_pool()),
            "exit_charges": from_wad(vault.exit_charges()),
            "cash_index": Decimal(vault.cash_index()) / Decimal(INDEX_ONE),
            "positive_cash": from_wad(vault.positive_cash()),
        },
    }


def render(status: dict) -> None:
    """The tables of :func:`collect`."""
    console.rule(f"[bold]crossmargin on {status['network']}[/] block {status['block']}")
    table = Table(
        title=f"accounts nearest to liquidation ({status['with_positions']} with positions, "
        f"{status['known_accounts']} known)"
    )
    left = ("account", "book", "in auction", "liquidatable at")
    for column in ("account", "book", "equity", "MM", "equity − MM", "equity / MM", "in auction", "liquidatable at"):
        table.add_column(column, justify="left" if column in left else "right")
    for a in status["accounts"]:
        owner, sub = a["account"].split("/")
        style = "red" if a["liquidatable"] else ("yellow" if a["ratio"] < 1.15 else "")
        at = a["liquidatable_at"]
        table.add_row(
            f"{owner[:6]}…{owner[-4:]}:{sub}",
            a["book"],
            usd(a["equity"]),
            usd(a["maintenance"]),
            f"[{style}]{usd(a['health'])}[/]" if style else usd(a["health"]),
            f"{a['ratio']:.3f}",
            "yes" if a["in_auction"] else "",
            f"{at['underlying']} {float(at['move']) * 100:+.1f}%"
            if at
            else ("now" if a["liquidatable"] else "beyond ±50%"),
        )
    console.print(table)

    table = Table(title=f"live auctions ({len(status['auctions'])}, {status['standing_bids']} standing bids)")
    columns = ("account", "running", "d(t)", "insolvent ramp", "equity", "MM", "fraction", "quote", "tip owed")
    for column in (*columns, "standing bids"):
        table.add_column(column, justify="left" if column in ("account", "tip owed", "standing bids") else "right")
    for a in status["auctions"]:
        owner, sub = a["account"].split("/")
        table.add_row(
            f"{owner[:6]}…{owner[-4:]}:{sub}",
            f"{a['elapsed_s'] // 60}m{a['elapsed_s'] % 60:02d}s",
            f"{a['multiplier']:.4f}" if a["multiplier"] is not None else "",
            f"{a['insolvent_ramp'] * 100:.0f}%" if a["insolvent_ramp"] is not None else "",
            usd(a["equity"]),
            usd(a["maintenance"]),
            f"{a['fraction']:.4f}",
            usd(a["quote"]),
            a["tip_owed_to"] or "",
            a["standing_bids"],
        )
    console.print(table)

    if status["futures"]:
        table = Table(title=f"dated futures ({len(status['futures'])})")
        for column in ("instrument", "underlying", "expiry", "open interest", "settlement price"):
            table.add_column(column, justify="left" if column in ("underlying", "expiry") else "right")
        for f in status["futures"]:
            expiry = datetime.fromtimestamp(f["expiry"], tz=UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(
                str(f["instrument"]),
                f["underlying"],
                expiry + (" (expired)" if f["expired"] else ""),
                f"{f['open_interest']:,.4f}",
                usd(f["settlement_price"]) if f["settlement_price"] is not None else "",
            )
        console.print(table)

    fund = status["fund"]
    table = Table(title="insurance fund and losses")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("total assets (USD)", usd(fund["total_assets"]))
    table.add_row("shares", f"{fund['shares']:,.4f}")
    table.add_row("share price (USD)", f"{fund['share_price']:.6f}")
    table.add_row("pending income (USD)", usd(fund["pending_income"]))
    table.add_row("socialized loss (USD)", usd(fund["socialized_loss"]))
    table.add_row("pending loss of insolvent auctions (USD)", usd(fund["pending_loss"]))
    table.add_row("exit pool (USD)", usd(fund["exit_pool"]))
    table.add_row("exit charges (USD)", usd(fund["exit_charges"]))
    table.add_row("cash index", f"{fund['cash_index']:.12f}")
    table.add_row("positive cash (USD)", usd(fund["positive_cash"]))
    console.print(table)

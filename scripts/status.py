"""``ape run status``: accounts nearest to liquidation, live auctions, the insurance fund.

Reads the keeper's state file (``--state-file``, default ``.keeper/<network>.json``) when
there is one and discovers from its cursor, so it is quick on a long chain; it never writes
the file. The "liquidatable at" column is the reference model's what-if: the smallest spot
move of one underlying that takes the account below maintenance. Each listed account is read
in one call (the Lens's snapshot), whatever the size of its book or the underlyings it
touches; the "book" column sums it up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import click
from ape import chain, networks
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin import standing
from crossmargin.cli import console
from crossmargin.keeper import FUTURE, Keeper, KeeperConfig, describe_account
from crossmargin.protocol import Protocol
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
def cli(top, state_file, no_model):
    network = networks.provider.network.name
    cm = Protocol.load()
    path = state_file or Path(".keeper") / f"{network}.json"
    keeper = Keeper(cm, None, KeeperConfig(dry_run=True, state_file=path, persist=False))
    discovery = keeper.discover()
    if discovery.errors:
        raise click.ClickException(discovery.errors[-1])
    head = chain.blocks.head
    console.rule(f"[bold]crossmargin on {network}[/] block {head.number}")

    healths = [h for h in keeper.screen() if h.maintenance > 0]
    nearest = sorted(healths, key=lambda h: h.ratio)[:top]
    # one snapshot per listed account (a Lens call each, whatever its book's size)
    snapshots = keeper.snapshots([h.account for h in nearest], head.number) if nearest else {}
    names = {u: n for n, u in cm.manifest.underlyings.items()}
    distances: dict[int, str] = {}
    if not no_model and nearest:
        for d in keeper.liquidation_distance([h.account for h in nearest], snapshots=snapshots):
            if d.move is None:
                continue
            text = f"{d.underlying} {float(d.move) * 100:+.1f}%"
            old = distances.get(d.account)
            if old is None or abs(float(d.move)) < abs(float(old.split()[1].rstrip("%")) / 100):
                distances[d.account] = text
    table = Table(
        title=f"accounts nearest to liquidation ({len(healths)} with positions, {len(keeper.state.accounts)} known)"
    )
    left = ("account", "book", "in auction", "liquidatable at")
    for column in ("account", "book", "equity", "MM", "equity − MM", "equity / MM", "in auction", "liquidatable at"):
        table.add_column(column, justify="left" if column in left else "right")
    for h in nearest:
        style = "red" if h.liquidatable else ("yellow" if h.ratio < 1.15 else "")
        table.add_row(
            describe_account(h.account),
            book(snapshots[h.account], names),
            usd(from_wad(h.equity)),
            usd(from_wad(h.maintenance)),
            f"[{style}]{usd(from_wad(h.health))}[/]" if style else usd(from_wad(h.health)),
            f"{h.ratio:.3f}",
            "yes" if h.account in keeper.state.auctions else "",
            distances.get(h.account, "now" if h.liquidatable else "beyond ±50%"),
        )
    console.print(table)

    auctions = keeper.auction_statuses()
    bids = standing.standing_bids(keeper) if auctions else {}
    table = Table(title=f"live auctions ({len(auctions)}, {len(bids)} standing bids)")
    columns = ("account", "running", "d(t)", "insolvent ramp", "equity", "MM", "fraction", "quote", "tip owed")
    for column in (*columns, "standing bids"):
        table.add_column(column, justify="left" if column in ("account", "tip owed", "standing bids") else "right")
    for a in auctions:
        table.add_row(
            describe_account(a.account),
            f"{a.elapsed // 60}m{a.elapsed % 60:02d}s",
            f"{a.multiplier:.4f}" if a.equity > 0 else "",
            f"{a.ramp * 100:.0f}%" if a.ramp is not None else "",
            usd(a.equity),
            usd(a.maintenance),
            f"{a.fraction:.4f}",
            usd(a.price),
            "" if int(a.keeper, 16) == 0 else a.keeper,
            standing.summary(keeper, a.account, a.started_at, bids, head.timestamp),
        )
    console.print(table)

    futures = sorted((i, o) for i, o in keeper.state.options.items() if o.kind == FUTURE)
    if futures:
        names = {u: name for name, u in cm.manifest.underlyings.items()}
        table = Table(title=f"dated futures ({len(futures)})")
        for column in ("instrument", "underlying", "expiry", "open interest", "settlement price"):
            table.add_column(column, justify="left" if column in ("underlying", "expiry") else "right")
        for i, listing in futures:
            instrument = cm.markets.instrument(i)
            expiry = datetime.fromtimestamp(listing.expiry, tz=UTC).strftime("%Y-%m-%d %H:%M")
            if listing.expiry <= head.timestamp:
                expiry += " (expired)"
            price = instrument.settlement_price
            table.add_row(
                str(i),
                names.get(listing.underlying, str(listing.underlying)),
                expiry,
                f"{from_wad(instrument.open_interest):,.4f}",
                usd(from_wad(price)) if price else "",
            )
        console.print(table)

    vault = cm.vault.contract
    fund = cm.fund
    table = Table(title="insurance fund and losses")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("total assets (USD)", usd(fund.total_assets()))
    table.add_row("shares", f"{fund.total_shares():,.4f}")
    table.add_row("share price (USD)", f"{fund.share_price():.6f}")
    table.add_row("pending income (USD)", usd(fund.pending_income()))
    table.add_row("socialized loss (USD)", usd(from_wad(vault.socialized_loss())))
    table.add_row("cash index", f"{Decimal(vault.cash_index()) / Decimal(INDEX_ONE):.12f}")
    table.add_row("positive cash (USD)", usd(from_wad(vault.positive_cash())))
    console.print(table)

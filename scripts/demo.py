"""``ape run demo``: the end-to-end crash demo on a local node.

Deploys the stack, funds the insurance fund (a small deposit), opens hedged and unhedged
books, registers two standing bids, crashes ETH in steps (then gaps BTC) with the keeper
sweeping every two minutes of chain time, runs it until nothing is liquidatable, prints what
happened as it goes and a report at the end (the auctions, who paid each insolvent loss:
insurance fund, deleveraging, socialization) and saves a PNG chart of the auction price curve,
every account's health over the crash and the loss split.
"""

from decimal import Decimal
from pathlib import Path

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import console, contracts_table, friendly_errors, resolve_sender
from crossmargin.clients.protocol import Protocol
from crossmargin.ops.config import load_config
from crossmargin.ops.deploy import deploy
from crossmargin.tools.demo import draw_chart, run_demo


def _usd(value) -> str:
    return f"{value:,.2f}"


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.option(
    "--chart",
    type=click.Path(path_type=Path),
    default=Path("demo.png"),
    show_default=True,
    help="Where to save the PNG chart.",
)
@friendly_errors
def cli(network, chart):
    admin = resolve_sender(None)
    t = accounts.test_accounts
    maker, bidder, lp = t[1], t[4], t[9]
    actors = {"alice": t[2], "bob": t[3], "carol": t[5], "dave": t[6], "erin": t[7], "frank": t[8]}
    console.rule("[bold]crossmargin crash demo")
    with console.status("deploying the stack"):
        run = deploy(load_config(network.name), admin)
    cm = Protocol(run.manifest)
    console.print(contracts_table(run.manifest, f"deployed on {network.name} ({run.sent} transactions)"))

    with console.status("starting") as status:

        def progress(line: str) -> None:
            console.print(f"  {line}")
            status.update(line)

        report = run_demo(cm, admin, maker, actors, lp, bidder, progress=progress)

    if not console.is_terminal:
        console.width = 140  # CI logs: room for the report's columns
    table = Table(title="auctions (USD; paid < 0: the bidder was paid)")
    money = ("equity", "MM", "sold", "paid", "discount", "fund", "deleveraged", "socialized")
    for column in ("account", "ETH at start", *money, "standing bids", "ended"):
        table.add_column(column, justify="left" if column in ("account", "standing bids") else "right")
    for record in report.auctions:
        table.add_row(
            report.name(record.account),
            f"{record.started_spot:,}",
            _usd(record.equity),
            _usd(record.maintenance),
            f"{record.fraction:.1%}",
            _usd(record.paid),
            _usd(record.discount),
            _usd(record.fund_payout),
            _usd(record.deleveraged),
            _usd(record.socialized),
            ", ".join(report.name(b) for b in record.standing),
            "yes" if record.ended else "no",
        )
    console.print(table)

    w = report.waterfall
    split = Table(title="loss waterfall of the insolvent slices (USD; loss = fund + deleveraged + socialized)")
    for column in ("account", "loss", "insurance fund", "deleveraged", "socialized", "exact"):
        split.add_column(column, justify="left" if column == "account" else "right")
    for c in w.covered:
        split.add_row(
            report.name(c.account),
            _usd(c.loss),
            _usd(c.fund),
            _usd(c.deleveraged),
            _usd(c.socialized),
            "to the wei" if c.exact else "NO",
        )
    split.add_row(
        "total",
        _usd(w.total("loss")),
        _usd(w.total("fund")),
        _usd(w.total("deleveraged")),
        _usd(w.total("socialized")),
        "",
        style="bold",
    )
    console.print(split)

    if w.charges:
        payers = Table(title="who paid the deleveraging (the other side of the losing markets)")
        for column in ("account", "market", "side", "charged (USD)"):
            payers.add_column(column, justify="left" if column in ("account", "market", "side") else "right")
        owed: dict[tuple[int, str, bool], Decimal] = {}
        for charge in w.charges:
            for account, paid in charge.payers.items():
                key = (account, charge.name, charge.longs)
                owed[key] = owed.get(key, Decimal(0)) + paid
        for (account, market, longs), paid in sorted(owed.items(), key=lambda kv: -kv[1]):
            payers.add_row(report.name(account), market, "longs" if longs else "shorts", _usd(paid))
        console.print(payers)
        instrument_of = {c.name: c.instrument for c in w.charges}
        for name, longs, n, amount, per_unit in w.sides():
            index = w.loss_index[instrument_of[name]][0 if longs else 1]
            console.print(
                f"{name} {'longs' if longs else 'shorts'}: {n} charge(s), {_usd(amount)} USD, "
                f"{per_unit:,.4f} USD per unit; loss index now {index:,.4f}"
            )

    final = Table(title="final healths")
    for column in ("account", "book", "equity", "MM", "equity − MM"):
        final.add_column(column, justify="left" if column in ("account", "book") else "right")
    for book in report.books:
        equity, mm, health = report.final[book.name]
        style = "green" if health >= 0 else "red"
        final.add_row(book.name, book.story, _usd(equity), _usd(mm), f"[{style}]{_usd(health)}[/]")
    console.print(final)
    lags = [s.lag for s in w.standing if s.due is not None]
    console.print(
        f"insurance fund {_usd(report.fund_before)} → {_usd(report.fund_after)} USDC; "
        f"standing bids executed {len(w.standing)}"
        + (f" (solvent ones at most {max(lags)} s after d(t) reached them)" if lags else "")
        + f"; keeper sweeps {report.sweeps}; {report.seconds:.0f} s"
    )
    path = draw_chart(report, chart)
    console.print(f"chart saved to [bold]{path}[/]")

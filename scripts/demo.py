"""``ape run demo``: the end-to-end crash demo on a local node.

Deploys the stack, funds the insurance fund, opens hedged and unhedged books, crashes ETH in
steps (then gaps BTC), runs the keeper until nothing is liquidatable, prints a report and
saves a PNG chart of the auction price curve and every account's health over the crash.
"""

from pathlib import Path

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import console, contracts_table, friendly_errors, resolve_sender
from crossmargin.config import load_config
from crossmargin.demo import draw_chart, run_demo
from crossmargin.deploy import deploy
from crossmargin.protocol import Protocol


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
        report = run_demo(cm, admin, maker, actors, lp, bidder, progress=status.update)

    if not console.is_terminal:
        console.width = 120  # CI logs: room for the report's columns
    names = {b.account: b.name for b in report.books}
    table = Table(title="auctions (USD; paid < 0: the bidder was paid)")
    money = ("equity", "MM", "sold", "paid", "discount", "fund paid", "socialized")
    for column in ("account", "ETH at start", *money, "ended"):
        table.add_column(column, justify="left" if column == "account" else "right")
    for record in report.auctions.values():
        table.add_row(
            names.get(record.account, hex(record.account)),
            f"{record.started_spot:,}",
            _usd(record.equity),
            _usd(record.maintenance),
            f"{record.fraction:.1%}",
            _usd(record.paid),
            _usd(record.discount),
            _usd(record.fund_payout),
            _usd(record.socialized),
            "yes" if record.ended else "no",
        )
    console.print(table)

    final = Table(title="final healths")
    for column in ("account", "book", "equity", "MM", "equity − MM"):
        final.add_column(column, justify="left" if column in ("account", "book") else "right")
    for book in report.books:
        equity, mm, health = report.final[book.name]
        style = "green" if health >= 0 else "red"
        final.add_row(book.name, book.story, _usd(equity), _usd(mm), f"[{style}]{_usd(health)}[/]")
    console.print(final)
    console.print(
        f"insurance fund {_usd(report.fund_before)} → {_usd(report.fund_after)} USDC; "
        f"socialized loss {_usd(report.socialized)} USD; keeper sweeps {report.sweeps}"
    )
    path = draw_chart(report, chart)
    console.print(f"chart saved to [bold]{path}[/]")

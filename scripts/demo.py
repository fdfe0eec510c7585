"""``ape run demo``: deploy the stack to a local node, fund a trader, deposit, and report."""

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand
from rich.table import Table

from crossmargin.cli import console, contracts_table, resolve_sender
from crossmargin.config import load_config
from crossmargin.deploy import deploy
from crossmargin.protocol import Protocol

# What the demo trader deposits (human units of each token).
DEPOSITS = {"USDC": "25000", "WETH": "10", "WBTC": "0.5"}


@click.command(cls=ConnectedProviderCommand, help=__doc__)
def cli(network):
    admin = resolve_sender(None)
    trader = accounts.test_accounts[1]
    config = load_config(network.name)
    console.rule("[bold]crossmargin demo")
    with console.status("deploying the stack"):
        run = deploy(config, admin)
    cm = Protocol(run.manifest)

    console.print(contracts_table(run.manifest, f"deployed on {network.name} ({run.sent} transactions)"))

    with console.status("funding and depositing"):
        for symbol, amount in DEPOSITS.items():
            cm.token(symbol).mint(admin, trader, amount)
            cm.vault.deposit(trader, symbol, amount)

    balances = cm.vault.balances(trader)
    table = Table(title="trader balances (subaccount 0)", caption=f"trader {trader.address}")
    table.add_column("asset")
    table.add_column("balance", justify="right")
    table.add_column("price (USD)", justify="right")
    table.add_row("USDC (cash)", f"{balances.cash:,.2f}", "1.00")
    for asset in config.assets:
        table.add_row(asset.symbol, f"{balances.collateral[asset.symbol]:,}", f"{cm.oracle.price(asset.feed):,.2f}")
    console.print(table)

    margin = cm.engine.margin(trader)
    console.print(
        f"equity [bold]{margin.equity:,.2f}[/] USD, initial margin {margin.initial:,.2f}, "
        f"maintenance margin {margin.maintenance:,.2f}, initial health [green]{margin.initial_health:,.2f}[/]"
    )

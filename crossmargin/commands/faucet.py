"""``crossmargin faucet SYMBOL AMOUNT --to ADDRESS|N`` (or ``ape run faucet ...``): mint mock
tokens on a local or devnet network.

Mints ``AMOUNT`` (human units, e.g. ``1000``) of the deployment's mock token ``SYMBOL`` to the
recipient, from the deployer (test account 0, which holds the mocks' minter role). Refuses
on any other network: real tokens are not minted.

    ape run faucet USDC 10000 --to 2 --network ethereum:devnet:node
"""

from __future__ import annotations

import click
from ape import accounts, networks
from ape.cli import ConnectedProviderCommand

from crossmargin.cli import console, friendly_errors
from crossmargin.clients.protocol import Protocol, check_faucet_network


def recipient(value: str):
    """An address, or a test-account index (``2``) on dev networks."""
    if value.isdigit():
        return accounts.test_accounts[int(value)]
    if value.startswith("0x") and len(value) == 42:
        return value
    raise click.BadParameter(f"{value!r} is neither an address nor a test-account index", param_hint="--to")


@click.command(cls=ConnectedProviderCommand, help=__doc__)
@click.argument("symbol")
@click.argument("amount")
@click.option("--to", "to", required=True, metavar="ADDRESS|N", help="Recipient: an address or a test-account index.")
@friendly_errors
def cli(symbol, amount, to):
    network = networks.provider.network.name
    check_faucet_network(network)  # before reading any manifest: one line on any other network
    cm = Protocol.load()
    receiver = recipient(to)
    cm.faucet(receiver, symbol, amount)
    address = getattr(receiver, "address", receiver)
    console.print(f"minted {amount} {symbol} to {address}; balance {cm.token(symbol).balance(address)} {symbol}")

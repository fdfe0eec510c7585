"""Shared pieces of the ``ape run`` command-line scripts."""

from __future__ import annotations

from typing import Any

import click
from ape import accounts, networks
from ape.cli import account_option
from rich.console import Console
from rich.table import Table

from crossmargin.manifest import Manifest

console = Console()

# Networks on which the funded test accounts exist and mocks may be pushed.
DEV_NETWORKS = ("local", "devnet", "devnet-fork")


def is_dev_network() -> bool:
    return networks.provider.network.name in DEV_NETWORKS


def sender_option():
    """``--account ALIAS`` (or ``TEST::N``); on dev networks it defaults to test account 0."""
    return account_option(prompt=False)


def resolve_sender(account: Any | None) -> Any:
    if account is not None:
        return account
    if is_dev_network():
        return accounts.test_accounts[0]
    raise click.UsageError("--account is required on this network")


def contracts_table(manifest: Manifest, title: str) -> Table:
    """The deployed addresses of a manifest, as a rich table."""
    table = Table(title=title)
    table.add_column("contract")
    table.add_column("address")
    for name, address in sorted(manifest.contracts.items()):
        table.add_row(name, address)
    return table
